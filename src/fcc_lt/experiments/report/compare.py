"""Comparing runs: groups of runs that differ only by seed (or agree on --group-by keys), duplicates, and
FCC's effect as with-minus-without differences paired by seed, each with its Student-t interval.

Input is the ``ReportRun``s of fcc_lt.experiments.report.collect; output is a ``Report`` that
fcc_lt.experiments.report.render formats. No file is read here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fcc_lt.experiments.report.collect import (
    COLUMNS,
    ReportRun,
    _fmt_number,
    collect_run,
    is_fcc_key,
    is_seed_key,
)
from fcc_lt.experiments.run_folder import find_run_dirs
from fcc_lt.experiments.statistics import Interval, t_interval
from fcc_lt.util.errors import ConfigError

LEVEL = 0.95

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


def _select(run: ReportRun, key: str) -> frozenset[tuple[str, str]]:
    """The identity entries a --group-by key stands for."""
    if key == "seed":
        return frozenset({("seed", json.dumps(run.seed))})
    prefixes = ALIASES.get(key, (key,))
    return frozenset((k, v) for k, v in run.identity.items()
                     if any(k == p or k.startswith(p + ".") for p in prefixes) and (not is_seed_key(k) or k == key))


def _display(run: ReportRun, key: str) -> str:
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


def joined(values: Iterable[str]) -> str:
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
    runs: list[ReportRun]
    key: frozenset[tuple[str, str]]
    columns: dict[str, str]
    differs: str = ""

    @property
    def seeds(self) -> list[Any]:
        return [r.seed for r in self.runs]

    @property
    def marked(self) -> str:
        """'†' when some of its runs are counted despite caveats (--include-short)."""
        return "†" if any(r.marked for r in self.runs) else ""

    def standard_columns(self) -> dict[str, str]:
        """The standard columns (dataset, IF, ... FCC) of the group's runs (several values joined by ', ')."""
        return {c: joined(sorted({r.columns.get(c, "?") for r in self.runs})) for c in COLUMNS}

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
    pairs: list[tuple[ReportRun, ReportRun]]  # (with FCC, without FCC)
    key: frozenset[tuple[str, str]]
    differs: str = ""

    @property
    def seeds(self) -> list[Any]:
        return [w.seed for w, _ in self.pairs]

    @property
    def marked(self) -> str:
        return "†" if any(r.marked for p in self.pairs for r in p) else ""

    def groups(self, which: int) -> str:
        return joined(sorted({str(p[which].group) for p in self.pairs}, key=_group_order))

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
    runs: list[ReportRun]
    groups: list[Group]
    pairs: list[PairRow]
    group_by: list[str] | None
    eval_file: str
    unpaired: list[tuple[ReportRun, str]] = field(default_factory=list)  # with-FCC runs without one partner
    include_short: bool = False  # runs with caveats are counted (and marked)

    @property
    def columns(self) -> list[str]:
        """The keys of the group columns: the standard ones, or the --group-by keys."""
        return list(COLUMNS) if self.group_by is None else list(self.group_by)

    def header(self, key: str) -> str:
        """A column's title: 'IF' for imbalance_factor (and its alias 'if'), a config key as it is."""
        return COLUMNS.get(_ALIAS_COLUMN.get(key, key), key)


def build_report(paths: Sequence[str | Path], group_by: str | list[str] | None = None,
                 eval_file: str = "eval.json", include_short: bool = False) -> Report:
    """Read the runs, flag duplicates, form the groups and the with/without-FCC pairs. Runs whose schedule
    cannot mean what their config means are left out unless ``include_short`` (then marked)."""
    keys = parse_group_by(group_by if group_by is None or isinstance(group_by, str) else ",".join(group_by))
    runs = [collect_run(p, eval_file, include_short) for p in find_run_dirs(paths)]
    first: dict[tuple[frozenset[tuple[str, str]], str], ReportRun] = {}
    for run in sorted(runs, key=lambda r: str(r.path)):
        if run.state != "finished":
            continue
        ident = (frozenset(run.identity.items()), json.dumps(run.seed))
        if ident in first:
            run.duplicate_of = first[ident].path
        else:
            first[ident] = run
    counted = [r for r in runs if r.counted]

    def group_key(run: ReportRun) -> frozenset[tuple[str, str]]:
        if keys is None:
            return run.group_key()
        return frozenset((f"{k}\0{e}", v) for k in keys for e, v in _select(run, k))

    def shown(run_list: Sequence[ReportRun], cols: Sequence[str]) -> dict[str, str]:
        return {c: joined(sorted({_display(r, c) for r in run_list})) for c in cols}

    cols = list(COLUMNS) if keys is None else keys
    buckets: dict[frozenset[tuple[str, str]], list[ReportRun]] = {}
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

    # FCC's partner: the run without FCC anywhere in its chain, of the same method, seed and stage-1 seeds;
    # exactly one, or the with-FCC run is listed as unpaired with the reason
    baselines: dict[frozenset[tuple[str, str]], list[ReportRun]] = {}
    for run in counted:
        if not run.fcc_on:
            baselines.setdefault(run.pair_key(), []).append(run)
    rows: dict[frozenset[tuple[str, str]], list[tuple[ReportRun, ReportRun]]] = {}
    unpaired: list[tuple[ReportRun, str]] = []
    for run in counted:
        if not run.fcc_on:
            continue
        candidates = baselines.get(run.pair_key(), [])
        if len(candidates) != 1:
            why = ("no finished run without FCC of the same config and seed" + ("s" if _has_references(run) else "")
                   if not candidates else "several runs without FCC match it: " +
                   ", ".join(str(c.path) for c in sorted(candidates, key=lambda c: str(c.path))))
            unpaired.append((run, why))
            continue
        if keys is None:
            row_key = run.method_key() | run.fcc_key()
        else:
            row_key = frozenset((k, v) for k, v in group_key(run) if not is_fcc_key(k.split("\0")[1])
                                and not is_seed_key(k.split("\0")[1])
                                and k.split("\0")[0] not in ("fcc", "seed")) | run.fcc_key()
        rows.setdefault(row_key, []).append((run, candidates[0]))
    pair_rows = []
    for row_key, pairs in rows.items():
        pairs.sort(key=lambda p: (_sort_key([str(p[0].seed)]), str(p[0].path)))
        # the method as the run without FCC shows it; FCC as the with-FCC runs have it, stage 1 included
        columns = {c: joined(sorted({b.columns.get(c, "?") for _, b in pairs})) for c in COLUMNS if c != "fcc"}
        columns["fcc"] = joined(sorted({w.fcc_chain for w, _ in pairs}))
        pair_rows.append(PairRow(columns, pairs, row_key))
    pair_rows.sort(key=lambda p: (_sort_key(p.columns.values()), sorted(p.key)))
    for row, d in zip(pair_rows, _differs([_strip_sep(p.key) for p in pair_rows],
                                          [tuple(p.columns.values()) for p in pair_rows])):
        row.differs = d
    runs.sort(key=lambda r: (r.group is None, _group_order(r.group or "G0"), _sort_key([str(r.seed)]), str(r.path)))
    return Report(runs, groups, pair_rows, keys, eval_file, unpaired, include_short)


def _strip_sep(key: frozenset[tuple[str, str]]) -> frozenset[tuple[str, str]]:
    """Group keys under --group-by carry 'alias\\0config key'; show only the config key."""
    return frozenset((k.split("\0")[-1], v) for k, v in key)



def _has_references(run: ReportRun) -> bool:
    return any(is_seed_key(k) for k in run.identity)
