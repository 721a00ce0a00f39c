"""Batched augmentation on the training device: whole batches at once, no per-sample Python.

Random parameters are drawn for a whole *global* batch from an explicit generator and then sliced per
rank, so a run on N processes sees exactly the augmentation a single-process run with the same global
batch sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


class Normalize:
    """uint8 (B, 3, H, W) -> float (x / 255 - mean) / std, fused into one multiply-add."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        mean_t = torch.tensor(mean, dtype=torch.float64)
        std_t = torch.tensor(std, dtype=torch.float64)
        self.scale = (1.0 / (255.0 * std_t)).float().view(1, -1, 1, 1)
        self.shift = (mean_t / std_t).float().view(1, -1, 1, 1)

    def to(self, device: torch.device) -> Normalize:
        self.scale = self.scale.to(device)
        self.shift = self.shift.to(device)
        return self

    def __call__(self, images: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
        x = images.to(dtype)
        return torch.addcmul(-self.shift.to(dtype), x, self.scale.to(dtype))


@dataclass
class CropFlipParams:
    """Per-sample crop offsets in the padded image (B, 2: dy, dx) and horizontal flips (B,)."""

    offsets: Tensor
    flips: Tensor

    def __getitem__(self, index: slice) -> CropFlipParams:
        return CropFlipParams(self.offsets[index], self.flips[index])


class PadCropFlip:
    """Zero-pad by ``pad``, take a random HxW crop, flip horizontally with probability 1/2.

    Crop and flip are one gather over the padded uint8 batch: each output pixel's source index is
    computed from the per-sample offset and flip, so the cost is one indexed read per pixel.
    """

    def __init__(self, pad: int = 4, flip: bool = True, crop: bool = True) -> None:
        self.pad = pad
        self.flip = flip
        self.crop = crop

    def draw(self, n: int, generator: torch.Generator, device: torch.device) -> CropFlipParams:
        if self.crop:
            offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=generator, device=device)
        else:
            offsets = torch.full((n, 2), self.pad, device=device, dtype=torch.long)
        if self.flip:
            flips = torch.randint(0, 2, (n,), generator=generator, device=device, dtype=torch.bool)
        else:
            flips = torch.zeros(n, device=device, dtype=torch.bool)
        return CropFlipParams(offsets, flips)

    def __call__(self, images: Tensor, params: CropFlipParams) -> Tensor:
        b, c, h, w = images.shape
        p = self.pad
        padded = F.pad(images, (p, p, p, p)) if p else images
        wp = w + 2 * p
        ar_h = torch.arange(h, device=images.device)
        ar_w = torch.arange(w, device=images.device)
        rows = params.offsets[:, 0:1] + ar_h  # (B, H)
        cols = torch.where(params.flips[:, None], (w - 1) - ar_w, ar_w) + params.offsets[:, 1:2]  # (B, W)
        flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
        out = torch.gather(padded.reshape(b, c, -1), 2, flat)
        return out.view(b, c, h, w)
