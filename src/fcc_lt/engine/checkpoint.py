"""What a training checkpoint holds, and the checks a checkpoint passes before a run resumes from it.

A checkpoint is a plain dict (tensors and containers only, read with ``weights_only=True``): the
network's and optimizer's state, the loop position (``next_epoch``, ``next_step``, the partial sums of
an epoch stopped mid-way), the best validation result so far, the run's config and class statistics.
Every field is validated against what the run's config allows before anything is restored, so a
damaged or crafted file is refused with its path and field named instead of silently training the
wrong epochs.

``last.pt`` and ``best.pt``: when an epoch improves the validation result, ``last.pt`` (recording
"best = this epoch") is written first and then copied to ``best.pt``. A kill between the two writes
leaves ``last.pt`` claiming a best that ``best.pt`` does not hold yet; that state is recognised and
repaired (``repair_best``) before resuming or evaluating: since the claim can only be unfulfilled for
the epoch ``last.pt`` itself holds, copying ``last.pt`` to ``best.pt`` is the repair.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fcc_lt.models.checkpoint_file import load_checkpoint
from fcc_lt.util.errors import CheckpointError
from fcc_lt.util.files import atomic_write_bytes


@dataclass
class LoopState:
    """Where the loop stands; saved in every checkpoint."""

    next_epoch: int = 1
    next_step: int = 0
    partial: dict[str, Any] | None = None  # {"sums": [loss_sum, correct, count], "elapsed": s} mid-epoch
    best: dict[str, Any] = field(default_factory=lambda: {"val_top1": None, "epoch": None})
    nonfinite_skipped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"next_epoch": self.next_epoch, "next_step": self.next_step, "partial": self.partial,
                "best": dict(self.best), "nonfinite_skipped": self.nonfinite_skipped}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def loop_state_from(state: Mapping[str, Any], path: Path, *, epochs: int, steps_per_epoch: Any) -> LoopState:
    """The loop state of a checkpoint, every field checked against the run: ``epochs`` is train.epochs
    and ``steps_per_epoch(e)`` the number of steps of epoch e."""

    def bad(name: str, expected: str) -> CheckpointError:
        return CheckpointError(f"{path}: field {name!r} is {state.get(name)!r}, expected {expected}; the "
                               "checkpoint is damaged or was not written by fcc train for this run")

    for key in ("model", "optimizer", "next_epoch", "next_step"):
        if key not in state:
            raise CheckpointError(f"{path}: not a resumable training checkpoint (no {key!r})")
    next_epoch, next_step = state["next_epoch"], state["next_step"]
    if not _is_int(next_epoch) or not 1 <= next_epoch <= epochs + 1:
        raise bad("next_epoch", f"an integer in [1, {epochs + 1}] (train.epochs = {epochs})")
    if next_epoch > epochs and next_step != 0:
        raise bad("next_step", "0 for a finished run")
    if not _is_int(next_step) or not 0 <= next_step < (steps_per_epoch(next_epoch) if next_epoch <= epochs else 1):
        limit = steps_per_epoch(next_epoch) if next_epoch <= epochs else 1
        raise bad("next_step", f"an integer in [0, {limit - 1}] (epoch {next_epoch} has {limit} steps)")
    partial = state.get("partial")
    if next_step > 0:
        if not isinstance(partial, Mapping) or not isinstance(partial.get("sums"), list) \
                or len(partial["sums"]) != 3 or not all(_is_number(v) and v >= 0 for v in partial["sums"][1:]) \
                or not _is_number(partial["sums"][0]) or not _is_number(partial.get("elapsed", 0.0)):
            raise bad("partial", "{'sums': [loss sum, correct, count], 'elapsed': seconds} for a checkpoint "
                      "saved mid-epoch")
        partial = {"sums": [float(v) for v in partial["sums"]], "elapsed": float(partial.get("elapsed", 0.0))}
    else:
        partial = None
    best = state.get("best") or {"val_top1": None, "epoch": None}
    if not isinstance(best, Mapping) or set(best) != {"val_top1", "epoch"}:
        raise bad("best", "{'val_top1': ..., 'epoch': ...}")
    if best["epoch"] is not None and (not _is_int(best["epoch"]) or not 1 <= best["epoch"] < next_epoch
                                      or not _is_number(best["val_top1"])):
        raise bad("best", f"a finished epoch below {next_epoch} with its validation top-1")
    skipped = state.get("nonfinite_skipped", 0)
    if not _is_int(skipped) or skipped < 0:
        raise bad("nonfinite_skipped", "a non-negative integer")
    return LoopState(next_epoch, next_step, partial, dict(best), skipped)


def nonfinite_tensors(*states: Mapping[str, Any]) -> list[str]:
    """Names of floating-point tensors that hold NaN or inf, in nested state dicts (model, optimizer).

    One reduction per tensor, read once: called at checkpoint time, never inside a step.
    """
    bad: list[str] = []

    def walk(value: Any, name: str) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
                bad.append(name)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{name}[{i}]")

    for state in states:
        walk(state, "")
    return bad


def repair_best(checkpoints: Path) -> bool:
    """Make best.pt hold what last.pt says is best (see the module doc); returns whether it copied."""
    last, best = checkpoints / "last.pt", checkpoints / "best.pt"
    if not last.is_file():
        return False
    state = load_checkpoint(last)
    claimed = (state.get("best") or {}).get("epoch")
    finished = state.get("next_epoch", 1) - 1 if not state.get("next_step") else None
    if claimed is None or claimed != finished:
        return False  # the claim is about an earlier epoch, whose best.pt write completed before last.pt moved on
    if best.is_file():
        held = load_checkpoint(best)
        if held.get("next_epoch") == state.get("next_epoch") and not held.get("next_step"):
            return False
    with open(last, "rb") as src:
        atomic_write_bytes(best, lambda f: shutil.copyfileobj(src, f))
    return True
