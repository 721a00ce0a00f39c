"""Speed choices made per device: memory format, ``torch.compile`` (mode, eager fallback, a cache shared
by every run), and the optimizer implementation. The measurements behind each are in docs/speed.md.

- ``train.channels_last: auto`` stores weights and batches in NHWC where that pays: on the CPU (oneDNN
  convolutions: the full ResNet-32 step 1.25x faster here) and on CUDA under bf16/fp16 autocast
  (tensor-core convolutions want NHWC); fp32 on CUDA stays NCHW.
- ``train.compile: auto`` compiles the training forward (network, FCC scaling, head; ``compile_training``
  attaches the compiled call to the module, no extra layer) of runs long enough
  to earn the compile time back, and on the CPU also the evaluation forward: compiling took 89 s (and
  20 s for evaluation) with an empty cache here, 6.7 s (1.5 s) from the cache, for a 1.20x faster full
  step and 1.32x faster evaluation. The rule knows the epochs, not the dataset, so it is cautious: at
  least 100 epochs on the CPU, 30 on CUDA; smoke runs (``train.max_steps_per_epoch``) and
  ``train.deterministic`` runs stay eager.
- A compilation that fails (no C++ compiler, no Triton, an unsupported op) is warned about once and the
  run continues eagerly from the same state.
- Compiled artefacts go to one cache folder (``TORCHINDUCTOR_CACHE_DIR``, by default
  ``~/.cache/fcc/inductor``), so the runs of a sweep, and later sweeps, reuse them.
- SGD and Adam(W) use the fused implementation where PyTorch has one for the device (CPU, CUDA): one
  kernel for all parameters instead of one per tensor (0.99 vs 2.77 ms per ResNet-32 SGD step on the
  CPU here; the same update up to float rounding).

Compilation never changes per epoch: FCC's factors are a tensor in every epoch once FCC is configured
(ones before its start epoch), the learning rate lives in the optimizer (not in the compiled graph), and
shapes are static (``dynamic=False``: a last partial batch compiles once more, nothing else does).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fcc_lt.config.schema import Config, TrainConfig
from fcc_lt.evaluation.passes import EVAL_FORWARD_ATTR
from fcc_lt.models.network import model_memory_format, unwrap_ddp

log = logging.getLogger("fcc")


CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


# auto compiles runs with at least this many epochs (see the module doc for where the numbers come from)
COMPILE_MIN_EPOCHS = {"cpu": 100, "cuda": 30}


# the backend torch.compile uses; tests substitute a cheap one (e.g. "aot_eager" or a CompileCounter)
compile_backend: str | Callable[..., Any] = "inductor"


class CompileFallbackWarning(UserWarning):
    """torch.compile failed; the run continues eagerly."""


@dataclass(frozen=True)
class SpeedPlan:
    """The resolved choices of one run on one device, and a line saying why (logged at the start)."""

    channels_last: bool = False
    compile_mode: str | None = None  # None: eager
    reason: str = ""
    compile_eval: bool = False  # also compile the evaluation forward (the CPU, where evaluation costs)

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def use_channels_last(setting: bool | str, device: torch.device, amp_dtype: torch.dtype | None) -> bool:
    """``train.channels_last`` resolved: true/false as given; auto = NHWC on the CPU, and on CUDA under
    half-precision autocast (where NHWC convolutions run on tensor cores)."""
    if setting != "auto":
        return bool(setting)
    if device.type == "cpu":
        return True
    return device.type == "cuda" and amp_dtype is not None


def compile_mode_for(t: TrainConfig, device: torch.device) -> tuple[str | None, str]:
    """(``torch.compile`` mode or None for eager, the reason) for ``train.compile`` / ``train.compile_mode``."""
    mode = "default" if t.compile_mode == "auto" else t.compile_mode
    if t.compile == "off":
        return None, "train.compile=off"
    if t.compile == "on":
        return mode, "train.compile=on"
    if device.type not in COMPILE_MIN_EPOCHS:
        return None, f"auto: not compiled on {device.type}"
    if t.max_steps_per_epoch is not None:
        return None, "auto: a smoke run (train.max_steps_per_epoch) does not earn the compile time back"
    if t.deterministic:
        return None, "auto: train.deterministic runs eagerly"
    least = COMPILE_MIN_EPOCHS[device.type]
    if t.epochs < least:
        return None, f"auto: {t.epochs} epochs < {least}, too short to earn the compile time back on {device.type}"
    return mode, f"auto: {t.epochs} epochs >= {least} on {device.type}"


def plan_speed(cfg: Config, device: torch.device) -> SpeedPlan:
    """The speed choices of ``cfg`` on ``device``."""
    from fcc_lt.util.precision import autocast_dtype

    device = torch.device(device)
    t = cfg.train
    channels_last = use_channels_last(t.channels_last, device, autocast_dtype(t.amp, device))
    mode, why = compile_mode_for(t, device)
    fmt = "channels-last" if channels_last else "NCHW"
    compile_eval = mode is not None and device.type == "cpu"
    compiled = f"torch.compile mode {mode}{' (and evaluation)' if compile_eval else ''}" if mode else "eager"
    return SpeedPlan(channels_last, mode, f"{fmt}, {compiled} ({why})", compile_eval)


_PLANS: weakref.WeakKeyDictionary[nn.Module, SpeedPlan] = weakref.WeakKeyDictionary()


def remember_plan(network: nn.Module, plan: SpeedPlan) -> None:
    """Record the plan a network was built with, for the module that trains it (fcc_lt.engine.build), and
    attach its compiled evaluation forward when the plan compiles evaluation (compiled at its first call)."""
    _PLANS[network] = plan
    eval_forward(network)


def plan_of(network: nn.Module) -> SpeedPlan:
    """The plan ``network`` was built with; eager in its own memory format for a network built elsewhere."""
    plan = _PLANS.get(network)
    if plan is not None:
        return plan
    return SpeedPlan(channels_last=model_memory_format(network) == torch.channels_last, reason="not planned")


def shared_cache_dir() -> Path:
    """The compile cache every run uses: ``TORCHINDUCTOR_CACHE_DIR`` when set, else ~/.cache/fcc/inductor
    (set for this process and its children). Inductor's FX-graph and AOT-autograd caches live there, so
    a second run of the same model loads its kernels instead of compiling them (89 s -> 6.7 s here)."""
    if _chosen_cache_dir() is None:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        os.environ[CACHE_ENV] = os.path.join(base, "fcc", "inductor")
    path = Path(os.environ[CACHE_ENV])
    path.mkdir(parents=True, exist_ok=True)
    return path


def _chosen_cache_dir() -> str | None:
    """``TORCHINDUCTOR_CACHE_DIR`` as someone chose it, or None. Importing torch._dynamo fills the variable
    in with inductor's default (a folder under /tmp) when it is unset, so that value counts as unset."""
    value = os.environ.get(CACHE_ENV)
    if not value:
        return None
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch layout: take the variable as chosen
        return value
    return None if os.path.abspath(value) == os.path.abspath(default_cache_dir()) else value


_warned = False


def _cause(err: BaseException) -> str:
    """The underlying error in one line (dynamo wraps a backend's error: 'backend=... raised:' + it)."""
    inner = getattr(err, "inner_exception", None) or err.__cause__
    if inner is not None and inner is not err:
        if isinstance(inner, torch._dynamo.exc.TorchDynamoException):
            return _cause(inner)
        return f"{type(inner).__name__}: {_first_line(inner)}"
    return _first_line(err)


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _warn_fallback(err: BaseException) -> None:
    global _warned
    first = _cause(err)
    log.warning("torch.compile failed (%s); training continues eagerly", first[:300])
    if not _warned:
        _warned = True
        warnings.warn(f"torch.compile failed ({first[:300]}); training continues eagerly. Set train.compile=off "
                      "to skip the attempt.", CompileFallbackWarning, stacklevel=3)


class EvalForward:
    """``model(images)`` compiled for evaluation (no gradients, BatchNorm in eval mode), falling back to the
    model itself for good when a compilation fails. Compiled where a run compiles on the CPU: there the
    test passes cost (21 of 10,000 images in a CIFAR protocol), and compiling made them 1.32x faster here
    (782 vs 592 images per CPU-second; 20 s to compile with an empty cache). On CUDA evaluation is a
    small share of a run and stays eager."""

    def __init__(self, model: nn.Module) -> None:
        shared_cache_dir()
        self.model = model
        self.compiled: Callable[..., Any] | None = torch.compile(model, dynamic=False, backend=compile_backend)

    def __call__(self, images: Tensor) -> Tensor:
        if self.compiled is None or self.model.training:
            return self.model(images)
        try:
            return self.compiled(images)
        except torch._dynamo.exc.TorchDynamoException as err:
            self.compiled = None
            _warn_fallback(err)
            return self.model(images)


def eval_forward(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """What evaluation calls for ``model``: its compiled evaluation forward when its plan says so (made once
    per model and attached where evaluation passes look for it, fcc_lt.evaluation.passes.EVAL_FORWARD_ATTR),
    else the model."""
    plan = _PLANS.get(model)
    if plan is None or not plan.compile_eval:
        return model
    if EVAL_FORWARD_ATTR not in model.__dict__:
        model.__dict__[EVAL_FORWARD_ATTR] = EvalForward(model)
    return model.__dict__[EVAL_FORWARD_ATTR]


class CompiledForward:
    """``torch.compile`` of a training forward's eager call (``TrainingForward.eager``), as the module calls it:
    ``compiled(images, factors)``. Not an ``nn.Module``: the module keeps its one tree and state dict.

    The first call also runs the backward of a zero loss through ``torch.autograd.grad`` (no gradient is
    stored), so that a backward that fails to compile is caught here too; the buffers it touched
    (BatchNorm statistics) are restored before the real call. Any compile failure, then or later (a new
    shape), switches to the eager call for good.
    """

    def __init__(self, eager: Callable[..., tuple[Tensor, Tensor]], module: nn.Module, mode: str) -> None:
        shared_cache_dir()
        self.eager = eager
        self.module = module  # whose buffers the probe restores and whose parameters it differentiates
        self.mode = mode
        self.seconds: float | None = None  # the first compiled forward + backward
        self.failed = False
        self._compiled = torch.compile(eager, mode=None if mode == "default" else mode, dynamic=False,
                                       backend=compile_backend)

    @property
    def active(self) -> bool:
        """Whether calls run compiled (False after a failed compilation)."""
        return not self.failed

    def __call__(self, images: Tensor, factors: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.failed:
            return self.eager(images, factors)
        if self.seconds is None:
            return self._first_call(images, factors)
        try:
            return self._compiled(images, factors)
        except torch._dynamo.exc.TorchDynamoException as err:  # a recompilation (new shape) failed
            self.failed = True
            _warn_fallback(err)
            return self.eager(images, factors)

    def _first_call(self, images: Tensor, factors: Tensor | None) -> tuple[Tensor, Tensor]:
        saved = [b.detach().clone() for b in self.module.buffers()]
        t0 = time.perf_counter()
        try:
            self._probe(images, factors)
        except torch._dynamo.exc.TorchDynamoException as err:
            self.failed = True
            _warn_fallback(err)
        finally:
            with torch.no_grad():
                for buffer, value in zip(self.module.buffers(), saved):
                    buffer.copy_(value)
        self.seconds = time.perf_counter() - t0
        if self.failed:
            return self.eager(images, factors)
        log.info("compiled the training forward and backward (mode %s) in %.1f s; compile cache %s",
                 self.mode, self.seconds, os.environ.get(CACHE_ENV))
        return self._compiled(images, factors)

    def _probe(self, images: Tensor, factors: Tensor | None) -> None:
        """Compile forward and backward on this batch, leaving no gradient behind."""
        outputs = self._compiled(images, factors)
        params = [p for p in self.module.parameters() if p.requires_grad]
        if not torch.is_grad_enabled() or not params:
            return
        tensors = [t for t in outputs if t.requires_grad]
        if tensors:
            torch.autograd.grad(tensors, params, grad_outputs=[torch.zeros_like(t) for t in tensors],
                                allow_unused=True)


def compile_training(forward: nn.Module, plan: SpeedPlan) -> nn.Module:
    """Apply ``plan``'s compile choice to a training forward (``fcc_lt.engine.step.TrainingForward``): attach
    its compiled call when the plan compiles, else leave it eager. Returns the same module."""
    if plan.compile_mode is not None:
        forward.compiled = CompiledForward(forward.eager, forward, plan.compile_mode)
    return forward


def compiled_call(module: nn.Module) -> CompiledForward | None:
    """The compiled call of a training forward (inside DDP or not), or None when it runs eagerly."""
    compiled = getattr(unwrap_ddp(module), "compiled", None)
    return compiled if isinstance(compiled, CompiledForward) else None


def fused_kernels_for(params: list[Tensor]) -> bool:
    """Whether PyTorch has fused optimizer kernels for every parameter's device and dtype (checked here:
    the optimizer itself only checks at its first step)."""
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # an older torch: CUDA only
        devices = {"cuda"}
    return bool(params) and all(p.is_floating_point() and p.device.type in devices for p in params)


def fused_optimizer(cls: type[torch.optim.Optimizer], params: list[Tensor], **kwargs: Any) -> torch.optim.Optimizer:
    """``cls(params, fused=True, **kwargs)`` where the device has the fused kernel, else the default
    implementation (the same update up to float rounding)."""
    if fused_kernels_for(params):
        try:
            return cls(params, fused=True, **kwargs)
        except (RuntimeError, TypeError):  # a torch without fused for this optimizer
            pass
    return cls(params, **kwargs)
