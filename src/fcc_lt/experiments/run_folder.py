"""The one reader of run directories: which folders are runs, what state each is in, and its files.

A run directory is a folder holding ``config.yaml``; `fcc train` leaves ``metrics.jsonl``, ``eval.json``,
``confusion.csv``, (with `fcc eval --features`) ``features.json`` / ``features.npz`` and (with `fcc analyze`)
``analysis.json`` beside it, and a sweep folder holds ``sweep.json``. `fcc report`, `fcc plot` and
`fcc sweep` read them here and nowhere else, from the files alone (no torch import, no dataset, no
checkpoint). Evaluation, below this block, loads models through fcc_lt.evaluation.run_loader and sees a
run that is training through fcc_lt.util.run_lock.is_locked.

Run directories are untrusted input, like configs: every file is read through the bounded reader of
fcc_lt.util.files and checked against its schema (fcc_lt.experiments.run_schema), and a file that fails
is a ``RunFileError`` naming the file and the field, never another exception. Values of the right type
that cannot be true (a top-1 of 1e200) are not errors but flags, for the report to leave the run out and
say why.

States (``run_status``):
- ``running``: another process holds the run directory's lock (``RUN/.lock``, see fcc_lt.util.run_lock);
- ``finished``: ``eval.json`` exists and ``metrics.jsonl`` reached the config's last epoch;
- ``stopped``: a checkpoint or epoch lines exist but the run did not finish (resume it);
- ``empty``: a config was written but nothing was trained yet;
- ``unreadable``: ``metrics.jsonl`` fails its schema (the detail names the line and field);
- ``missing``: not a run directory (no ``config.yaml``, or one that is not valid YAML or fails its schema).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fcc_lt.experiments import run_schema
from fcc_lt.experiments.run_schema import EVAL_METRICS, BadField, EvalResult
from fcc_lt.util.errors import ConfigError, DataError, FccError, path_problem
from fcc_lt.util.files import read_input, read_input_text
from fcc_lt.util.run_lock import is_locked

CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
EVAL = "eval.json"
FEATURES = "features.json"
FEATURES_NPZ = "features.npz"
CONFUSION = "confusion.csv"
ANALYSIS = "analysis.json"
SWEEP_RECORD = "sweep.json"
MAX_RUNS = 100_000  # run directories below the folders named; a search stops with an error beyond this

__all__ = ["ANALYSIS", "CONFIG", "EVAL", "EVAL_METRICS", "EvalResult", "RunFileError", "RunStatus",
           "config_or_none", "find_run_dirs", "last_epoch", "read_analysis", "read_config", "read_confusion",
           "read_eval", "read_feature_json", "read_feature_stats", "read_features_npz", "read_metrics",
           "read_sweep_record", "run_status"]


class RunFileError(DataError):
    """A run directory's file is absent, unreadable or not what fcc writes.

    The message names the path (and the field); ``detail`` says the same in a few words for a report's
    table ("no eval.json", "eval.json: top1: expected a number, got 'x'"); ``missing`` tells an absent
    file from a broken one."""

    def __init__(self, path: Path, message: str, detail: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.path = Path(path)
        self.detail = detail
        self.missing = missing


def _checked(path: Path, check: Callable[[Any], Any], data: Any) -> Any:
    """``check(data)``, with a schema failure turned into a RunFileError naming ``path`` and the field."""
    try:
        return check(data)
    except BadField as bad:
        raise RunFileError(path, f"{path}: {bad.field}: {bad.message}", f"{path.name}: {bad.field}: {bad.message}") \
            from None


def _text(path: Path, what: str) -> str:
    """A run file's text through the bounded reader; RunFileError (``missing`` when absent) otherwise."""
    try:
        return read_input_text(path, what)
    except FccError as err:
        if not os.path.lexists(path):
            raise RunFileError(path, str(err), f"no {path.name}", missing=True) from None
        raise RunFileError(path, str(err), f"{path.name} unreadable ({str(err).removeprefix(f'{path}: ')})") \
            from None


def _json(path: Path, what: str) -> Any:
    text = _text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RunFileError(path, f"{path}: not valid JSON ({err.msg}, line {err.lineno})",
                           f"{path.name} is not valid JSON ({err.msg}, line {err.lineno})") from None
    except (ValueError, RecursionError) as err:  # an integer of more than 4300 digits; nesting beyond the stack
        raise RunFileError(path, f"{path}: not readable JSON ({type(err).__name__})",
                           f"{path.name} is not readable JSON ({type(err).__name__})") from None


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
        problem = path_problem(path)
        if problem is not None:
            raise ConfigError(f"{path} {problem}")
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
            if len(runs) > MAX_RUNS:
                raise ConfigError(f"{path}: more than {MAX_RUNS} run directories below it; name fewer folders")
        else:
            dirs.sort()
    return sorted(runs)


# ------------------------------------------------------------------------------------------------ files


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config.yaml, checked like a config: known keys of the right type (and in the
    ranges a report relies on), sections that are mappings, plain values; keys of other fcc versions kept."""
    from fcc_lt.config.load import load_yaml_file

    path = Path(run_dir) / CONFIG
    if not os.path.lexists(path):
        raise RunFileError(path, f"{path}: run config not found", f"no {CONFIG}", missing=True)
    try:
        raw = load_yaml_file(path, "run config")  # bounded, one YAML parser (duplicate keys refused)
    except ConfigError as err:
        problem = _yaml_problem(err, path)
        raise RunFileError(path, f"{path}: {problem}", f"{CONFIG}: {problem}") from None
    return _checked(path, run_schema.check_config, raw)


def _yaml_problem(err: ConfigError, path: Path) -> str:
    """The reader's or the YAML parser's complaint in one line ('not valid YAML (line 3, column 7: expected
    ...)'): PyYAML's own messages quote the text over several lines."""
    import yaml

    cause = err.__context__
    mark = getattr(cause, "problem_mark", None)
    if isinstance(cause, yaml.YAMLError) and mark is not None:
        return f"not valid YAML (line {mark.line + 1}, column {mark.column + 1}: {getattr(cause, 'problem', '')})"
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return " ".join(lines).removeprefix(f"{path}: ") if lines else "not valid YAML"


def config_or_none(run_dir: Path) -> dict[str, Any] | None:
    """``read_config``, or None when the run has no usable config (for labels that can do without)."""
    try:
        return read_config(run_dir)
    except RunFileError:
        return None


def read_eval(run_dir: Path, name: str = EVAL) -> EvalResult:
    """The result file of a run (eval.json, or another one `fcc eval` wrote), checked: top1 and the other
    accuracies, per-class accuracies with names and training counts of the same length."""
    path = Path(run_dir) / name
    return _checked(path, run_schema.check_eval, _json(path, "evaluation result (`fcc eval RUN` writes it)"))


def read_feature_json(run_dir: Path) -> dict[str, Any]:
    """features.json of `fcc eval RUN --features`, checked (RunFileError with ``missing`` when absent)."""
    path = Path(run_dir) / FEATURES
    data = _json(path, "feature statistics (`fcc eval RUN --features` writes them)")
    return _checked(path, run_schema.check_features, data)


def read_analysis(run_dir: Path) -> dict[str, Any]:
    """analysis.json of `fcc analyze`, checked (RunFileError with ``missing`` when absent)."""
    path = Path(run_dir) / ANALYSIS
    return _checked(path, run_schema.check_analysis, _json(path, "analyses (`fcc analyze RUN` writes them)"))


def read_feature_stats(run_dir: Path) -> dict[str, Any]:
    """features.json with its per-class statistics (the cluster figure needs them)."""
    data = read_feature_json(run_dir)
    if "spread_ratio" not in data.get("per_class", {}):
        raise DataError(f"{Path(run_dir) / FEATURES}: has no per-class spread_ratio; rerun `fcc eval {run_dir} "
                        "--features` with this version of fcc")
    return data


def _metric_records(path: Path) -> list[dict[str, Any]]:
    """The checked epoch records of a metrics.jsonl in file order ([] when there is none). Every complete
    line must be an epoch record; a last line without its newline that is not JSON was cut by a kill and
    is ignored (`fcc train --resume` drops it too)."""
    try:
        text = _text(path, "training log (metrics.jsonl)")
    except RunFileError as err:
        if err.missing:
            return []
        raise
    lines = text.split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, ValueError, RecursionError) as err:
            if number == len(lines):  # no newline after it: cut short by a kill
                continue
            why = err.msg if isinstance(err, json.JSONDecodeError) else type(err).__name__
            raise RunFileError(path, f"{path}: line {number}: not valid JSON ({why})",
                               f"{METRICS} line {number} is not valid JSON ({why})") from None
        records.append(_checked(path, lambda r, n=number: run_schema.check_epoch_record(r, f"line {n}"), record))
    return records


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's epoch records in epoch order (a re-logged epoch keeps its last line); DataError when
    it has none yet."""
    path = Path(run_dir) / METRICS
    if not os.path.lexists(path):
        raise RunFileError(path, f"{path}: training log (metrics.jsonl) not found", f"no {METRICS}", missing=True)
    by_epoch = {r["epoch"]: r for r in _metric_records(path)}
    if not by_epoch:
        raise DataError(f"{path}: no epoch lines yet")
    return [by_epoch[e] for e in sorted(by_epoch)]


def last_epoch(metrics_path: Path) -> int | None:
    """The largest epoch of a metrics.jsonl, for progress lines: None when there is none or the file does
    not read (``run_status`` says why)."""
    try:
        return max((r["epoch"] for r in _metric_records(Path(metrics_path))), default=None)
    except RunFileError:
        return None


def read_confusion(run_dir: Path) -> tuple[list[str], Any]:
    """confusion.csv as written by `fcc eval`: header 'true\\pred,names...', one row of counts per class."""
    path = Path(run_dir) / CONFUSION
    return run_schema.parse_confusion(path, read_input_text(path, "confusion matrix (`fcc eval RUN` writes it)"))


def read_features_npz(run_dir: Path) -> dict[str, Any]:
    """features.npz of `fcc eval RUN --features`: features (N, D) finite, labels (N,), train_counts (C,),
    class_names (C,)."""
    path = Path(run_dir) / FEATURES_NPZ
    raw = read_input(path, "test features (`fcc eval RUN --features` writes them)")
    return run_schema.parse_features_npz(path, raw)


def read_sweep_record(out: Path) -> dict[str, Any] | None:
    """OUT/sweep.json of an earlier sweep (None when there is none), checked: the spec, the runs' names,
    the SLURM jobs."""
    path = Path(out) / SWEEP_RECORD
    try:
        data = _json(path, "sweep record")
    except RunFileError as err:
        if err.missing:
            return None
        raise
    return _checked(path, run_schema.check_sweep_record, data)


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


def run_status(run_dir: Path, config: dict[str, Any] | None = None) -> RunStatus:
    """The run's state from its files (see the module doc); never raises for what a run folder holds.
    ``config``: the run's config.yaml when the caller has read it already."""
    run_dir = Path(run_dir)
    try:
        cfg = read_config(run_dir) if config is None else config
    except RunFileError as err:
        return RunStatus("missing", detail=f"{run_dir}: no readable config.yaml" if err.missing else err.detail)
    epochs = (cfg.get("train") or {}).get("epochs")
    if is_locked(run_dir):
        return RunStatus("running", last_epoch(run_dir / METRICS), epochs, "in use by another fcc process")
    try:
        records = _metric_records(run_dir / METRICS)
    except RunFileError as err:
        return RunStatus("unreadable", None, epochs, err.detail)
    epoch = max((r["epoch"] for r in records), default=None)
    if os.path.lexists(run_dir / EVAL) and epoch is not None and epochs is not None and epoch >= epochs:
        return RunStatus("finished", epoch, epochs)
    if epoch is not None or (run_dir / "checkpoints" / "last.pt").is_file():
        return RunStatus("stopped", epoch, epochs, f"stopped after epoch {epoch or 0} of {epochs}")
    return RunStatus("empty", None, epochs, "nothing trained yet")
