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

``RunCheckpoints`` is what the trainer uses: the state it writes, the epoch's checkpoints, restoring
with every field checked, and the failure messages, which name the checkpoint that is kept.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcc_lt import __version__
from fcc_lt.config.schema import Config
from fcc_lt.data.class_stats import ClassStats
from fcc_lt.models.checkpoint_file import load_checkpoint, load_model_state, save_checkpoint
from fcc_lt.util.distributed import DistContext, barrier
from fcc_lt.util.errors import CheckpointError, ConfigError, TrainingError
from fcc_lt.util.files import atomic_write_bytes


@dataclass
class LoopState:
    """Where the loop stands; saved in every checkpoint."""

    next_epoch: int = 1
    next_step: int = 0
    partial: dict[str, Any] | None = None  # {"sums": [loss_sum, correct, count], "elapsed": s} mid-epoch
    best: dict[str, Any] = field(default_factory=lambda: {"val_top1": None, "epoch": None})
    nonfinite_skipped: int = 0
    # train.keep_best: the best epochs so far ({"epoch", "val_top1"}, best first), and the epoch checkpoints
    # that left them at the last epoch's end (deleted after that epoch's checkpoint; again on resume)
    kept_best: list[dict[str, Any]] = field(default_factory=list)
    prune: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"next_epoch": self.next_epoch, "next_step": self.next_step, "partial": self.partial,
                "best": dict(self.best), "nonfinite_skipped": self.nonfinite_skipped,
                "kept_best": [dict(k) for k in self.kept_best], "prune": list(self.prune)}

    def keep_best(self, epoch: int, val_top1: float, k: int, kept_every: Callable[[int], bool]) -> None:
        """Enter an evaluated epoch into the best ``k`` (validation top-1, the earlier epoch first on ties);
        the epochs that leave them, unless ``kept_every(e)`` keeps them anyway, are to be pruned."""
        ranked = sorted([*self.kept_best, {"epoch": epoch, "val_top1": val_top1}],
                        key=lambda c: (-c["val_top1"], c["epoch"]))
        self.kept_best = ranked[:k]
        self.prune = [c["epoch"] for c in ranked[k:] if c["epoch"] != epoch and not kept_every(c["epoch"])]

    def keeps(self, epoch: int, kept_every: Callable[[int], bool]) -> bool:
        """Whether ``epoch``'s checkpoint is kept as checkpoints/epoch_<N>.pt."""
        return kept_every(epoch) or any(c["epoch"] == epoch for c in self.kept_best)


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
    optimizer = state["optimizer"]
    if not isinstance(optimizer, Mapping) or not isinstance(optimizer.get("state"), Mapping) \
            or not isinstance(optimizer.get("param_groups"), list):
        raise bad("optimizer", "an optimizer state dict ({'state': {...}, 'param_groups': [...]})")
    if state.get("scaler") is not None and not isinstance(state["scaler"], Mapping):
        raise bad("scaler", "a gradient scaler's state dict or None")
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
    kept_best = state.get("kept_best", [])
    if not isinstance(kept_best, list) or len(kept_best) > 1000 or not all(
            isinstance(k, Mapping) and set(k) == {"epoch", "val_top1"} and _is_int(k["epoch"])
            and 1 <= k["epoch"] < next_epoch and _is_number(k["val_top1"]) for k in kept_best):
        raise bad("kept_best", f"a list of at most 1000 {{'epoch': ..., 'val_top1': ...}} of epochs below {next_epoch}")
    prune = state.get("prune", [])
    if not isinstance(prune, list) or len(prune) > 1001 or not all(_is_int(e) and 1 <= e < next_epoch for e in prune):
        raise bad("prune", f"a list of epochs below {next_epoch}")
    return LoopState(next_epoch, next_step, partial, dict(best), skipped, [dict(k) for k in kept_best], list(prune))


def check_batch_size(state: Mapping[str, Any], path: Path, batch_size: int) -> None:
    """A checkpoint saved mid-epoch resumes only with the train.batch_size it was saved with: the loader
    cuts the rest of the epoch's order at next_step x batch size, so another size would skip or repeat
    images of that epoch. At an epoch's end the size may change."""
    next_epoch, next_step = state.get("next_epoch"), state.get("next_step")
    if not _is_int(next_epoch) or not _is_int(next_step) or next_step <= 0:
        return  # an epoch's end, or fields loop_state_from refuses
    config = state.get("config")
    train = config.get("train") if isinstance(config, Mapping) else None
    saved = train.get("batch_size") if isinstance(train, Mapping) else None
    if not _is_int(saved) or saved < 1:
        raise CheckpointError(f"{path}: saved mid-epoch (step {next_step}) without a readable train.batch_size in "
                              "its 'config' field; the checkpoint is damaged or was not written by fcc train")
    if saved != batch_size:
        raise ConfigError(f"train.batch_size={batch_size}: {path} was saved in the middle of epoch {next_epoch} "
                          f"(before its step {next_step + 1}) with train.batch_size={saved}; another batch size "
                          f"would skip or repeat images of that epoch. Resume with train.batch_size={saved} (a "
                          "later resume from an epoch's end may change it)")


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


def _finished_epoch(state: Mapping[str, Any]) -> int | None:
    """The epoch a checkpoint was saved at the end of; None mid-epoch or when its fields are malformed."""
    next_epoch, next_step = state.get("next_epoch"), state.get("next_step", 0)
    if not _is_int(next_epoch) or not _is_int(next_step) or next_step != 0:
        return None
    return next_epoch - 1


def repair_best(checkpoints: Path) -> bool:
    """Make best.pt hold what last.pt says is best (see the module doc); returns whether it copied.

    Fields of the wrong type are no claim (nothing is copied): resuming checks every field and says what
    is wrong (``loop_state_from``) before this runs."""
    last, best = checkpoints / "last.pt", checkpoints / "best.pt"
    if not last.is_file():
        return False
    state = load_checkpoint(last)
    claim = state.get("best")
    claimed = claim.get("epoch") if isinstance(claim, Mapping) else None
    finished = _finished_epoch(state)
    if not _is_int(claimed) or claimed != finished:
        return False  # the claim is about an earlier epoch, whose best.pt write completed before last.pt moved on
    if best.is_file():
        held = load_checkpoint(best)
        if _finished_epoch(held) == finished:
            return False
    with open(last, "rb") as src:
        atomic_write_bytes(best, lambda f: shutil.copyfileobj(src, f))
    return True


def checkpoint_bytes(cfg: Config, model: nn.Module) -> int:
    """About how large a training checkpoint of ``model`` is: its weights and buffers, plus the optimizer's
    state per trained parameter (momentum, or Adam's two moments)."""
    t = cfg.train
    slots = 2 if t.optimizer in ("adam", "adamw") else int(t.momentum > 0)
    weights = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    trained = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return weights + slots * trained


class RunCheckpoints:
    """The checkpoints of one run directory (``RUN/checkpoints``), written by rank 0 only."""

    def __init__(self, run_dir: Path, ctx: DistContext, *, fp16: bool = False) -> None:
        """``fp16``: the run trains under fp16 autocast, whose overflow the failure messages then name."""
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / "checkpoints"
        self.ctx = ctx
        self.fp16 = fp16

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    # ------------------------------------------------------------------------------------ writing

    @staticmethod
    def state(*, cfg: Config, model: nn.Module, optimizer: torch.optim.Optimizer,
              scaler: torch.amp.GradScaler | None, loop: LoopState, stats: ClassStats, class_names: list[str],
              world_size: int) -> dict[str, Any]:
        """What a training checkpoint holds (see the module doc)."""
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            **loop.to_dict(),
            "config": cfg.to_dict(),
            "class_stats": stats.to_dict(),
            "class_counts": list(stats.train_counts),
            "class_names": list(class_names),
            "world_size": world_size,
            "fcc_version": __version__,
        }

    def checked(self, state: dict[str, Any]) -> dict[str, Any]:
        """``state``, refused when any model or optimizer tensor is no longer finite."""
        bad = nonfinite_tensors(state["model"], state["optimizer"])
        if bad:
            raise TrainingError(self.diverged_message(bad))
        return state

    def save(self, state: dict[str, Any], name: str = "last") -> Path:
        """Write ``checkpoints/<name>.pt`` (rank 0), never replacing a good checkpoint by a diverged one."""
        path = self.folder / f"{name}.pt"
        if self.ctx.is_main:
            save_checkpoint(self.checked(state), path)
        return path

    def epoch_path(self, epoch: int) -> Path:
        """Where an epoch's kept checkpoint is (train.keep_every, train.keep_best)."""
        return self.folder / f"epoch_{epoch}.pt"

    def save_epoch(self, checked_state: dict[str, Any], *, improved: bool, keep: bool = False) -> None:
        """An epoch's checkpoints (rank 0): last.pt; then its copy as best.pt when the epoch improved, and as
        epoch_<N>.pt when it is kept; then the epoch checkpoints last.pt's ``prune`` lists are deleted. Each
        write is atomic; a kill between them is repaired on resume (``repair_best``, ``repair_kept``)."""
        if not self.ctx.is_main:
            return
        save_checkpoint(checked_state, self.last)
        if improved:
            self._copy_last(self.folder / "best.pt")
        if keep:
            self._copy_last(self.epoch_path(checked_state["next_epoch"] - 1))
        for epoch in checked_state.get("prune", []):
            self.epoch_path(epoch).unlink(missing_ok=True)

    def _copy_last(self, path: Path) -> None:
        with open(self.last, "rb") as src:
            atomic_write_bytes(path, lambda f: shutil.copyfileobj(src, f))

    def repair_kept(self, loop: LoopState, kept_every: Callable[[int], bool]) -> None:
        """After a kill between an epoch's writes (rank 0): the epoch last.pt holds gets its epoch_<N>.pt if it
        is kept and the file is missing, and the checkpoints last.pt says to prune are deleted."""
        if not self.ctx.is_main:
            return
        finished = loop.next_epoch - 1 if not loop.next_step else 0
        if finished >= 1 and loop.keeps(finished, kept_every) and not self.epoch_path(finished).is_file():
            self._copy_last(self.epoch_path(finished))
        for epoch in loop.prune:
            self.epoch_path(epoch).unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------- restoring

    def restore(self, *, cfg: Config, stats: ClassStats, steps_per_epoch: Callable[[int], int], model: nn.Module,
                optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> LoopState:
        """Put last.pt's weights, optimizer and scaler state into the run's parts and return its loop state,
        every field checked against the run first."""
        path = self.last
        state = load_checkpoint(path, map_location=self.ctx.device)
        done = state.get("next_epoch")
        epochs = cfg.train.epochs
        if _is_int(done) and epochs + 1 < done <= 10**9:
            raise ConfigError(f"train.epochs={epochs}: the run in {self.run_dir} has already trained {done - 1} "
                              "epochs; resume with train.epochs of at least that many")
        check_batch_size(state, path, cfg.train.batch_size)
        loop = loop_state_from(state, path, epochs=epochs, steps_per_epoch=steps_per_epoch)
        if self.ctx.is_main:  # every field is checked: the best.pt claim can be trusted now
            repair_best(self.folder)
        barrier(self.ctx)
        saved_stats = state.get("class_stats") or {}
        if saved_stats and saved_stats != stats.to_dict():
            raise CheckpointError(f"{path}: saved for a training set with other class counts; "
                                  "data.* settings differ from the run being resumed")
        load_model_state(model, state["model"], str(path))
        try:
            optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: optimizer state does not fit ({err})") from None
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        return loop

    def load_best(self, model: nn.Module) -> int:
        """best.pt's weights into ``model`` (after repairing the pair); returns the epoch it holds."""
        path = self.folder / "best.pt"
        if self.ctx.is_main:
            repair_best(self.folder)
        barrier(self.ctx)
        if not path.exists():
            raise CheckpointError(f"eval.checkpoint: best, but {path} does not exist (best.pt is "
                                  "only kept when a validation split exists: set data.val_per_class)")
        state = load_checkpoint(path, map_location=self.ctx.device)
        load_model_state(model, state["model"], str(path))
        return int(state["next_epoch"]) - 1

    # ----------------------------------------------------------------------------------- messages

    def kept(self) -> str:
        """Which checkpoint a failed run keeps, for its error message."""
        last = self.last
        if not last.exists():
            return "no checkpoint had been written yet, so there is nothing to resume"
        try:
            state = load_checkpoint(last)
        except CheckpointError:
            return f"{last} is kept"
        next_epoch, step = state.get("next_epoch"), state.get("next_step") or 0
        if not _is_int(next_epoch) or not _is_int(step):
            return f"{last} is kept"
        at = f"after epoch {next_epoch - 1}" if not step else f"at epoch {next_epoch}, step {step}"
        return f"the last good checkpoint {last} (saved {at}; every tensor finite) is kept"

    def diverged_message(self, bad: list[str]) -> str:
        shown = ", ".join(bad[:4]) + (" ..." if len(bad) > 4 else "")
        return (f"training diverged: non-finite values in {len(bad)} tensors of the model or optimizer ({shown}) "
                f"although the loss stayed finite; {self.kept()}. {self._advice('Lower train.lr (or check the data)')}"
                " and resume.")

    def _advice(self, usual: str) -> str:
        if not self.fp16:
            return usual
        return ("With train.amp=fp16, values beyond fp16's range (65504) overflow: train with train.amp=bf16 (same "
                f"range as float32) or off, or {usual[0].lower()}{usual[1:]},")

    def nonfinite_message(self, epoch: int, step: int, steps: int, skipped: int | None = None) -> str:
        """A non-finite loss at ``step`` (0-based) of ``epoch``; ``skipped``: after skipping that many."""
        extra = (f" after skipping {skipped} such steps (train.max_nonfinite_steps)" if skipped is not None else "")
        advice = self._advice("Lower train.lr, check the data, or allow skipping with train.max_nonfinite_steps")
        return (f"non-finite loss at epoch {epoch}, step {step + 1} of {steps}{extra}; training stopped and "
                f"{self.kept()}. {advice.rstrip(',')}.")
