"""One schema per file of a run directory: what config.yaml, metrics.jsonl, eval.json, features.json,
features.npz, confusion.csv and sweep.json may hold, checked value by value.

The checks take parsed data (fcc_lt.experiments.run_folder reads the files, bounded) and raise
``BadField(field, message)`` for the first value of the wrong type or shape ("per_class[3]: expected a
number or null, got 'x'"), which the reader turns into a RunFileError naming the file. Values of the
right type that cannot be true (an accuracy of 1e200 percent) are collected as flags instead. Every loop
runs over a list whose length is bounded here, and every number is made a finite float or a 64-bit
integer before anything computes with it: a run folder can be edited, copied half, or written by another
program, and a report over a hundred runs must not stop at one of them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcc_lt.util.errors import ConfigError, DataError, path_problem, short_repr

MAX_INT = 2**63 - 1
MAX_EPOCH = 1_000_000
MAX_CLASSES = 1_000_000
MAX_TEXT = 100_000  # characters of a string value (a class name, a path)
MAX_DEPTH = 32  # nesting of plain values (part parameters, unknown keys)
EVAL_METRICS = ("top1", "top5", "mean_class", "many", "medium", "few")  # percentages in eval.json
METRIC_NUMBERS = ("lr", "train_loss", "train_acc", "test_top1", "val_top1", "epoch_time", "images_per_s")
FEATURE_NUMBERS = ("mean_norm", "within_class_spread", "centroid_separation", "compactness",
                   "mean_nearest_distance", "mean_spread_ratio")
FEATURE_GROUPS = ("spread_by_group", "nearest_distance_by_group", "spread_ratio_by_group", "norm_by_group")


class BadField(Exception):
    """A value of a run file that is not what fcc writes: ``field`` names it, ``message`` says what was
    expected and what was found."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --------------------------------------------------------------------------------------------- values


def _type(value: Any) -> str:
    return "a date" if type(value).__name__ in ("date", "datetime") else type(value).__name__


def number(value: Any, where: str, *, nullable: bool = True, low: float | None = None) -> float | None:
    """A finite number (int or float, not bool) as a float; None where null is allowed."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadField(where, f"expected a number{' or null' if nullable else ''}, got {short_repr(value)} "
                       f"({_type(value)})")
    try:
        out = float(value)
    except OverflowError:
        raise BadField(where, f"expected a number, got an integer too large for a float ({short_repr(value)})") \
            from None
    if not math.isfinite(out):
        raise BadField(where, f"expected a finite number, got {value}")
    if low is not None and out < low:
        raise BadField(where, f"expected a number >= {low:g}, got {out:g}")
    return out


def integer(value: Any, where: str, low: int = 0, high: int = MAX_INT) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadField(where, f"expected an integer, got {short_repr(value)} ({_type(value)})")
    if not low <= value <= high:
        raise BadField(where, f"expected an integer in [{low}, {high}], got {short_repr(value)}")
    return value


def text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadField(where, f"expected text, got {short_repr(value)} ({_type(value)})")
    if len(value) > MAX_TEXT:
        raise BadField(where, f"expected text of at most {MAX_TEXT} characters, got {len(value)}")
    return value


def listing(value: Any, where: str, max_len: int = MAX_CLASSES) -> list[Any]:
    if not isinstance(value, list):
        raise BadField(where, f"expected a list, got {short_repr(value)} ({_type(value)})")
    if len(value) > max_len:
        raise BadField(where, f"expected at most {max_len} entries, got {len(value)}")
    return value


def mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadField(where, f"expected a mapping, got {short_repr(value)} ({_type(value)})")
    for key in value:
        if not isinstance(key, str):
            raise BadField(where, f"keys must be text, got {short_repr(key)}")
    return value


def plain(value: Any, where: str, depth: int = 0) -> Any:
    """A plain YAML / JSON value (text, a finite number, a 64-bit integer, a boolean, null, lists and
    mappings of them), as part parameters and keys of other fcc versions hold: nothing a report could not
    compare, print or write as JSON."""
    if depth > MAX_DEPTH:
        raise BadField(where, f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return integer(value, where, -MAX_INT, MAX_INT)
    if isinstance(value, float):
        return number(value, where, nullable=False)
    if isinstance(value, str):
        return text(value, where)
    if isinstance(value, list):
        return [plain(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: plain(v, f"{where}.{k}", depth + 1) for k, v in mapping(value, where).items()}
    raise BadField(where, f"expected text, a number, a list or a mapping, got {short_repr(value)} ({_type(value)})")


# --------------------------------------------------------------------------------------------- config

# Ranges of the keys a report, a plot or a sweep computes with (the config's own validation has the rest)
CONFIG_RANGES = {"seed": (0, MAX_INT), "train.epochs": (1, MAX_EPOCH), "train.schedule_epochs": (1, MAX_EPOCH),
                 "train.warmup_epochs": (0, MAX_EPOCH), "train.max_steps_per_epoch": (1, MAX_INT),
                 "fcc.start_epoch": (1, MAX_EPOCH), "eval.many_shot_min": (0, MAX_INT),
                 "eval.few_shot_max": (0, MAX_INT), "eval.max_batches": (1, MAX_INT)}


def check_config(raw: Any) -> dict[str, Any]:
    """A run's config.yaml: a mapping of the schema's sections (fcc_lt.config.schema), known keys coerced to
    their types as a config's are, keys this fcc does not know kept as plain values (a run of another
    version), and the ranges a report relies on (``CONFIG_RANGES``, path keys a file can have)."""
    from fcc_lt.config.schema import PATH_KEYS, Config

    if not isinstance(raw, dict):
        raise BadField("top level", f"expected a mapping of config sections, got {short_repr(raw)} ({_type(raw)})")
    cfg = _section(raw, Config, "")
    for dotted, (low, high) in CONFIG_RANGES.items():
        section, _, leaf = dotted.rpartition(".")
        value = (cfg.get(section) if section else cfg) or {}
        if isinstance(value, dict) and value.get(leaf) is not None:
            integer(value[leaf], dotted, low, high)
    for i, milestone in enumerate((cfg.get("train") or {}).get("milestones") or []):
        integer(milestone, f"train.milestones[{i}]", 0, MAX_EPOCH)
    for dotted in PATH_KEYS:
        section, _, leaf = dotted.rpartition(".")
        value = ((cfg.get(section) if section else cfg) or {}).get(leaf)
        if isinstance(value, str) and (problem := path_problem(value)) is not None:
            raise BadField(dotted, f"{short_repr(value, 60)} {problem}")
    return cfg


def _section(raw: Mapping[Any, Any], cls: type, prefix: str) -> dict[str, Any]:
    from fcc_lt.config.schema import _hints, _is_section
    from fcc_lt.util.typecheck import coerce

    hints = _hints(cls)
    out: dict[str, Any] = {}
    for key, value in mapping(raw, prefix.rstrip(".") or "top level").items():
        dotted = f"{prefix}{key}"
        annotation = hints.get(key)
        if annotation is None:  # a key of another fcc version: kept, but it must be plain
            out[key] = plain(value, dotted)
        elif _is_section(annotation):
            if value is not None and not isinstance(value, dict):
                raise BadField(dotted, f"expected a mapping (a config section), got {short_repr(value)} "
                               f"({_type(value)})")
            out[key] = _section(value or {}, annotation, dotted + ".")
        else:
            try:
                out[key] = plain(coerce(value, annotation, dotted), dotted)
            except ConfigError as err:
                raise BadField(dotted, str(err).removeprefix(f"{dotted}: ")) from None
    return out


# --------------------------------------------------------------------------------------- metrics.jsonl


def check_epoch_record(record: Any, where: str) -> dict[str, Any]:
    """One line of metrics.jsonl: an object with an integer epoch >= 1; the numbers a curve draws are finite
    or null (non-finite values are written as null); other keys are kept as they are."""
    if not isinstance(record, dict):
        raise BadField(where, f"expected an epoch record (a JSON object), got {short_repr(record)}")
    out = dict(record)
    out["epoch"] = integer(record.get("epoch"), f"{where}: epoch", 1, MAX_EPOCH)
    for key in METRIC_NUMBERS:
        if key in record:
            out[key] = number(record[key], f"{where}: {key}")
    return out


# -------------------------------------------------------------------------------------------- eval.json


@dataclass(frozen=True)
class EvalResult:
    """What a report and a plot use of a result file: accuracies in percent (top1 always there), the
    per-class accuracies with their class names and training counts, whether it is a smoke run, and flags
    for values that cannot be true."""

    metrics: dict[str, float | None]
    per_class: list[float | None] | None = None
    class_names: list[str] | None = None
    train_counts: list[int] | None = None
    smoke: bool = False
    flags: list[str] = field(default_factory=list)


def _percent(value: float | None, where: str, flags: list[str]) -> float | None:
    if value is not None and not 0.0 <= value <= 100.0:
        flags.append(f"{where} is {value:g}, not a percentage in [0, 100]")
    return value


def check_eval(data: Any) -> EvalResult:
    """eval.json (or another result file of `fcc eval`): see ``EvalResult``; a list longer than the others or
    a count that is not a non-negative integer is an error, an accuracy outside [0, 100] a flag."""
    data = mapping(data, "top level")
    flags: list[str] = []
    if data.get("top1") is None:
        raise BadField("top1", "missing (the result file has no top-1 accuracy)")
    metrics = {m: _percent(number(data.get(m), m, nullable=m != "top1"), m, flags) for m in EVAL_METRICS}
    per_class = names = counts = None
    if data.get("per_class") is not None:
        per_class = [_percent(number(v, f"per_class[{i}]"), f"per_class[{i}]", flags)
                     for i, v in enumerate(listing(data["per_class"], "per_class"))]
        if len(flags) > 3:
            flags[3:] = [f"and {len(flags) - 3} more"]
    for key in ("class_names", "train_counts"):
        value = data.get(key)
        if value is None:
            continue
        items = listing(value, key)
        if per_class is not None and len(items) != len(per_class):
            raise BadField(key, f"expected {len(per_class)} entries (one per class of per_class), got {len(items)}")
        if key == "class_names":
            names = [text(v, f"{key}[{i}]") for i, v in enumerate(items)]
        else:
            counts = [integer(v, f"{key}[{i}]") for i, v in enumerate(items)]
    smoke = data.get("smoke", False)
    if not isinstance(smoke, bool):
        raise BadField("smoke", f"expected true or false, got {short_repr(smoke)}")
    return EvalResult(metrics, per_class, names, counts, smoke, flags)


# ----------------------------------------------------------------------------------------- features.json


def check_features(data: Any) -> dict[str, Any]:
    """features.json: the summary numbers finite and >= 0 (or null), the shot-group mappings of them, the
    training counts, and per-class lists of one length."""
    data = mapping(data, "top level")
    out = dict(data)
    for key in FEATURE_NUMBERS:
        if key in data:
            out[key] = number(data[key], key, low=0.0)
    for key in FEATURE_GROUPS:
        if key in data:
            out[key] = {g: number(v, f"{key}.{g}", low=0.0) for g, v in mapping(data[key], key).items()}
    length = None
    if data.get("train_counts") is not None:
        out["train_counts"] = [integer(v, f"train_counts[{i}]")
                               for i, v in enumerate(listing(data["train_counts"], "train_counts"))]
        length = len(out["train_counts"])
    per_class = mapping(data.get("per_class") or {}, "per_class")
    out["per_class"] = {}
    for key, values in per_class.items():
        items = listing(values, f"per_class.{key}")
        if length is not None and len(items) != length:
            raise BadField(f"per_class.{key}", f"expected {length} entries (one per class), got {len(items)}")
        length = len(items)
        out["per_class"][key] = [number(v, f"per_class.{key}[{i}]", low=0.0) for i, v in enumerate(items)]
    return out


# ----------------------------------------------------------------------------------------- analysis.json

SHOT_GROUPS = ("many", "medium", "few")
ANALYSIS_ACCURACIES = ("top1", "mean_class", *SHOT_GROUPS)


def _numbers(value: Any, where: str, length: int | None = None, nullable: bool = True) -> list[float | None]:
    items = listing(value, where)
    if length is not None and len(items) != length:
        raise BadField(where, f"expected {length} entries, got {len(items)}")
    return [number(v, f"{where}[{i}]", nullable=nullable) for i, v in enumerate(items)]


def _numbers_of(value: Any, where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """A mapping whose ``keys`` (those present) are numbers or null; other keys pass as plain values."""
    data = mapping(value, where)
    return {**{k: plain(v, f"{where}.{k}") for k, v in data.items() if k not in keys},
            **{k: number(data[k], f"{where}.{k}") for k in keys if k in data}}


def _skipped(data: dict[str, Any], where: str) -> bool:
    if "skipped" in data:
        text(data["skipped"], f"{where}.skipped")
        return True
    return False


def check_analysis(data: Any) -> dict[str, Any]:
    """analysis.json of `fcc analyze`: what a report and the figures read, each part either skipped (with
    its reason) or complete: norm ratios, margin distributions with their percentiles, the scale sweep's
    curves (one value per scale), the oracle factor and logit adjustment accuracies; numbers finite or null."""
    data = mapping(data, "top level")
    if data.get("format") != "fcc-analysis":
        raise BadField("format", f"expected 'fcc-analysis', got {short_repr(data.get('format'))}")
    out = dict(data)
    ratio = mapping(data.get("norm_ratio"), "norm_ratio")
    out["norm_ratio"] = {**_numbers_of(ratio, "norm_ratio", ("mean",)),
                         "by_group": _numbers_of(ratio.get("by_group", {}), "norm_ratio.by_group", SHOT_GROUPS)}
    margins = mapping(data.get("margins"), "margins")
    out["margins"] = {}
    for kind in ("logit", "geometric"):
        where = f"margins.{kind}"
        part = mapping(margins.get(kind), where)
        if _skipped(part, where):
            out["margins"][kind] = part
            continue
        checked = {g: _numbers_of(part.get(g), f"{where}.{g}", ("n", "median", "p10", "pct_negative"))
                   for g in ("all", *SHOT_GROUPS)}
        pct = mapping(part.get("percentiles"), f"{where}.percentiles")
        at = _numbers(pct.get("at"), f"{where}.percentiles.at", nullable=False)
        checked["percentiles"] = {"at": at, **{g: None if pct.get(g) is None else _numbers(
            pct[g], f"{where}.percentiles.{g}", len(at)) for g in ("all", *SHOT_GROUPS)}}
        out["margins"][kind] = {**part, **checked}
    sweep = mapping(data.get("scale_sweep"), "scale_sweep")
    if not _skipped(sweep, "scale_sweep"):
        scales = _numbers(sweep.get("scales"), "scale_sweep.scales", nullable=False)
        curves = {part: {k: _numbers(mapping(sweep.get(part), f"scale_sweep.{part}").get(k),
                                     f"scale_sweep.{part}.{k}", len(scales)) for k in ANALYSIS_ACCURACIES}
                  for part in ("with_bias", "zero_bias")}
        sweep = {**sweep, "scales": scales, **curves,
                 "best_scale": number(sweep.get("best_scale"), "scale_sweep.best_scale")}
    out["scale_sweep"] = sweep
    oracle = mapping(data.get("oracle_factor"), "oracle_factor")
    out["oracle_factor"] = {k: _numbers_of(oracle.get(k), f"oracle_factor.{k}", ANALYSIS_ACCURACIES)
                            for k in ("unscaled", "oracle", "difference")}
    la = mapping(data.get("logit_adjustment"), "logit_adjustment")
    if not _skipped(la, "logit_adjustment"):
        la = {**la, "best_t": number(la.get("best_t"), "logit_adjustment.best_t"),
              **{k: _numbers_of(la.get(k), f"logit_adjustment.{k}", ANALYSIS_ACCURACIES)
                 for k in ("test", "difference")}}
    out["logit_adjustment"] = la
    return out


# ------------------------------------------------------------------------------------ confusion.csv, npz


def parse_confusion(path: Path, csv_text: str) -> tuple[list[str], Any]:
    """confusion.csv: a header 'true\\pred,names...' and one row of non-negative integer counts per class."""
    import csv

    import numpy as np

    try:
        rows = list(csv.reader(csv_text.splitlines()))
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from None
    if len(rows) < 2 or not rows[0] or rows[0][0] != "true\\pred":
        raise DataError(f"{path}: not a confusion matrix of fcc (expected a header 'true\\pred,...')")
    names, body = rows[0][1:], rows[1:]
    if len(body) != len(names) or any(len(r) != len(names) + 1 for r in body):
        raise DataError(f"{path}: expected {len(names)} rows of {len(names)} counts, one per class")
    counts = np.zeros((len(names), len(names)), dtype=np.int64)
    for i, row in enumerate(body):
        for j, cell in enumerate(row[1:]):
            value = cell.strip()
            if not value.isdigit() or len(value) > 18:
                raise DataError(f"{path}: row {i + 1} ({short_repr(row[0], 40)}), column {j + 1}: expected a count "
                                f"(an integer >= 0 below 10**18), got {short_repr(cell, 40)}")
            counts[i, j] = int(value)
    return names, counts


def parse_features_npz(path: Path, raw: bytes) -> dict[str, Any]:
    """features.npz: features (N, D) finite numbers with N >= 3 and D >= 1, integer labels (N,) in range,
    integer train_counts (C,) >= 0, class_names (C,) (class indices when absent or of another length)."""
    import io
    import zipfile

    import numpy as np

    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise DataError(f"{path}: not a readable .npz of plain arrays ({err})") from None
    missing = [k for k in ("features", "labels", "train_counts") if k not in data]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}")
    feats, labels, counts = data["features"], data["labels"], data["train_counts"]
    if feats.ndim != 2 or labels.shape != (feats.shape[0],) or counts.ndim != 1:
        raise DataError(f"{path}: expected features (N, D), labels (N,), train_counts (C,); got "
                        f"{feats.shape}, {labels.shape}, {counts.shape}")
    kinds = {"features": (feats, "iuf"), "labels": (labels, "iu"), "train_counts": (counts, "iu")}
    for name, (array, allowed) in kinds.items():
        if array.dtype.kind not in allowed:
            what = "numbers" if name == "features" else "integers"
            raise DataError(f"{path}: {name}: expected {what}, got arrays of {array.dtype}")
    if feats.shape[1] < 1:
        raise DataError(f"{path}: features: expected at least one dimension per sample, got {feats.shape}")
    bad = int(np.size(feats) - np.count_nonzero(np.isfinite(feats)))
    if bad:
        raise DataError(f"{path}: features: {bad} value(s) are not finite (NaN or inf); the model's features are "
                        "broken, evaluate a checkpoint whose features are finite")
    if feats.shape[0] < 3 or counts.shape[0] < 1 or labels.min() < 0 or labels.max() >= counts.shape[0]:
        raise DataError(f"{path}: needs at least 3 samples with labels in 0..{counts.shape[0] - 1}")
    if counts.min() < 0:
        raise DataError(f"{path}: train_counts: expected counts >= 0, got {int(counts.min())}")
    names = data.get("class_names")
    data["features"] = feats.astype(np.float64) if feats.dtype.kind != "f" else feats
    data["class_names"] = np.array([str(n) for n in names] if names is not None and names.ndim == 1
                                   and len(names) == len(counts) else [str(c) for c in range(len(counts))])
    return data


# ------------------------------------------------------------------------------------------ sweep.json


def check_sweep_record(data: Any) -> dict[str, Any]:
    """sweep.json: the spec (a mapping), the runs (each with a name) and the SLURM jobs by run name."""
    data = mapping(data, "top level")
    out = dict(data)
    if data.get("spec") is not None:
        mapping(data["spec"], "spec")
    runs = listing(data.get("runs") or [], "runs", MAX_INT)
    for i, run in enumerate(runs):
        text(mapping(run, f"runs[{i}]").get("name"), f"runs[{i}].name")
    out["runs"] = runs
    jobs = mapping(data.get("jobs") or {}, "jobs")
    for name, job in jobs.items():
        job = mapping(job, f"jobs.{name}")
        if job.get("executor") is not None:
            text(job["executor"], f"jobs.{name}.executor")
        job_id = job.get("job_id")
        if isinstance(job_id, int) and not isinstance(job_id, bool):
            integer(job_id, f"jobs.{name}.job_id")
        elif job_id is not None:
            text(job_id, f"jobs.{name}.job_id")
    out["jobs"] = jobs
    if data.get("created") is not None:
        text(data["created"], "created")
    return out
