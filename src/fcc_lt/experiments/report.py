"""Result tables from run directories: seeds grouped, FCC's paired gain with an interval, nothing guessed.

A report reads only the files of run directories (config.yaml, metrics.jsonl, eval.json, features.json)
and never touches a dataset or a checkpoint. Runs whose resolved configs agree on everything but the
seed form a group (mean and sample sd over seeds); a run with FCC and the run with the same config
without FCC (all ``fcc.*`` keys aside) and the same seed form a pair, and the mean of the paired
differences gets a Student-t interval over the n pairs. Runs that are still training, stopped or broken
are listed with their state rather than aborting the table. See docs/reports.md.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcc_lt.experiments.run_folder import read_config, run_status
from fcc_lt.experiments.statistics import Interval, t_interval
from fcc_lt.util.errors import ConfigError

ACCURACY_METRICS = ("top1", "top5", "mean_class", "many", "medium", "few")
# the feature-cluster statistics of features.json (`fcc eval RUN --features`), by report name
FEATURE_METRICS = {
    "spread_ratio": ("mean_spread_ratio",),
    "spread_ratio_many": ("spread_ratio_by_group", "many"),
    "spread_ratio_medium": ("spread_ratio_by_group", "medium"),
    "spread_ratio_few": ("spread_ratio_by_group", "few"),
    "compactness": ("compactness",),
    "feature_norm": ("mean_norm",),
}
METRICS = (*ACCURACY_METRICS, *FEATURE_METRICS)
# what the markdown tables show (the JSON and CSV have every metric)
MD_GROUP_METRICS = ("top1", "top5", "many", "medium", "few")
MD_PAIR_METRICS = ("top1", "many", "medium", "few")
MD_FEATURE_METRICS = ("spread_ratio", "spread_ratio_many", "spread_ratio_medium", "spread_ratio_few",
                      "feature_norm")
LEVEL = 0.95
MD_MAX_PER_CLASS = 100  # classes; beyond this the per-class table is only in the JSON and CSV

# Config keys that say where or how fast a run ran, not what it computed: runs differing only in these
# (and the seed) are the same experiment.
IGNORED_KEYS = frozenset({
    "out", "device", "data.root", "data.image_root", "data.download", "data.workers", "data.prefetch",
    "data.loader", "data.preload_max_mb", "train.progress", "train.log_every", "train.tensorboard",
    "eval.batch_size", "eval.confusion_png_max_classes",
})
# Config keys naming another run (a stage-1 checkpoint, a teacher): replaced by that run's own identity,
# so stage-2 runs of different seeds (each from its own stage-1 run) still form one group.
REFERENCE_KEYS = ("model.init_from", "distill.teacher")

COLUMNS = {"dataset": "dataset", "imbalance_factor": "IF", "backbone": "backbone", "epochs": "epochs",
           "method": "method", "fcc": "FCC"}
# --group-by names besides plain config keys; each stands for these config keys (and what is under them)
ALIASES: dict[str, tuple[str, ...]] = {
    "dataset": ("data.dataset", "data.train_json", "data.val_json", "data.test_json"),
    "imbalance_factor": ("data.imbalance_factor",),
    "if": ("data.imbalance_factor",),
    "backbone": ("model.backbone", "model.backbone_params"),
    "epochs": ("train.epochs",),
    "method": ("loss", "sampler", "mix", "model.head", "model.head_params", "model.init_from", "distill"),
    "fcc": ("fcc",),
    "seed": ("seed",),
}
_ALIAS_COLUMN = {"if": "imbalance_factor"}


# ------------------------------------------------------------------------------------------ reading runs


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
    if (path / "config.yaml").is_file():
        return [path]
    runs = []
    for root, dirs, files in os.walk(path):
        if "config.yaml" in files:
            runs.append(Path(root))
            dirs.clear()  # a run directory's subfolders (checkpoints/) hold no runs
        else:
            dirs.sort()
    return sorted(runs)


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; an empty mapping (no params) contributes nothing."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict):
                out.update(_flatten(value, dotted + "."))
            else:
                out[dotted] = value
    return out


def _resolve_reference(value: str, run_dir: Path) -> tuple[Path, str | None] | None:
    """The run directory a checkpoint path or run path points at, tried as given (relative to the current
    directory) and relative to each folder above the run (where `fcc train` was started); None if none."""
    raw = Path(value)
    bases = [Path()] if raw.is_absolute() else [Path(), *run_dir.resolve().parents]
    for base in bases:
        candidate = base / raw
        if (candidate / "config.yaml").is_file():
            return candidate, None
        parent = candidate.parent
        if parent.name == "checkpoints" and (parent.parent / "config.yaml").is_file():
            return parent.parent, candidate.name
    return None


def config_identity(cfg: dict[str, Any], run_dir: Path, depth: int = 0) -> dict[str, str]:
    """The flattened config without the seed and the keys that do not change results (values as JSON).

    FCC's other keys drop out when ``fcc.enabled`` is false (they have no effect then), and a key naming
    another run is replaced by that run's identity under ``<key>.run.``.
    """
    fcc_on = bool((cfg.get("fcc") or {}).get("enabled"))
    out: dict[str, str] = {}
    for key, value in _flatten(cfg).items():
        if key == "seed" or key in IGNORED_KEYS or (key.startswith("fcc.") and key != "fcc.enabled" and not fcc_on):
            continue
        if key in REFERENCE_KEYS and isinstance(value, str) and depth < 4:
            ref = _resolve_reference(value, run_dir)
            ref_cfg = read_config(ref[0]) if ref else None
            if ref is not None and ref_cfg is not None:
                for sub, sub_value in config_identity(ref_cfg, ref[0], depth + 1).items():
                    out[f"{key}.run.{sub}"] = sub_value
                out[f"{key}.checkpoint"] = json.dumps(ref[1])
                continue
        out[key] = json.dumps(value, sort_keys=True)
    return out


def is_fcc_key(key: str) -> bool:
    """Whether an identity key is an FCC setting (of this run or of a run it starts from)."""
    return key.startswith("fcc.") or ".run.fcc." in key


def _fmt_number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def describe_method(cfg: dict[str, Any]) -> str:
    """A short label such as 'ce + drw' or 'balanced_softmax + FCC(0.5)' from a resolved config."""
    loss = cfg.get("loss", {})
    parts = [str(loss.get("name", "?"))]
    if (loss.get("params") or {}).get("drw_start_epoch"):
        parts[0] += f" (DRW from epoch {loss['params']['drw_start_epoch']})"
    sampler = cfg.get("sampler", {})
    if sampler.get("name") and sampler["name"] != "instance":
        drs = (sampler.get("params") or {}).get("drs_start_epoch")
        parts.append(f"{sampler['name']} sampler" + (f" (DRS from epoch {drs})" if drs else ""))
    mix = cfg.get("mix", {}).get("name")
    if mix and mix != "none":
        parts.append(str(mix))
    fcc = cfg.get("fcc", {})
    if fcc.get("enabled"):
        parts.append(f"FCC(gamma {fcc.get('gamma')}, from epoch {fcc.get('start_epoch')})")
    return " + ".join(parts)


def fcc_label(cfg: dict[str, Any]) -> str:
    """'-' without FCC, else 'FCC(gamma G, from epoch E)' (and its ranking when not by frequency)."""
    fcc = cfg.get("fcc") or {}
    if not fcc.get("enabled"):
        return "-"
    extra = "" if fcc.get("rank_by", "frequency") == "frequency" else f", rank by {fcc.get('rank_by')}"
    return f"FCC(gamma {_fmt_number(fcc.get('gamma'))}, from epoch {fcc.get('start_epoch')}{extra})"


def method_label(cfg: dict[str, Any], run_dir: Path, depth: int = 0) -> str:
    """The method without FCC: loss, DRW, sampler, DRS, mixing, a non-linear head, what it starts from."""
    label = describe_method({**cfg, "fcc": {"enabled": False}})
    model = cfg.get("model") or {}
    if model.get("head") and model["head"] != "linear":
        label += f" + {model['head']} head"
    for key, name in (("model.init_from", "init"), ("distill.teacher", "teacher")):
        section, leaf = key.split(".")
        value = (cfg.get(section) or {}).get(leaf)
        if not isinstance(value, str):
            continue
        ref = _resolve_reference(value, run_dir) if depth < 4 else None
        ref_cfg = read_config(ref[0]) if ref else None
        if ref is not None and ref_cfg is not None:
            shown = method_label(ref_cfg, ref[0], depth + 1)
            shown += "" if fcc_label(ref_cfg) == "-" else f" + {fcc_label(ref_cfg)}"
        else:
            shown = value
        label += f" [{name}: {shown}]"
    return label


def run_columns(cfg: dict[str, Any], run_dir: Path) -> dict[str, str]:
    """The values of the report's standard columns for one run."""
    data, model, train = cfg.get("data") or {}, cfg.get("model") or {}, cfg.get("train") or {}
    dataset = str(data.get("dataset", "?"))
    if data.get("train_json"):
        dataset += f" ({Path(str(data['train_json'])).name})"
    backbone = str(model.get("backbone", "?"))
    if model.get("backbone_params"):
        backbone += "(" + ", ".join(f"{k}={_fmt_number(v)}" for k, v in sorted(model["backbone_params"].items())) + ")"
    return {"dataset": dataset, "imbalance_factor": _fmt_number(data.get("imbalance_factor", "?")),
            "backbone": backbone, "epochs": str(train.get("epochs", "?")), "method": method_label(cfg, run_dir),
            "fcc": fcc_label(cfg)}


@dataclass
class Run:
    """One run directory as the report sees it: its state, identity and numbers."""

    path: Path
    state: str
    detail: str = ""
    config: dict[str, Any] | None = None
    seed: Any = None
    identity: dict[str, str] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    per_class: list[float | None] | None = None
    class_names: list[str] | None = None
    train_counts: list[int] | None = None
    duplicate_of: Path | None = None
    group: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def counted(self) -> bool:
        return self.state == "finished" and self.duplicate_of is None

    @property
    def fcc_on(self) -> bool:
        return self.identity.get("fcc.enabled") == "true"

    def pair_key(self) -> frozenset[tuple[str, str]]:
        return frozenset((k, v) for k, v in self.identity.items() if not is_fcc_key(k))

    def fcc_key(self) -> frozenset[tuple[str, str]]:
        return frozenset((k, v) for k, v in self.identity.items() if k.startswith("fcc."))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _read_json(path: Path) -> tuple[Any, str]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), ""
    except FileNotFoundError:
        return None, f"no {path.name}"
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{path.name} unreadable ({err})"
    except json.JSONDecodeError as err:
        return None, f"{path.name} is not valid JSON ({err.msg}, line {err.lineno})"


def _dig(data: Any, keys: Sequence[str]) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def load_run(run_dir: Path, eval_file: str = "eval.json") -> Run:
    """Read a run directory; an unfinished or broken one comes back with its state, never an exception."""
    status = run_status(run_dir)
    cfg = read_config(run_dir)
    run = Run(run_dir, status.state, status.detail, cfg)
    if cfg is not None:
        run.seed = cfg.get("seed")
        run.identity = config_identity(cfg, run_dir)
        run.columns = run_columns(cfg, run_dir)
    if status.state != "finished":
        return run
    result, problem = _read_json(run_dir / eval_file)
    if problem or not isinstance(result, dict) or _number(result.get("top1")) is None:
        run.state = "failed"
        run.detail = problem or f"{eval_file} has no top1"
        return run
    if result.get("smoke"):  # fcc train --smoke: a few steps and batches, its numbers mean nothing
        run.state = "smoke"
        run.detail = "a smoke run (fcc train --smoke): not a result"
        return run
    for metric in ACCURACY_METRICS:
        run.metrics[metric] = _number(result.get(metric))
    per_class = result.get("per_class")
    if isinstance(per_class, list):
        run.per_class = [_number(v) for v in per_class]
    names, counts = result.get("class_names"), result.get("train_counts")
    if isinstance(names, list) and run.per_class is not None and len(names) == len(run.per_class):
        run.class_names = [str(n) for n in names]
    if isinstance(counts, list) and run.per_class is not None and len(counts) == len(run.per_class):
        run.train_counts = [int(c) for c in counts]
    features, problem = _read_json(run_dir / "features.json")
    if features is not None or not problem.startswith("no "):
        if not isinstance(features, dict):
            run.detail = problem or "features.json is not a mapping"
        else:
            for metric, keys in FEATURE_METRICS.items():
                run.metrics[metric] = _number(_dig(features, keys))
    return run


# -------------------------------------------------------------------------------------------- grouping


def parse_group_by(text: str | None) -> list[str] | None:
    """'dataset,method' -> ['dataset', 'method']; each a column alias or a config key (params keys too)."""
    if text is None:
        return None
    from fcc_lt.config.schema import all_keys
    from fcc_lt.util.typecheck import suggest

    keys = [k.strip() for k in text.split(",") if k.strip()]
    if not keys:
        raise ConfigError("--group-by: expected comma-separated keys, e.g. dataset,method,fcc")
    known = all_keys()
    params = [k for k in known if k.endswith("params")]
    for key in keys:
        if key not in ALIASES and key not in known and not any(key.startswith(p + ".") for p in params):
            leaf = [k for k in known if k.endswith("." + key)]
            hint = f"; did you mean {leaf[0]!r}?" if len(leaf) == 1 else suggest(key, [*ALIASES, *known])
            raise ConfigError(f"--group-by: unknown key {key!r}{hint} (names: "
                              f"{', '.join(a for a in ALIASES if a != 'if')} or a config key such as train.lr)")
    return keys


def _select(run: Run, key: str) -> frozenset[tuple[str, str]]:
    """The identity entries a --group-by key stands for."""
    if key == "seed":
        return frozenset({("seed", json.dumps(run.seed))})
    prefixes = ALIASES.get(key, (key,))
    return frozenset((k, v) for k, v in run.identity.items()
                     if any(k == p or k.startswith(p + ".") for p in prefixes))


def _display(run: Run, key: str) -> str:
    """How a run's value of a --group-by key is shown."""
    column = _ALIAS_COLUMN.get(key, key)
    if column in COLUMNS:
        return run.columns.get(column, "?")
    if key == "seed":
        return str(run.seed)
    items = sorted(_select(run, key))
    if len(items) == 1 and items[0][0] == key:
        return _json_value(items[0][1])
    return ", ".join(f"{k.removeprefix(key + '.')}={_json_value(v)}" for k, v in items) or "(unset)"


def _json_value(text: str) -> str:
    value = json.loads(text)
    return _fmt_number(value) if not isinstance(value, str) else value


def _joined(values: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(values))


def _differs(keys: Sequence[frozenset[tuple[str, str]]], shown: Sequence[tuple[str, ...]]) -> list[str]:
    """For rows whose shown columns coincide, the config keys that tell them apart ('train.lr=0.05')."""
    out = [""] * len(keys)
    by_shown: dict[tuple[str, ...], list[int]] = {}
    for i, s in enumerate(shown):
        by_shown.setdefault(s, []).append(i)
    for rows in by_shown.values():
        if len(rows) < 2:
            continue
        dicts = [dict(keys[i]) for i in rows]
        names = sorted({k for d in dicts for k in d})
        varying = [k for k in names if len({d.get(k) for d in dicts}) > 1]
        for i, d in zip(rows, dicts):
            out[i] = ", ".join(f"{k}={_json_value(d[k]) if k in d else '(unset)'}" for k in varying)
    return out


@dataclass
class Group:
    """Runs that differ only by seed (or agree on the --group-by keys)."""

    id: str
    runs: list[Run]
    key: frozenset[tuple[str, str]]
    columns: dict[str, str]
    differs: str = ""

    @property
    def seeds(self) -> list[Any]:
        return [r.seed for r in self.runs]

    def stats(self, metric: str) -> Interval:
        return t_interval([r.metrics.get(metric) for r in self.runs], LEVEL)

    def per_class(self) -> dict[str, Any] | None:
        """Mean and sd over seeds of each class's accuracy, when every run has the same classes."""
        first = self.runs[0]
        if first.per_class is None or any(r.per_class is None or len(r.per_class) != len(first.per_class)
                                          or r.class_names != first.class_names for r in self.runs):
            return None
        tables = [r.per_class for r in self.runs if r.per_class is not None]
        intervals = [t_interval([t[c] for t in tables], LEVEL) for c in range(len(first.per_class))]
        return {"class_names": first.class_names, "train_counts": first.train_counts,
                "n": [i.n for i in intervals], "mean": [i.mean for i in intervals], "sd": [i.sd for i in intervals]}


@dataclass
class PairRow:
    """FCC's effect for one method: with-FCC minus without-FCC runs of the same seeds."""

    columns: dict[str, str]
    pairs: list[tuple[Run, Run]]  # (with FCC, without FCC)
    key: frozenset[tuple[str, str]]
    differs: str = ""

    @property
    def seeds(self) -> list[Any]:
        return [w.seed for w, _ in self.pairs]

    def groups(self, which: int) -> str:
        return _joined(sorted({str(p[which].group) for p in self.pairs}, key=_group_order))

    def difference(self, metric: str) -> Interval:
        diffs = []
        for with_run, without_run in self.pairs:
            a, b = with_run.metrics.get(metric), without_run.metrics.get(metric)
            diffs.append(a - b if a is not None and b is not None else None)
        return t_interval(diffs, LEVEL)

    def side_mean(self, metric: str, which: int) -> float | None:
        """The mean of one side over the pairs where both sides have the metric (what the difference uses)."""
        values = [(p[0].metrics.get(metric), p[1].metrics.get(metric)) for p in self.pairs]
        return t_interval([v[which] for v in values if v[0] is not None and v[1] is not None]).mean


def _group_order(gid: str) -> int:
    return int(gid[1:]) if gid[1:].isdigit() else 0


def _sort_key(values: Iterable[str]) -> tuple[tuple[int, float, str], ...]:
    out = []
    for v in values:
        try:
            out.append((0, float(v), ""))
        except ValueError:
            out.append((1, 0.0, v))
    return tuple(out)


@dataclass
class Report:
    runs: list[Run]
    groups: list[Group]
    pairs: list[PairRow]
    group_by: list[str] | None
    eval_file: str

    @property
    def columns(self) -> list[str]:
        """The keys of the group columns: the standard ones, or the --group-by keys."""
        return list(COLUMNS) if self.group_by is None else list(self.group_by)

    def header(self, key: str) -> str:
        """A column's title: 'IF' for imbalance_factor (and its alias 'if'), a config key as it is."""
        return COLUMNS.get(_ALIAS_COLUMN.get(key, key), key)


def build_report(paths: Sequence[str | Path], group_by: str | list[str] | None = None,
                 eval_file: str = "eval.json") -> Report:
    """Read the runs, flag duplicates, form the groups and the with/without-FCC pairs."""
    keys = parse_group_by(group_by if group_by is None or isinstance(group_by, str) else ",".join(group_by))
    runs = [load_run(p, eval_file) for p in find_run_dirs(paths)]
    first: dict[tuple[frozenset[tuple[str, str]], str], Run] = {}
    for run in sorted(runs, key=lambda r: str(r.path)):
        if run.state != "finished":
            continue
        ident = (frozenset(run.identity.items()), json.dumps(run.seed))
        if ident in first:
            run.duplicate_of = first[ident].path
        else:
            first[ident] = run
    counted = [r for r in runs if r.counted]

    def group_key(run: Run) -> frozenset[tuple[str, str]]:
        if keys is None:
            return frozenset(run.identity.items())
        return frozenset((f"{k}\0{e}", v) for k in keys for e, v in _select(run, k))

    def shown(run_list: Sequence[Run], cols: Sequence[str]) -> dict[str, str]:
        return {c: _joined(sorted({_display(r, c) for r in run_list})) for c in cols}

    cols = list(COLUMNS) if keys is None else keys
    buckets: dict[frozenset[tuple[str, str]], list[Run]] = {}
    for run in counted:
        buckets.setdefault(group_key(run), []).append(run)
    groups = [Group("", sorted(rs, key=lambda r: (_sort_key([str(r.seed)]), str(r.path))), k, shown(rs, cols))
              for k, rs in buckets.items()]
    groups.sort(key=lambda g: (_sort_key(g.columns.values()), sorted(g.key)))
    differs = _differs([_strip_sep(g.key) for g in groups], [tuple(g.columns.values()) for g in groups])
    for i, (g, d) in enumerate(zip(groups, differs), 1):
        g.id, g.differs = f"G{i}", d
        for r in g.runs:
            r.group = g.id

    baselines = {(r.pair_key(), json.dumps(r.seed)): r for r in counted if not r.fcc_on}
    rows: dict[frozenset[tuple[str, str]], list[tuple[Run, Run]]] = {}
    for run in counted:
        base = baselines.get((run.pair_key(), json.dumps(run.seed))) if run.fcc_on else None
        if base is None:
            continue
        if keys is None:
            row_key = run.pair_key() | run.fcc_key()
        else:
            row_key = frozenset((k, v) for k, v in group_key(run) if not is_fcc_key(k.split("\0")[1])
                                and k.split("\0")[0] not in ("fcc", "seed")) | run.fcc_key()
        rows.setdefault(row_key, []).append((run, base))
    pair_rows = []
    for row_key, pairs in rows.items():
        pairs.sort(key=lambda p: (_sort_key([str(p[0].seed)]), str(p[0].path)))
        both = [r for p in pairs for r in p]
        columns = {c: _joined(sorted({r.columns.get(c, "?") for r in both})) for c in COLUMNS if c != "fcc"}
        columns["fcc"] = _joined(sorted({w.columns.get("fcc", "?") for w, _ in pairs}))
        pair_rows.append(PairRow(columns, pairs, row_key))
    pair_rows.sort(key=lambda p: (_sort_key(p.columns.values()), sorted(p.key)))
    for row, d in zip(pair_rows, _differs([_strip_sep(p.key) for p in pair_rows],
                                          [tuple(p.columns.values()) for p in pair_rows])):
        row.differs = d
    runs.sort(key=lambda r: (r.group is None, _group_order(r.group or "G0"), _sort_key([str(r.seed)]), str(r.path)))
    return Report(runs, groups, pair_rows, keys, eval_file)


def _strip_sep(key: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """Group keys under --group-by carry 'alias\\0config key'; show only the config key."""
    return frozenset((k.split("\0")[-1], v) for k, v in key)


# ------------------------------------------------------------------------------------------ formatting


def _digits(metric: str) -> str:
    return ".2f" if metric in ACCURACY_METRICS else ".4g"


def _value(v: float | None, metric: str, sign: bool = False) -> str:
    if v is None:
        return "-"
    spec = _digits(metric)
    return f"{v:+{spec}}" if sign else f"{v:{spec}}"


def mean_sd(interval: Interval, metric: str) -> str:
    """'71.23 ± 0.45' (sd over seeds), '71.23' for one run, '-' for none."""
    if interval.mean is None:
        return "-"
    text = _value(interval.mean, metric)
    return text if interval.sd is None else f"{text} ± {_value(interval.sd, metric)}"


def diff_ci(interval: Interval, metric: str) -> str:
    """'+1.23 [+0.40, +2.06]' (95% t-interval), '+1.23 (n=1)' without an interval, '-' without pairs."""
    if interval.mean is None:
        return "-"
    text = _value(interval.mean, metric, sign=True)
    if interval.low is None or interval.high is None:
        return f"{text} (n={interval.n})"
    return f"{text} [{_value(interval.low, metric, sign=True)}, {_value(interval.high, metric, sign=True)}]"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def _seeds(values: Sequence[Any]) -> str:
    return ",".join(str(s) for s in values)


def render_markdown(report: Report) -> str:
    """The report as markdown: groups, FCC's paired effect, feature clusters, per-class, runs, the rest."""
    out: list[str] = ["# fcc report", ""]
    finished = [r for r in report.runs if r.counted]
    dup = [r for r in report.runs if r.duplicate_of is not None]
    other = [r for r in report.runs if r.state != "finished"]
    summary = f"{len(report.runs)} runs: {len(finished)} finished and counted"
    summary += f", {len(other)} unfinished or failed" if other else ""
    summary += f", {len(dup)} duplicates not counted" if dup else ""
    out += [summary + ".", ""]
    cols = report.columns
    use_differs = any(g.differs for g in report.groups)
    if report.groups:
        grouping = "runs that differ only by seed" if report.group_by is None else \
            f"runs grouped by {', '.join(report.group_by)}"
        out += [f"## Groups ({grouping})", "",
                f"Mean ± sample standard deviation over the group's seeds (n - 1), accuracy in percent, "
                f"from {report.eval_file}.", ""]
        header = ["group", *(report.header(c) for c in cols), *(["differs in"] if use_differs else []), "n", "seeds",
                  *MD_GROUP_METRICS]
        rows = [[g.id, *g.columns.values(), *([g.differs] if use_differs else []), str(len(g.runs)), _seeds(g.seeds),
                 *(mean_sd(g.stats(m), m) for m in MD_GROUP_METRICS)] for g in report.groups]
        out += [*_md_table(header, rows), ""]
    out += _md_pairs(report)
    out += _md_features(report, cols, use_differs)
    out += _md_per_class(report)
    if finished:
        out += ["## Runs", ""]
        header = ["run", "method", "FCC", "dataset", "IF", "backbone", "epochs", "seed", "group", *MD_GROUP_METRICS,
                  "path"]
        rows = [[r.name, r.columns.get("method", "?"), r.columns.get("fcc", "?"), r.columns.get("dataset", "?"),
                 r.columns.get("imbalance_factor", "?"), r.columns.get("backbone", "?"), r.columns.get("epochs", "?"),
                 str(r.seed), str(r.group), *(_value(r.metrics.get(m), m) for m in MD_GROUP_METRICS), str(r.path)]
                for r in finished]
        out += [*_md_table(header, rows), ""]
    if other or dup:
        out += ["## Not counted (unfinished, failed or duplicate runs)", ""]
        header = ["run", "state", "detail", "method", "FCC", "dataset", "seed", "path"]
        rows = [[r.name, r.state if r.duplicate_of is None else "duplicate",
                 r.detail if r.duplicate_of is None else f"same config and seed as {r.duplicate_of}",
                 r.columns.get("method", "-"), r.columns.get("fcc", "-"), r.columns.get("dataset", "-"),
                 str(r.seed) if r.config is not None else "-", str(r.path)] for r in [*other, *dup]]
        out += [*_md_table(header, rows), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _md_pairs(report: Report) -> list[str]:
    out = ["## FCC: with minus without, paired by seed", ""]
    if not report.pairs:
        with_fcc = [g.id for g in report.groups if any(r.fcc_on for r in g.runs)]
        reason = ("no finished run with FCC has a finished run without FCC of the same config and seed"
                  if with_fcc else "no finished run with FCC")
        return [*out, f"No pairs: {reason}.", ""]
    out += ["Mean of the per-seed differences (percentage points) with its 95% Student-t interval over the n seed "
            "pairs (n - 1 degrees of freedom); an interval that excludes 0 is a gain larger than seed noise. "
            "n = 1 gives no interval.", ""]
    use_differs = any(p.differs for p in report.pairs)
    header = ["dataset", "IF", "backbone", "epochs", "method", "FCC", *(["differs in"] if use_differs else []),
              "with", "without", "n", "seeds", *(f"Δ {m}" for m in MD_PAIR_METRICS)]
    rows = [[*p.columns.values(), *([p.differs] if use_differs else []), p.groups(0), p.groups(1),
             str(len(p.pairs)), _seeds(p.seeds), *(diff_ci(p.difference(m), m) for m in MD_PAIR_METRICS)]
            for p in report.pairs]
    return [*out, *_md_table(header, rows), ""]


def _md_features(report: Report, cols: Sequence[str], use_differs: bool) -> list[str]:
    groups = [g for g in report.groups if g.stats("spread_ratio").n]
    if not groups:
        return []
    out = ["## Feature clusters (features.json)", "",
           "Per class, the spread of its test features around their centre divided by the distance to the "
           "nearest other class centre, averaged over classes (lower: denser, better separated clusters; the "
           "quantity FCC claims to lower), and the mean feature norm; mean ± sd over seeds.", ""]
    header = ["group", *(report.header(c) for c in cols), *(["differs in"] if use_differs else []), "n",
              *MD_FEATURE_METRICS]
    rows = [[g.id, *g.columns.values(), *([g.differs] if use_differs else []), str(g.stats("spread_ratio").n),
             *(mean_sd(g.stats(m), m) for m in MD_FEATURE_METRICS)] for g in groups]
    out += [*_md_table(header, rows), ""]
    pairs = [p for p in report.pairs if p.difference("spread_ratio").n]
    if pairs:
        header = ["method", "FCC", "with", "without", "n", *(f"Δ {m}" for m in MD_FEATURE_METRICS)]
        rows = [[p.columns["method"], p.columns["fcc"], p.groups(0), p.groups(1), str(p.difference("spread_ratio").n),
                 *(diff_ci(p.difference(m), m) for m in MD_FEATURE_METRICS)] for p in pairs]
        out += ["With minus without FCC, paired by seed (95% t-interval):", "", *_md_table(header, rows), ""]
    return out


def _md_per_class(report: Report) -> list[str]:
    tables = [(g, g.per_class()) for g in report.groups]
    tables = [(g, t) for g, t in tables if t is not None]
    if not tables:
        return []
    first = tables[0][1]
    same = all(t["class_names"] == first["class_names"] and t["train_counts"] == first["train_counts"]
               for _, t in tables)
    out = ["## Per-class test accuracy", ""]
    num = len(first["mean"])
    if not same or num > MD_MAX_PER_CLASS:
        why = "the groups have different classes" if not same else f"{num} classes"
        return [*out, f"Not shown ({why}); `--format json` or `--format csv` has every group's per-class "
                "accuracies.", ""]
    counts = first["train_counts"] or [0] * num
    names = first["class_names"] or [str(c) for c in range(num)]
    order = sorted(range(num), key=lambda c: (-counts[c], c))
    out += ["Mean ± sd over seeds, classes by training count (largest first).", ""]
    header = ["rank", "class", "train images", *(g.id for g, _ in tables)]
    rows = []
    for rank, c in enumerate(order, 1):
        cells = [mean_sd(Interval(t["n"][c], t["mean"][c], t["sd"][c], None, None), "top1") for _, t in tables]
        rows.append([str(rank), names[c], str(counts[c]) if first["train_counts"] else "?", *cells])
    return [*out, *_md_table(header, rows), ""]


CSV_FIELDS = ("section", "group", "run", "path", "state", "detail", "dataset", "imbalance_factor", "backbone",
              "epochs", "method", "fcc", "grouped_by", "differs", "seeds", "with_groups", "without_groups",
              "metric", "class_index", "class_name", "train_count", "n", "mean", "sd", "ci_low", "ci_high")


def render_csv(report: Report) -> str:
    """One row per (group, metric), (pair row, metric), (run, metric) and per-class value: easy to pivot."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    grouped_by = ",".join(report.group_by or [])
    for g in report.groups:
        base = {"section": "group", "group": g.id, **_std_columns(g.runs), "grouped_by": grouped_by,
                "differs": g.differs, "seeds": _seeds(g.seeds)}
        if report.group_by is not None:
            base["grouped_by"] = "; ".join(f"{k}={v}" for k, v in g.columns.items())
        for m in METRICS:
            writer.writerow({**base, "metric": m, **_interval_fields(g.stats(m))})
        table = g.per_class()
        if table is not None:
            for c, mean_value in enumerate(table["mean"]):
                writer.writerow({**base, "metric": "per_class", "class_index": c,
                                 "class_name": (table["class_names"] or [""] * len(table["mean"]))[c],
                                 "train_count": table["train_counts"][c] if table["train_counts"] else "",
                                 "n": table["n"][c], "mean": _csv_num(mean_value), "sd": _csv_num(table["sd"][c])})
    for p in report.pairs:
        base = {"section": "fcc_effect", **p.columns, "grouped_by": grouped_by, "differs": p.differs,
                "seeds": _seeds(p.seeds), "with_groups": p.groups(0), "without_groups": p.groups(1)}
        for m in METRICS:
            writer.writerow({**base, "metric": m, **_interval_fields(p.difference(m))})
    for r in report.runs:
        base = {"section": "run", "group": r.group or "", "run": r.name, "path": str(r.path),
                "state": "duplicate" if r.duplicate_of is not None else r.state,
                "detail": f"same config and seed as {r.duplicate_of}" if r.duplicate_of is not None else r.detail,
                **r.columns, "seeds": "" if r.seed is None else str(r.seed)}
        if not r.metrics:
            writer.writerow(base)
        for m in METRICS:
            if m in r.metrics:
                writer.writerow({**base, "metric": m, "n": 1, "mean": _csv_num(r.metrics[m])})
    return buf.getvalue()


def _std_columns(runs: Sequence[Run]) -> dict[str, str]:
    return {c: _joined(sorted({r.columns.get(c, "?") for r in runs})) for c in COLUMNS}


def _csv_num(v: float | None) -> str:
    return "" if v is None else repr(float(v))


def _interval_fields(i: Interval) -> dict[str, Any]:
    return {"n": i.n, "mean": _csv_num(i.mean), "sd": _csv_num(i.sd), "ci_low": _csv_num(i.low),
            "ci_high": _csv_num(i.high)}


def report_data(report: Report) -> dict[str, Any]:
    """The report as plain data (what --format json prints)."""
    def run_entry(r: Run) -> dict[str, Any]:
        return {"run": r.name, "path": str(r.path), "state": r.state, "detail": r.detail, "counted": r.counted,
                "duplicate_of": None if r.duplicate_of is None else str(r.duplicate_of), "seed": r.seed,
                "group": r.group, "columns": r.columns, "metrics": r.metrics, "per_class": r.per_class}

    return {
        "format": "fcc-report/1",
        "eval_file": report.eval_file,
        "group_by": report.group_by,
        "level": LEVEL,
        "interval": "Student t over seeds (groups) or seed pairs (fcc_effect), df = n - 1; sd with n - 1",
        "groups": [{"id": g.id, "columns": g.columns, "standard_columns": _std_columns(g.runs), "differs": g.differs,
                    "n": len(g.runs), "seeds": g.seeds, "runs": [str(r.path) for r in g.runs],
                    "metrics": {m: g.stats(m).as_dict() for m in METRICS}, "per_class": g.per_class()}
                   for g in report.groups],
        "fcc_effect": [{"columns": p.columns, "differs": p.differs, "with_groups": p.groups(0).split(", "),
                        "without_groups": p.groups(1).split(", "), "n": len(p.pairs), "seeds": p.seeds,
                        "pairs": [{"seed": w.seed, "with": str(w.path), "without": str(b.path)} for w, b in p.pairs],
                        "metrics": {m: {**p.difference(m).as_dict(), "with_mean": p.side_mean(m, 0),
                                        "without_mean": p.side_mean(m, 1)} for m in METRICS}}
                       for p in report.pairs],
        "runs": [run_entry(r) for r in report.runs],
    }


def render_json(report: Report) -> str:
    return json.dumps(report_data(report), indent=2, allow_nan=False) + "\n"


FORMATS = {"md": render_markdown, "markdown": render_markdown, "csv": render_csv, "json": render_json}


def table(run_dirs: Sequence[str | Path], fmt: str = "md", eval_file: str = "eval.json",
          group_by: str | None = None) -> str:
    """`fcc report`: the report of ``run_dirs`` in ``fmt`` (md, csv or json)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected one of md, csv, json, got {fmt!r}")
    return FORMATS[fmt](build_report(run_dirs, group_by, eval_file))


def write_report_dir(report: Report, out: Path) -> list[Path]:
    """report.md, report.csv and report.json in out (`fcc report --out` adds the figures: fcc_lt.experiments.plots)."""
    from fcc_lt.util.files import atomic_write_text

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: is a file, expected a folder for the report")
    written = []
    for name, render in (("report.md", render_markdown), ("report.csv", render_csv), ("report.json", render_json)):
        atomic_write_text(out / name, render(report))
        written.append(out / name)
    return written
