"""Rendering a report: markdown tables, a tidy CSV (one row per number) and JSON (``fcc-report/1``).

Rendering only formats what fcc_lt.experiments.report.compare computed; it reads no file and computes no
statistic, so a new section is a function here that takes a ``Report``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fcc_lt.experiments.report.analyses import analyses_csv_rows, analyses_data, md_analyses
from fcc_lt.experiments.report.cells import diff_ci, md_table, mean_sd, value_text
from fcc_lt.experiments.report.collect import METRICS, ReportRun
from fcc_lt.experiments.report.compare import LEVEL, Report, build_report
from fcc_lt.experiments.statistics import Interval
from fcc_lt.util.errors import ConfigError

# what the markdown tables show (the JSON and CSV have every metric)
MD_GROUP_METRICS = ("top1", "top5", "many", "medium", "few")
MD_PAIR_METRICS = ("top1", "many", "medium", "few")
MD_FEATURE_METRICS = ("spread_ratio", "spread_ratio_many", "spread_ratio_medium", "spread_ratio_few",
                      "feature_norm")
MD_MAX_PER_CLASS = 100  # classes; beyond this the per-class table is only in the JSON and CSV


def _seeds(values: Sequence[Any]) -> str:
    return ",".join(str(s) for s in values)


def render_markdown(report: Report) -> str:
    """The report as markdown: groups, FCC's paired effect, feature clusters, per-class, runs, the rest."""
    out: list[str] = ["# fcc report", ""]
    finished = [r for r in report.runs if r.counted]
    dup = [r for r in report.runs if r.duplicate_of is not None]
    other = [r for r in report.runs if r.state != "finished"]
    summary = f"{len(report.runs)} runs: {len(finished)} finished and counted"
    summary += f", {len(other)} unfinished, failed or short" if other else ""
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
        rows = [[g.id + g.marked, *g.columns.values(), *([g.differs] if use_differs else []), str(len(g.runs)),
                 _seeds(g.seeds), *(mean_sd(g.stats(m), m) for m in MD_GROUP_METRICS)] for g in report.groups]
        out += [*md_table(header, rows), "", *_md_short_note(report, any(g.marked for g in report.groups))]
    out += _md_pairs(report)
    out += _md_features(report, cols, use_differs)
    out += md_analyses(report)
    out += _md_per_class(report)
    if finished:
        out += ["## Runs", ""]
        header = ["run", "method", "FCC", "dataset", "IF", "backbone", "epochs", "seed", "group", *MD_GROUP_METRICS,
                  "path"]
        rows = [[r.name + r.marked, r.columns.get("method", "?"), r.columns.get("fcc", "?"),
                 r.columns.get("dataset", "?"), r.columns.get("imbalance_factor", "?"),
                 r.columns.get("backbone", "?"), r.columns.get("epochs", "?"),
                 str(r.seed), str(r.group), *(value_text(r.metrics.get(m), m) for m in MD_GROUP_METRICS), str(r.path)]
                for r in finished]
        out += [*md_table(header, rows), ""]
    if other or dup:
        out += ["## Not counted (unfinished, failed, short or duplicate runs)", ""]
        header = ["run", "state", "detail", "method", "FCC", "dataset", "seed", "path"]
        rows = [[r.name, r.state if r.duplicate_of is None else "duplicate",
                 r.detail if r.duplicate_of is None else f"same config and seed as {r.duplicate_of}",
                 r.columns.get("method", "-"), r.columns.get("fcc", "-"), r.columns.get("dataset", "-"),
                 str(r.seed) if r.config is not None else "-", str(r.path)] for r in [*other, *dup]]
        out += [*md_table(header, rows), ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _md_short_note(report: Report, table_marked: bool = True, left_out_note: bool = True) -> list[str]:
    """What the table above did with runs whose schedule cannot mean what their config means: counted and
    marked † (when ``table_marked``), or left out (said when ``left_out_note``)."""
    if report.include_short:
        marked = [r for r in report.runs if r.marked]
        if not marked or not table_marked:
            return []
        return [f"† counts {len(marked)} run(s) whose schedule cannot mean what its config means (steps capped by "
                "train.max_steps_per_epoch, or a schedule too short for its LR drops and deferred parts), because "
                "of --include-short: their numbers and intervals are shown but do not say what the config would "
                "give; each run's caveat is in the JSON and CSV.", ""]
    short = [r for r in report.runs if r.state == "short"]
    if not short or not left_out_note:
        return []
    return [f"{len(short)} run(s) whose schedule cannot mean what its config means (steps capped by "
            "train.max_steps_per_epoch, or a schedule too short for its LR drops and deferred parts) are left out "
            "of these numbers and intervals and listed under Not counted; `--include-short` counts them, "
            "marked †.", ""]


def _md_unpaired(report: Report, limit: int = 30) -> list[str]:
    """The with-FCC runs that have no partner, or several, and why."""
    if not report.unpaired:
        return []
    lines = [f"- {r.path}: {why}" for r, why in report.unpaired[:limit]]
    if len(report.unpaired) > limit:
        lines.append(f"- and {len(report.unpaired) - limit} more (`--format json` lists them all)")
    return [f"Runs with FCC not paired ({len(report.unpaired)}):", "", *lines, ""]


def _md_pairs(report: Report) -> list[str]:
    out = ["## FCC: with minus without, paired by seed", ""]
    if not report.pairs:
        with_fcc = [g.id for g in report.groups if any(r.fcc_on for r in g.runs)]
        reason = ("no finished run with FCC has a finished run without FCC of the same config and seed"
                  if with_fcc else "no finished run with FCC")
        return [*out, f"No pairs: {reason}.", "", *_md_unpaired(report)]
    out += ["Mean of the per-seed differences (percentage points) with its 95% Student-t interval over the n seed "
            "pairs (n - 1 degrees of freedom); an interval that excludes 0 is a gain larger than seed noise. "
            "n = 1 gives no interval. A run's partner has the same config without FCC anywhere (its own stage or "
            "the run it starts from), the same seed and, for a second stage, a first stage of the same seed; "
            "FCC shows where FCC is (`[init: ...]`: in the run it starts from).", ""]
    use_differs = any(p.differs for p in report.pairs)
    header = ["dataset", "IF", "backbone", "epochs", "method", "FCC", *(["differs in"] if use_differs else []),
              "with", "without", "n", "seeds", *(f"Δ {m}" for m in MD_PAIR_METRICS)]
    rows = [[*list(p.columns.values())[:-1], p.columns["fcc"] + p.marked, *([p.differs] if use_differs else []),
             p.groups(0), p.groups(1), str(len(p.pairs)), _seeds(p.seeds),
             *(diff_ci(p.difference(m), m) for m in MD_PAIR_METRICS)] for p in report.pairs]
    marked = any(p.marked for p in report.pairs)
    return [*out, *md_table(header, rows), "", *_md_short_note(report, marked, not report.groups),
            *_md_unpaired(report)]


def _md_features(report: Report, cols: Sequence[str], use_differs: bool) -> list[str]:
    groups = [g for g in report.groups if g.stats("spread_ratio").n]
    if not groups:
        return []
    out = ["## Feature clusters (features.json)", "",
           "Per class, the spread of its test features around their centre divided by the distance to the "
           "nearest other class centre, averaged over classes, and the mean feature norm; mean ± sd over seeds. "
           "The ratio is descriptive: multiplying every test feature by one number leaves it unchanged, so it "
           "cannot see FCC's claim (smaller real features relative to boundaries learned on tau-enlarged ones); "
           "the analyses section (`fcc analyze`) measures that.", ""]
    header = ["group", *(report.header(c) for c in cols), *(["differs in"] if use_differs else []), "n",
              *MD_FEATURE_METRICS]
    rows = [[g.id + g.marked, *g.columns.values(), *([g.differs] if use_differs else []),
             str(g.stats("spread_ratio").n), *(mean_sd(g.stats(m), m) for m in MD_FEATURE_METRICS)] for g in groups]
    out += [*md_table(header, rows), ""]
    pairs = [p for p in report.pairs if p.difference("spread_ratio").n]
    if pairs:
        header = ["method", "FCC", "with", "without", "n", *(f"Δ {m}" for m in MD_FEATURE_METRICS)]
        rows = [[p.columns["method"], p.columns["fcc"], p.groups(0), p.groups(1), str(p.difference("spread_ratio").n),
                 *(diff_ci(p.difference(m), m) for m in MD_FEATURE_METRICS)] for p in pairs]
        out += ["With minus without FCC, paired by seed (95% t-interval):", "", *md_table(header, rows), ""]
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
    header = ["rank", "class", "train images", *(g.id + g.marked for g, _ in tables)]
    rows = []
    for rank, c in enumerate(order, 1):
        cells = [mean_sd(Interval(t["n"][c], t["mean"][c], t["sd"][c], None, None), "top1") for _, t in tables]
        rows.append([str(rank), names[c], str(counts[c]) if first["train_counts"] else "?", *cells])
    return [*out, *md_table(header, rows), ""]


CSV_FIELDS = ("section", "group", "run", "path", "state", "detail", "dataset", "imbalance_factor", "backbone",
              "epochs", "method", "fcc", "grouped_by", "differs", "seeds", "with_groups", "without_groups",
              "metric", "class_index", "class_name", "train_count", "n", "mean", "sd", "ci_low", "ci_high", "caveats")


def render_csv(report: Report) -> str:
    """One row per (group, metric), (pair row, metric), (run, metric) and per-class value: easy to pivot."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    grouped_by = ",".join(report.group_by or [])
    for g in report.groups:
        base = {"section": "group", "group": g.id, **g.standard_columns(), "grouped_by": grouped_by,
                "differs": g.differs, "seeds": _seeds(g.seeds), "caveats": _caveats(g.runs)}
        if report.group_by is not None:
            base["grouped_by"] = "; ".join(f"{k}={v}" for k, v in g.columns.items())
        for m in METRICS:
            writer.writerow({**base, "metric": m, **_interval_fields(g.stats(m), m)})
        table = g.per_class()
        if table is not None:
            for c, mean_value in enumerate(table["mean"]):
                writer.writerow({**base, "metric": "per_class", "class_index": c,
                                 "class_name": (table["class_names"] or [""] * len(table["mean"]))[c],
                                 "train_count": table["train_counts"][c] if table["train_counts"] else "",
                                 "n": table["n"][c], "mean": _csv_num(mean_value, "top1"),
                                 "sd": _csv_num(table["sd"][c], "top1")})
    for p in report.pairs:
        base = {"section": "fcc_effect", **p.columns, "grouped_by": grouped_by, "differs": p.differs,
                "seeds": _seeds(p.seeds), "with_groups": p.groups(0), "without_groups": p.groups(1),
                "caveats": _caveats([r for pair in p.pairs for r in pair])}
        for m in METRICS:
            writer.writerow({**base, "metric": m, **_interval_fields(p.difference(m), m)})
    for row in analyses_csv_rows(report):
        metric = str(row.get("metric")).split(":")[0]  # the analyses' accuracies and their gains are percentages
        metric = "top1" if metric in ("la_gain", "with", "without", "without_adjusted") else metric
        writer.writerow({k: _csv_num(v, metric) if k in ("mean", "sd", "ci_low", "ci_high") else v
                         for k, v in row.items()})
    for r in report.runs:
        base = {"section": "run", "group": r.group or "", "run": r.name, "path": str(r.path),
                "state": "duplicate" if r.duplicate_of is not None else r.state,
                "detail": f"same config and seed as {r.duplicate_of}" if r.duplicate_of is not None else r.detail,
                **r.columns, "seeds": "" if r.seed is None else str(r.seed), "caveats": "; ".join(r.caveats)}
        if not r.metrics:
            writer.writerow(base)
        for m in METRICS:
            if m in r.metrics:
                writer.writerow({**base, "metric": m, "n": 1, "mean": _csv_num(r.metrics[m], m)})
    return buf.getvalue()


def _caveats(runs: Sequence[ReportRun]) -> str:
    return "; ".join(dict.fromkeys(f"{r.name}: {c}" for r in runs for c in r.caveats))


def _csv_num(v: float | None, metric: str) -> str:
    """A number as the markdown tables round it (two decimals for percentages, else four significant
    digits); the JSON has them unrounded."""
    return "" if v is None else value_text(float(v), metric)


def _interval_fields(i: Interval, metric: str) -> dict[str, Any]:
    return {"n": i.n, "mean": _csv_num(i.mean, metric), "sd": _csv_num(i.sd, metric),
            "ci_low": _csv_num(i.low, metric), "ci_high": _csv_num(i.high, metric)}


def report_data(report: Report) -> dict[str, Any]:
    """The report as plain data (what --format json prints)."""
    def run_entry(r: ReportRun) -> dict[str, Any]:
        return {"run": r.name, "path": str(r.path), "state": r.state, "detail": r.detail, "counted": r.counted,
                "duplicate_of": None if r.duplicate_of is None else str(r.duplicate_of), "seed": r.seed,
                "group": r.group, "columns": r.columns, "fcc_chain": r.fcc_chain, "caveats": r.caveats,
                "metrics": r.metrics, "per_class": r.per_class}

    return {
        "format": "fcc-report/1",
        "eval_file": report.eval_file,
        "group_by": report.group_by,
        "level": LEVEL,
        "interval": "Student t over seeds (groups) or seed pairs (fcc_effect), df = n - 1; sd with n - 1",
        "include_short": report.include_short,
        "groups": [{"id": g.id, "columns": g.columns, "standard_columns": g.standard_columns(), "differs": g.differs,
                    "n": len(g.runs), "seeds": g.seeds, "runs": [str(r.path) for r in g.runs],
                    "caveats": sorted({c for r in g.runs for c in r.caveats}),
                    "metrics": {m: g.stats(m).as_dict() for m in METRICS}, "per_class": g.per_class()}
                   for g in report.groups],
        "fcc_effect": [{"columns": p.columns, "differs": p.differs, "with_groups": p.groups(0).split(", "),
                        "without_groups": p.groups(1).split(", "), "n": len(p.pairs), "seeds": p.seeds,
                        "pairs": [{"seed": w.seed, "with": str(w.path), "without": str(b.path)} for w, b in p.pairs],
                        "caveats": sorted({c for pair in p.pairs for r in pair for c in r.caveats}),
                        "metrics": {m: {**p.difference(m).as_dict(), "with_mean": p.side_mean(m, 0),
                                        "without_mean": p.side_mean(m, 1)} for m in METRICS}}
                       for p in report.pairs],
        "unpaired": [{"run": str(r.path), "reason": why} for r, why in report.unpaired],
        "runs": [run_entry(r) for r in report.runs],
        "analyses": analyses_data(report),
    }


def render_json(report: Report) -> str:
    return json.dumps(report_data(report), indent=2, allow_nan=False) + "\n"


FORMATS = {"md": render_markdown, "markdown": render_markdown, "csv": render_csv, "json": render_json}


def table(run_dirs: Sequence[str | Path], fmt: str = "md", eval_file: str = "eval.json",
          group_by: str | None = None, include_short: bool = False) -> str:
    """`fcc report`: the report of ``run_dirs`` in ``fmt`` (md, csv or json)."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format: expected one of md, csv, json, got {fmt!r}")
    return FORMATS[fmt](build_report(run_dirs, group_by, eval_file, include_short))


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
