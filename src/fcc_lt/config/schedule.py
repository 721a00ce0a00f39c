"""Epochs in a config: the one start-epoch rule and the rescaling of schedules.

Epochs count from 1, and every ``*start_epoch`` key names the FIRST epoch at which the thing is active
(``fcc.start_epoch: 51`` scales features in epochs 51..200): ``is_active`` is that rule, used by every
scheduled part (FCC, DRW, DRS) and by the LR schedule.

Shortened schedules: a config may state ``train.schedule_epochs`` (the run length its epoch-valued keys
were written for, 200 in the shipped configs). When ``train.epochs`` differs, every epoch-valued key
that was not itself given on the command line is rescaled to the new length: ``train.milestones``,
``train.warmup_epochs``, ``fcc.start_epoch`` and every part parameter whose name ends in
``start_epoch`` (deferred re-weighting / re-sampling). A first-active epoch s of an S-epoch schedule
becomes 1 + round((s - 1) * E / S). The saved config shows the rescaled values.

Start epochs are found (``start_epochs``) and range-checked (``check_start_epochs``) here only: the
rescaling checks them against the schedule they were written for, validation against the run; a part
declares such a parameter as ``FirstEpoch | None``, whose type says ">= 1".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fcc_lt.config.schema import Config, PartConfig
from fcc_lt.util.errors import ConfigError, require
from fcc_lt.util.typecheck import Range

# The type of a part's *start_epoch parameter: a first active epoch (the upper bound, train.epochs, is
# checked with the whole config by check_start_epochs).
FirstEpoch = Annotated[int, Range("the first active epoch (>= 1)", low=1)]

PART_SECTIONS = ("loss", "sampler", "mix")


def start_epochs(cfg: Config) -> dict[str, int]:
    """Every first-active-epoch key of ``cfg`` and its value: ``fcc.start_epoch`` and each part parameter
    whose name ends in ``start_epoch`` and that holds an integer (null: from the start)."""
    found = {"fcc.start_epoch": cfg.fcc.start_epoch}
    for section in PART_SECTIONS:
        part: PartConfig = getattr(cfg, section)
        for name, value in part.params.items():
            if name.endswith("start_epoch") and isinstance(value, int) and not isinstance(value, bool):
                found[f"{section}.params.{name}"] = value
    return found


def check_start_epochs(cfg: Config) -> None:
    """Each start epoch names an epoch of the run: in [1, train.epochs]."""
    epochs = cfg.train.epochs
    for key, value in start_epochs(cfg).items():
        nullable = ", or null" if key != "fcc.start_epoch" else ""
        require(1 <= value <= epochs, key, f"the first active epoch, in [1, train.epochs={epochs}]{nullable}", value)


def _schedule_length(raw: Mapping[str, Any]) -> Any:
    return (raw.get("train") or {}).get("schedule_epochs")


def _rescale_first_epoch(epoch: int, old: int, new: int) -> int:
    """1 + round((epoch - 1) * new / old), halves up, in integer arithmetic (no float overflow)."""
    return min(max(1, 1 + (2 * (epoch - 1) * new + old) // (2 * old)), new)


def rescale_schedule(cfg: Config, keep: set[str] = frozenset()) -> dict[str, tuple[Any, Any]]:
    """Rescale epoch-valued keys from ``train.schedule_epochs`` to ``train.epochs`` (see module doc).

    Keys in ``keep`` (given explicitly on the command line) are left as they are. Returns
    {key: (old, new)} of what changed.
    """
    t = cfg.train
    old, new = t.schedule_epochs, t.epochs
    changed: dict[str, tuple[Any, Any]] = {}
    if old is None or old == new:
        t.schedule_epochs = new if old is not None else None
        return changed
    if old < 1:
        raise ConfigError(f"train.schedule_epochs: expected an integer >= 1, got {old}")

    def update(key: str, value: Any, low: int, scale: Any) -> Any:
        if key in keep:
            return value
        # Checked against the schedule the value was written for, before rescaling: clamping would
        # otherwise turn a start epoch past the end (or a 0) into a valid one silently.
        require(all(low <= v <= old for v in (value if isinstance(value, list) else [value])), key,
                f"{'epochs' if isinstance(value, list) else 'an epoch'} in [{low}, {old}] of the {old}-epoch "
                "schedule it is written for (train.schedule_epochs)", value)
        scaled = [scale(v) for v in value] if isinstance(value, list) else scale(value)
        if value != scaled:
            changed[key] = (value, scaled)
        return scaled

    def first_epoch(e: int) -> int:
        return _rescale_first_epoch(e, old, new)

    milestones = list(t.milestones)
    t.milestones = update("train.milestones", t.milestones, 1, first_epoch)
    t.warmup_epochs = update("train.warmup_epochs", t.warmup_epochs, 0,
                             lambda w: (2 * w * new + old) // (2 * old))  # round(w * new / old), halves up
    starts: dict[str, tuple[int, int]] = {}  # start epochs that act: (before, after), for the warnings
    for key, value in start_epochs(cfg).items():
        scaled = update(key, value, 1, first_epoch)
        if key == "fcc.start_epoch":
            cfg.fcc.start_epoch = scaled
            if not cfg.fcc.enabled:
                continue
        else:
            section, _, name = key.split(".")
            getattr(cfg, section).params[name] = scaled
        starts[key] = (value, scaled)
    if t.scheduler == "multistep":
        _warn_short_schedule(milestones, t.milestones, starts, old, new)
    t.schedule_epochs = new
    return changed


class ScheduleWarning(UserWarning):
    """A shortened schedule cannot hold what the config's schedule does (an LR drop on epoch 1, two drops
    on one epoch, a deferred part that now acts only at the lowered LR)."""


def _warn_short_schedule(before: list[int], after: list[int], starts: Mapping[str, Any], old: int, new: int) -> None:
    """Say loudly when rescaling changed what the schedule means, not just its length."""
    import warnings

    problems = []
    if after and after[0] <= 1 < (before[0] if before else 2):
        problems.append(f"the LR drop at epoch {before[0]} of {old} lands on epoch 1, so the whole run trains at "
                        "the lowered LR")
    collapsed = sorted({e for e in after if after.count(e) > 1})
    if collapsed and len(set(before)) > len(set(after)):
        problems.append(f"LR drops {before} land on epochs {after}: several fall on epoch(s) {collapsed} at once")
    for key, pair in starts.items():
        if not isinstance(pair, tuple) or not before:
            continue
        was, now = pair
        if was < before[0] and now >= after[0]:
            problems.append(f"{key} {was} -> {now}: in the {old}-epoch schedule it acts {before[0] - was} epochs "
                            f"before the first LR drop; now only after it (epoch {after[0]})")
    if problems:
        warnings.warn(f"train.epochs={new} is too short for this {old}-epoch schedule: " + "; ".join(problems)
                      + ". Results will not mean what the config means; for a quick check of every part use "
                      "`fcc train CONFIG --smoke`, otherwise give more epochs (or set train.milestones and the "
                      "start epochs yourself)", ScheduleWarning, stacklevel=3)


def is_active(epoch: int, start_epoch: int | None) -> bool:
    """Whether something that starts at ``start_epoch`` (1-based, None = from the start) acts in ``epoch``."""
    return start_epoch is None or epoch >= start_epoch
