"""Mixed precision: bf16 autocast on CUDA where supported, fp16 with a gradient scaler otherwise,
plain fp32 on the CPU unless asked for."""

from __future__ import annotations

import contextlib

import torch

from fcc_lt.util.errors import ConfigError


def autocast_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device`` (None = full fp32)."""
    if setting == "off":
        return None
    if setting == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError(f"train.amp: bf16, but the GPU ({device}) has no bfloat16 support; "
                              "use fp16 (with loss scaling), auto or off")
        return torch.bfloat16
    if setting == "fp16":
        return torch.float16
    if device.type == "cuda":  # auto
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, dtype: torch.dtype | None) -> torch.amp.GradScaler | None:
    """fp16 needs loss scaling to keep small gradients representable; bf16 and fp32 do not."""
    if dtype is torch.float16:
        return torch.amp.GradScaler(device.type)
    return None
