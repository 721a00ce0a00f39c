"""The report's section on `fcc analyze`'s numbers: does FCC's gain live in the features or in the classifier?

From the runs' analysis.json numbers (``analysis_metrics``, already in each run's metrics) it renders:
per group, norm ratios and margins, then the scale sweep, oracle factor and logit adjustment; per FCC pair
row, the paired differences; CE + FCC against CE + logit adjustment of the same CE run, paired by seed; and
the decoupling table, FCC's gain before and after cRT (a new classifier on the frozen backbones), paired by
seed. Nothing here reads a file: the numbers come from fcc_lt.experiments.report.collect.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from fcc_lt.experiments.report.cells import diff_ci, md_table, mean_sd
from fcc_lt.experiments.report.collect import ReportRun
from fcc_lt.experiments.report.compare import LEVEL, PairRow, Report
from fcc_lt.experiments.statistics import Interval, t_interval

GROUPS = ("many", "medium", "few")
NORMS_MARGINS = ("norm_ratio", "norm_ratio_many", "norm_ratio_medium", "norm_ratio_few", "margin_median",
                 "margin_negative", "geo_margin_median_many", "geo_margin_median_medium", "geo_margin_median_few")
NORMS_MARGINS_TITLES = ("norm ratio", "many", "medium", "few", "logit margin median", "% negative",
                        "geometric margin median: many", "medium", "few")
SCALE_ORACLE_LA = ("scale_best", "scale_top1_gain", "scale_top1_half", "scale_top1_double", "oracle_delta_top1",
                   "oracle_delta_many", "oracle_delta_medium", "oracle_delta_few", "la_t", "la_top1", "la_delta_top1")
SCALE_ORACLE_LA_TITLES = ("best s", "top-1 gain at best s", "top-1 at s=0.5", "top-1 at s=2", "oracle Δ top-1",
                          "Δ many", "Δ medium", "Δ few", "logit adj. t", "top-1 adjusted", "Δ top-1 adjusted")
PAIRED = ("norm_ratio", "margin_negative", "geo_margin_median_many", "geo_margin_median_medium",
          "geo_margin_median_few", "oracle_delta_top1", "la_delta_top1")
PAIRED_TITLES = ("Δ norm ratio", "Δ % negative margin", "Δ geometric margin: many", "medium", "few",
                 "Δ oracle Δ top-1", "Δ logit-adjustment gain")
ACCURACIES = ("top1", "many", "medium", "few")
PREFIX = "model.init_from.run."


def _paired(pairs: Sequence[tuple[ReportRun, ReportRun]], value: Callable[[ReportRun, ReportRun], float | None]
            ) -> Interval:
    return t_interval([value(w, b) for w, b in pairs], LEVEL)


def _minus(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


# -- FCC against logit adjustment ------------------------------------------------------------------------------

def fcc_vs_logit_adjustment(row: PairRow) -> dict[str, Interval] | None:
    """Per accuracy, (with FCC) - (without FCC, logit-adjusted), paired by seed; None without adjusted numbers."""
    pairs = [(w, b) for w, b in row.pairs if b.metrics.get("la_top1") is not None]
    if not pairs:
        return None
    out = {m: _paired(pairs, lambda w, b, m=m: _minus(w.metrics.get(m), b.metrics.get(f"la_{m}")))
           for m in ACCURACIES}
    out["la_gain"] = _paired(pairs, lambda w, b: b.metrics.get("la_delta_top1"))
    out["without"] = _paired(pairs, lambda w, b: b.metrics.get("top1"))
    out["without_adjusted"] = _paired(pairs, lambda w, b: b.metrics.get("la_top1"))
    out["with"] = _paired(pairs, lambda w, b: w.metrics.get("top1"))
    return out


# -- decoupling ------------------------------------------------------------------------------------------------

def _referenced(run: ReportRun) -> tuple[dict[str, str], str] | None:
    """The identity of the run ``run`` starts from, and that run's seed (as JSON)."""
    ref = {k[len(PREFIX):]: v for k, v in run.identity.items() if k.startswith(PREFIX)}
    seed = ref.pop("seed", None)
    return (ref, seed if seed is not None else json.dumps(run.seed)) if ref else None


def stage1_pairs(row: PairRow, runs: Sequence[ReportRun]) -> list[tuple[ReportRun, ReportRun, ReportRun, ReportRun]]:
    """For a pair row of second-stage runs: (with, without, the with-run's stage 1, the without-run's stage 1) for
    each seed whose two stage-1 runs are in the report (found by identity and seed)."""
    by_identity = {(json.dumps(r.identity, sort_keys=True), json.dumps(r.seed)): r for r in runs if r.counted}
    out = []
    for w, b in row.pairs:
        refs = [_referenced(w), _referenced(b)]
        if refs[0] is None or refs[1] is None:
            return []
        found = [by_identity.get((json.dumps(ref, sort_keys=True), seed)) for ref, seed in refs]
        if found[0] is not None and found[1] is not None:
            out.append((w, b, found[0], found[1]))
    return out


def decoupling(row: PairRow, runs: Sequence[ReportRun]) -> dict[str, Any] | None:
    """FCC's top-1 gain in stage 1 and after cRT on the same backbones, and their difference, paired by seed."""
    quads = stage1_pairs(row, runs)
    if not quads:
        return None
    out: dict[str, Any] = {"seeds": [w.seed for w, *_ in quads]}
    for m in ACCURACIES:
        first = [_minus(w1.metrics.get(m), b1.metrics.get(m)) for _, _, w1, b1 in quads]
        second = [_minus(w.metrics.get(m), b.metrics.get(m)) for w, b, _, _ in quads]
        out[m] = {"stage1": t_interval(first, LEVEL), "after_crt": t_interval(second, LEVEL),
                  "difference": t_interval([_minus(s, f) for s, f in zip(second, first)], LEVEL)}
    return out


# -- markdown --------------------------------------------------------------------------------------------------

def md_analyses(report: Report) -> list[str]:
    """The markdown section (empty when no counted run has an analysis.json)."""
    groups = [g for g in report.groups if g.stats("norm_ratio").n]
    problems = [f"- {r.path}: {r.analysis_problem}" for r in report.runs if r.counted and r.analysis_problem]
    if problems:
        problems = ["Not in this section (their analysis.json is unusable):", "", *problems, ""]
    if not groups:
        return ["## Analyses (analysis.json)", "", *problems] if problems else []
    out = ["## Analyses (analysis.json): features or classifier?", "", *problems,
           "From `fcc analyze` on the test split (docs/analyses.md). Norm ratio: tau_c x mean training-feature "
           "norm / mean test-feature norm (what the head saw in training against what it sees). Margins: logit "
           "margin z_y - max z_c, and the geometric one (divided by ||w_y - w_c||, feature units), by shot group. "
           "Scale sweep: top-1 with every test feature times s (with the head's bias; without it the argmax does "
           "not depend on s). Oracle factor: top-1 with each test feature times its own class's tau, minus "
           "unscaled. Logit adjustment: logits - t log(prior), t chosen on the validation split. "
           "Mean ± sd over seeds.", ""]
    header = ["group", "method", "FCC", "n", *NORMS_MARGINS_TITLES]
    rows = [[g.id, g.standard_columns()["method"], g.standard_columns()["fcc"], str(g.stats("norm_ratio").n),
             *(mean_sd(g.stats(m), m) for m in NORMS_MARGINS)] for g in groups]
    out += [*md_table(header, rows), ""]
    header = ["group", "n", *SCALE_ORACLE_LA_TITLES]
    rows = [[g.id, str(g.stats("norm_ratio").n), *(mean_sd(g.stats(m), m) for m in SCALE_ORACLE_LA)] for g in groups]
    out += [*md_table(header, rows), ""]
    pairs = [p for p in report.pairs if p.difference("norm_ratio").n]
    if pairs:
        header = ["method", "FCC", "with", "without", "n", *PAIRED_TITLES]
        rows = [[p.columns["method"], p.columns["fcc"], p.groups(0), p.groups(1), str(p.difference("norm_ratio").n),
                 *(diff_ci(p.difference(m), m) for m in PAIRED)] for p in pairs]
        out += ["With minus without FCC, paired by seed (95% t-interval):", "", *md_table(header, rows), ""]
    out += _md_logit_adjustment(report)
    out += _md_decoupling(report)
    return out


def _md_logit_adjustment(report: Report) -> list[str]:
    rows = []
    for p in report.pairs:
        cmp = fcc_vs_logit_adjustment(p)
        if cmp is None:
            continue
        rows.append([p.columns["method"], p.columns["fcc"], p.groups(0), p.groups(1), str(cmp["top1"].n),
                     mean_sd(cmp["without"], "top1"), mean_sd(cmp["without_adjusted"], "top1"),
                     mean_sd(cmp["with"], "top1"), diff_ci(cmp["la_gain"], "top1"),
                     *(diff_ci(cmp[m], "top1") for m in ACCURACIES)])
    if not rows:
        return []
    header = ["method", "FCC", "with", "without", "n", "top-1 without", "without + logit adj.", "top-1 with",
              "logit adj. gain", *(f"with - (without + adj.): {m}" for m in ACCURACIES)]
    return ["FCC against a post-hoc logit adjustment of the run without FCC (t chosen on its validation split), "
            "paired by seed (95% t-interval); a difference near 0 or below means a plain re-balancing of the "
            "classifier does what FCC does:", "", *md_table(header, rows), ""]


def _md_decoupling(report: Report) -> list[str]:
    rows = []
    for p in report.pairs:
        dec = decoupling(p, report.runs)
        if dec is None:
            continue
        rows.append([p.columns["method"], p.columns["fcc"], p.groups(0), p.groups(1), str(dec["top1"]["stage1"].n),
                     *(diff_ci(dec[m][k], m) for m in ("top1", "medium")
                       for k in ("stage1", "after_crt", "difference"))])
    if not rows:
        return []
    header = ["second stage", "FCC", "with", "without", "n", "Δ top-1 stage 1", "Δ top-1 after", "after - stage 1",
              "Δ medium stage 1", "Δ medium after", "after - stage 1"]
    return ["Decoupling: FCC's gain in stage 1 and after a second stage on the same frozen backbones (cRT: a new "
            "classifier), paired by seed (95% t-interval). A gain that survives a new classifier lives in the "
            "features; one that vanishes lived in the classifier:", "", *md_table(header, rows), ""]


# -- data (JSON, CSV) ------------------------------------------------------------------------------------------

def analyses_data(report: Report) -> dict[str, Any]:
    """The cross comparisons as plain data (the per-metric numbers are in the groups and fcc_effect entries)."""
    def row_info(p: PairRow) -> dict[str, Any]:
        return {"columns": p.columns, "with_groups": p.groups(0).split(", "), "without_groups": p.groups(1).split(", ")}

    la, dec = [], []
    for p in report.pairs:
        cmp = fcc_vs_logit_adjustment(p)
        if cmp is not None:
            la.append({**row_info(p), "metrics": {k: i.as_dict() for k, i in cmp.items()}})
        d = decoupling(p, report.runs)
        if d is not None:
            dec.append({**row_info(p), "seeds": d["seeds"],
                        "metrics": {m: {k: i.as_dict() for k, i in d[m].items()} for m in ACCURACIES}})
    return {"fcc_vs_logit_adjustment": la, "decoupling": dec}


def analyses_csv_rows(report: Report) -> list[dict[str, Any]]:
    """Rows for the tidy CSV: section 'fcc_vs_logit_adjustment' (metric: the accuracy, or la_gain, with,
    without, without_adjusted) and 'decoupling' (metric: '<accuracy>:stage1|after_crt|difference')."""
    data = analyses_data(report)
    rows = []
    for section in ("fcc_vs_logit_adjustment", "decoupling"):
        for entry in data[section]:
            base = {"section": section, **entry["columns"], "with_groups": ", ".join(entry["with_groups"]),
                    "without_groups": ", ".join(entry["without_groups"])}
            for metric, value in entry["metrics"].items():
                parts = value.items() if section == "decoupling" else [("", value)]
                for sub, numbers in parts:
                    rows.append({**base, "metric": f"{metric}:{sub}" if sub else metric,
                                 **{k: numbers[k] for k in ("n", "mean", "sd", "ci_low", "ci_high")}})
    return rows
