"""A run directory on disk: preparing and locking it, the config it records, its metrics file.

Layout: ``config.yaml`` (the resolved config the run trains with, updated when a resume changes it),
``config_history.yaml`` (every such change: when, from which epoch, old and new values),
``metrics.jsonl`` (one line per finished epoch), ``train.log`` (engine.run_log), ``checkpoints/last.pt``
and ``best.pt`` (and ``epoch_<N>.pt`` with train.keep_every / keep_best), ``eval.json`` and confusion
files, ``tensorboard/``; ``.lock`` is held while a process trains in it.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from fcc_lt.config.schema import Config, flat_keys
from fcc_lt.util.errors import OutputError
from fcc_lt.util.files import atomic_write_text, read_input, remove_stale_temps
from fcc_lt.util.run_lock import lock_run_dir

RESULT_FILES = ("metrics.jsonl", "eval.json", "confusion.csv", "confusion.png", "config_history.yaml")


def prepare_run_dir(cfg: Config, *, resume: bool, overwrite: bool) -> Path:
    """Create (or check) the run directory, lock it, and make sure it is writable before any work starts."""
    run_dir = Path(cfg.out or "runs/default")
    last = run_dir / "checkpoints" / "last.pt"
    if not resume and last.exists() and not overwrite:
        raise OutputError(f"{run_dir} already holds a run ({last}); continue it with "
                          f"`fcc train --resume {run_dir}`, choose another out=..., or pass --overwrite")
    try:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        lock_run_dir(run_dir)  # before anything in the folder is touched; released when training ends
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
        # temporary files of a write that a kill interrupted (the finished files are intact)
        remove_stale_temps(run_dir)
        remove_stale_temps(run_dir / "checkpoints")
        if overwrite and not resume:
            for name in RESULT_FILES:
                (run_dir / name).unlink(missing_ok=True)
            for ckpt in (run_dir / "checkpoints").glob("*.pt"):
                ckpt.unlink()
    except OSError as err:
        raise OutputError(f"cannot write to the run directory {run_dir}: {err.strerror or err}") from None
    return run_dir


def holds_smoke_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a smoke run (``fcc train --smoke``: its config.yaml caps the steps and the
    evaluation batches), which a new smoke run of the same config may replace; anything else, or a
    config.yaml that cannot be read, counts as a real run."""
    from fcc_lt.config.load import read_yaml
    from fcc_lt.util.errors import ConfigError

    try:
        raw = read_yaml(Path(run_dir) / "config.yaml")
    except ConfigError:
        return False
    train, evaluation = raw.get("train"), raw.get("eval")
    return (isinstance(train, dict) and train.get("max_steps_per_epoch") is not None
            and isinstance(evaluation, dict) and evaluation.get("max_batches") is not None)


def write_config(run_dir: Path, cfg: Config) -> None:
    """config.yaml: the fully resolved config the run trains with."""
    atomic_write_text(Path(run_dir) / "config.yaml", cfg.dump())


def record_resume_changes(run_dir: Path, cfg: Config, resumed_at: str) -> dict[str, tuple[Any, Any]]:
    """When a run resumes with overrides, make config.yaml say what the run now does and append the
    change to config_history.yaml (time, where the run resumed, every key's old and new value).

    Returns {key: (old, new)}; nothing is written when nothing changed.
    """
    from fcc_lt.config.load import load_yaml_file, read_yaml

    path = Path(run_dir) / "config.yaml"
    before = flat_keys(read_yaml(path))
    after = flat_keys(cfg.to_dict())
    changes = {k: (before.get(k), v) for k, v in after.items() if k != "out" and before.get(k) != v}
    if not changes:
        return changes
    history_path = Path(run_dir) / "config_history.yaml"
    history: list[Any] = []
    if history_path.exists():
        loaded = load_yaml_file(history_path, "resume history")
        history = loaded if isinstance(loaded, list) else []
    history.append({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "resumed_at": resumed_at,
                    "changes": {k: {"old": old, "new": new} for k, (old, new) in changes.items()}})
    atomic_write_text(history_path, yaml.safe_dump(history, sort_keys=False))
    write_config(run_dir, cfg)
    return changes


def check_free_space(run_dir: Path, checkpoint_bytes: int, kept: int = 0) -> None:
    """Refuse to start when the run directory's filesystem cannot hold a checkpoint next to the previous
    one, and the ``kept`` epoch checkpoints asked for (train.keep_every, train.keep_best): found now, a
    full disk costs nothing; found at the end of epoch 1, it costs an epoch."""
    from fcc_lt.util.errors import format_size

    try:
        free = shutil.disk_usage(run_dir).free
    except OSError:  # no usage figures (some network filesystems): the writes still report a full disk
        return
    if free < (2 + kept) * checkpoint_bytes:
        history = f", and train.keep_every / keep_best keep up to {kept} more" if kept else ""
        raise OutputError(f"{run_dir}: only {format_size(free)} free, but a checkpoint takes about "
                          f"{format_size(checkpoint_bytes)} and is written next to the previous one{history}; free "
                          "some space or choose another out=...")


class MetricsFile:
    """``metrics.jsonl``: one JSON line per finished epoch (non-finite numbers written as null)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"

    @staticmethod
    def clean(record: dict[str, Any]) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(self.clean(record)) + "\n"
        try:
            # not open_append: a resume has already read this file through the bounded reader (truncate), which
            # refuses a FIFO or a device in its place; the tests stand in /dev/full for a full disk here
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line)
        except OSError as err:
            raise OutputError(f"cannot append to {self.path}: {err.strerror or err}") from None

    def truncate(self, next_epoch: int) -> None:
        """Drop the lines of epochs that will be trained again after a resume (and lines cut by a kill)."""
        if not self.path.exists():
            return
        kept = []
        # the run's own file, but read within bounds like any file in a run folder (a FIFO or a file grown to
        # gigabytes is an error naming it, not a hang)
        text = read_input(self.path, "metrics file", OutputError).decode("utf-8", errors="replace")
        for line in text.splitlines():
            try:
                if json.loads(line).get("epoch", 0) < next_epoch:
                    kept.append(line)
            except (json.JSONDecodeError, AttributeError, TypeError):
                continue  # a line cut short by a kill
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))
