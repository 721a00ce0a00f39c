"""The one reader of run directories: which folders are runs, what state each is in, and its files.

A run directory is a folder holding ``config.yaml``; `fcc train` leaves ``metrics.jsonl``, ``eval.json``,
``confusion.csv`` and (with `fcc eval --features`) ``features.json`` / ``features.npz`` beside it, and a
sweep folder holds ``sweep.json``. `fcc report`, `fcc plot` and `fcc sweep` read them here and nowhere
else, from the files alone (no torch import, no dataset, no checkpoint). Evaluation, below this block,
loads models through fcc_lt.evaluation.run_loader and sees a run that is training through
fcc_lt.util.run_lock.is_locked.

States (``run_status``):
- ``running``: another process holds the run directory's lock (``RUN/.lock``, see fcc_lt.util.run_lock);
- ``finished``: ``eval.json`` exists and ``metrics.jsonl`` reached the config's last epoch;
- ``stopped``: a checkpoint or epoch lines exist but the run did not finish (resume it);
- ``empty``: a config was written but nothing was trained yet;
- ``missing``: not a run directory (no readable ``config.yaml``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcc_lt.config.load import load_yaml_file
from fcc_lt.util.errors import ConfigError, DataError
from fcc_lt.util.files import read_input, read_input_text
from fcc_lt.util.run_lock import is_locked

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
FEATURES = "features.json"
FEATURES_NPZ = "features.npz"
CONFUSION = "confusion.csv"
SWEEP_RECORD = "sweep.json"


class RunFileError(DataError):
    """A run directory's file is absent, unreadable or not what fcc writes.

    The message names the path; ``detail`` says the same in a few words for a report's table ("no
    eval.json", "eval.json is not valid JSON (...)"); ``missing`` tells an absent file from a broken one."""

    def __init__(self, path: Path, message: str, detail: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.path = Path(path)
        self.detail = detail
        self.missing = missing


# ------------------------------------------------------------------------------------------ finding runs


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """The run directories named, or found below the folders named (a folder of a sweep), in order.

    A run directory is one with a config.yaml; the search does not descend into one. Bad arguments are
    one-line ConfigErrors: nothing named, a path that does not exist or is a file, a folder without runs.
    """
    if not paths:
        raise ConfigError("fcc report: name one or more run directories (or folders that contain them)")
    found: list[Path] = []
    seen: set[str] = set()
    for arg in paths:
        path = Path(arg)
        if not path.exists():
            raise ConfigError(f"{path}: no such directory")
        if not path.is_dir():
            raise ConfigError(f"{path}: not a directory; give run directories (the folder holding config.yaml), "
                              "not their files")
        runs = _runs_below(path)
        if not runs:
            raise ConfigError(f"{path}: no run directories in it (no config.yaml there or in a folder below)")
        for run in runs:
            key = str(run.resolve())
            if key not in seen:
                seen.add(key)
                found.append(run)
    return found


def _runs_below(path: Path) -> list[Path]:
    if (path / CONFIG).is_file():
        return [path]
    runs = []
    for root, dirs, files in os.walk(path):
        if CONFIG in files:
            runs.append(Path(root))
            dirs.clear()  # a run directory's subfolders (checkpoints/) hold no runs
        else:
            dirs.sort()
    return sorted(runs)


# ------------------------------------------------------------------------------------------------ files


def read_config(run_dir: Path) -> dict[str, Any] | None:
    """The run's resolved config.yaml as a mapping, or None when absent or unreadable."""
    try:
        data = load_yaml_file(Path(run_dir) / CONFIG, "run config")
    except ConfigError:
        return None
    return data if isinstance(data, dict) else None


def read_json(path: Path, what: str) -> Any:
    """A JSON file of a run directory, read through the bounded reader; RunFileError otherwise (``what``
    says what the file is, for the message)."""
    path = Path(path)
    try:
        text = read_input_text(path, what)
    except DataError as err:
        if not os.path.lexists(path):
            raise RunFileError(path, str(err), f"no {path.name}", missing=True) from None
        raise RunFileError(path, str(err), f"{path.name} unreadable ({str(err).removeprefix(f'{path}: ')})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RunFileError(path, f"{path}: not valid JSON ({err.msg}, line {err.lineno})",
                           f"{path.name} is not valid JSON ({err.msg}, line {err.lineno})") from None


def read_eval(run_dir: Path, name: str = EVAL) -> Any:
    """The result file of a run (eval.json, or another one `fcc eval` wrote)."""
    return read_json(Path(run_dir) / name, "evaluation result (`fcc eval RUN` writes it)")


def read_feature_json(run_dir: Path) -> Any:
    """features.json of `fcc eval RUN --features`, as it is (RunFileError with ``missing`` when absent)."""
    return read_json(Path(run_dir) / FEATURES, "feature statistics (`fcc eval RUN --features` writes them)")


def read_feature_stats(run_dir: Path) -> dict[str, Any]:
    """features.json with its per-class statistics (the cluster figure needs them)."""
    data = read_feature_json(run_dir)
    per_class = data.get("per_class") if isinstance(data, dict) else None
    if not isinstance(per_class, dict) or "spread_ratio" not in per_class:
        raise DataError(f"{Path(run_dir) / FEATURES}: has no per-class spread_ratio; rerun `fcc eval {run_dir} "
                        "--features` with this version of fcc")
    return data


def last_epoch(metrics_path: Path) -> int | None:
    """The largest epoch of the complete lines of a metrics.jsonl (a line cut by a kill is ignored)."""
    best: int | None = None
    try:
        text = Path(metrics_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        try:
            epoch = json.loads(line).get("epoch")
        except (json.JSONDecodeError, AttributeError):
            continue
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            best = epoch if best is None else max(best, epoch)
    return best


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's epoch lines in epoch order (a line cut by a kill is skipped; a re-logged epoch keeps
    its last line)."""
    path = Path(run_dir) / METRICS
    text = read_input_text(path, "training log (metrics.jsonl)")
    by_epoch: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            by_epoch[record["epoch"]] = record
    if not by_epoch:
        raise DataError(f"{path}: no epoch lines yet")
    return [by_epoch[e] for e in sorted(by_epoch)]


def read_confusion(run_dir: Path) -> tuple[list[str], Any]:
    """confusion.csv as written by `fcc eval`: header 'true\\pred,names...', one row of counts per class."""
    import csv

    import numpy as np

    path = Path(run_dir) / CONFUSION
    text = read_input_text(path, "confusion matrix (`fcc eval RUN` writes it)")
    rows = list(csv.reader(text.splitlines()))
    if len(rows) < 2 or not rows[0] or rows[0][0] != "true\\pred":
        raise DataError(f"{path}: not a confusion matrix of fcc (expected a header 'true\\pred,...')")
    names = rows[0][1:]
    body = rows[1:]
    if len(body) != len(names) or any(len(r) != len(names) + 1 for r in body):
        raise DataError(f"{path}: expected {len(names)} rows of {len(names)} counts, one per class")
    try:
        counts = np.array([[int(v) for v in r[1:]] for r in body], dtype=np.int64)
    except ValueError as err:
        raise DataError(f"{path}: a count is not an integer ({err})") from None
    return names, counts


def read_features_npz(run_dir: Path) -> dict[str, Any]:
    """features.npz of `fcc eval RUN --features`: features (N, D), labels (N,), train_counts (C,), class_names."""
    import io

    import numpy as np

    path = Path(run_dir) / FEATURES_NPZ
    raw = read_input(path, "test features (`fcc eval RUN --features` writes them)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz of plain arrays ({err})") from None
    missing = [k for k in ("features", "labels", "train_counts") if k not in data]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}")
    feats, labels, counts = data["features"], data["labels"], data["train_counts"]
    if feats.ndim != 2 or labels.shape != (feats.shape[0],) or counts.ndim != 1:
        raise DataError(f"{path}: expected features (N, D), labels (N,), train_counts (C,); got "
                        f"{feats.shape}, {labels.shape}, {counts.shape}")
    if feats.shape[0] < 3 or labels.min() < 0 or labels.max() >= counts.shape[0]:
        raise DataError(f"{path}: needs at least 3 samples with labels in 0..{counts.shape[0] - 1}")
    names = data.get("class_names")
    data["class_names"] = np.array([str(n) for n in names] if names is not None and len(names) == len(counts)
                                   else [str(c) for c in range(len(counts))])
    return data


def read_sweep_record(out: Path) -> dict[str, Any] | None:
    """OUT/sweep.json of an earlier sweep, or None when absent or unreadable."""
    try:
        data = json.loads((Path(out) / SWEEP_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


# ------------------------------------------------------------------------------------------------ state


@dataclass(frozen=True)
class RunStatus:
    state: str
    epoch: int | None = None  # the last epoch with a line in metrics.jsonl
    epochs: int | None = None  # train.epochs of the run's config
    detail: str = ""

    @property
    def finished(self) -> bool:
        return self.state == "finished"


def run_status(run_dir: Path) -> RunStatus:
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if cfg is None:
        return RunStatus("missing", detail=f"{run_dir}: no readable config.yaml")
    epochs = (cfg.get("train") or {}).get("epochs")
    epochs = epochs if isinstance(epochs, int) else None
    epoch = last_epoch(run_dir / METRICS)
    if is_locked(run_dir):
        return RunStatus("running", epoch, epochs, "in use by another fcc process")
    if (run_dir / EVAL).is_file() and epoch is not None and epochs is not None and epoch >= epochs:
        return RunStatus("finished", epoch, epochs)
    if epoch is not None or (run_dir / "checkpoints" / "last.pt").is_file():
        return RunStatus("stopped", epoch, epochs, f"stopped after epoch {epoch or 0} of {epochs}")
    return RunStatus("empty", None, epochs, "nothing trained yet")
