"""Figures of report groups (runs that differ only by seed): per-class accuracy against training count,
and the feature-cluster statistics against class rank; ``plot_report`` draws them, and the analyses'
figures (fcc_lt.experiments.plots.analyses), for `fcc report --out`."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fcc_lt.experiments.plots.analyses import analysed, plot_margins, plot_scale_sweep
from fcc_lt.experiments.plots.style import (
    MIN_WIDTH,
    group_labels,
    group_markers,
    group_styles,
    legend_below,
    legend_height,
    new_figure,
    paper_style,
    rank_order,
    save_figure,
    shot_bounds,
)
from fcc_lt.experiments.run_folder import read_feature_stats
from fcc_lt.experiments.statistics import mean, sample_sd
from fcc_lt.util.errors import DataError

if TYPE_CHECKING:
    from fcc_lt.experiments.report import Group, Report, ReportRun

MAX_COUNT_POINTS = 40  # distinct training counts on the per-class plot; more are binned (log-spaced)


def count_curve(per_class_runs: Sequence[Sequence[float | None]], counts: Sequence[int],
                max_points: int = MAX_COUNT_POINTS) -> tuple[list[float], list[float], list[float | None]]:
    """Accuracy against training count: classes with equal counts (or in one log-spaced bin, when there are
    more than ``max_points`` distinct counts) are averaged within each run, then mean and sd over runs."""
    distinct = sorted(set(int(c) for c in counts))
    if len(distinct) <= max_points:
        bins = [[c for c in range(len(counts)) if counts[c] == v] for v in distinct]
    else:
        edges = np.geomspace(max(min(distinct), 1), max(distinct), max_points + 1)
        where = np.clip(np.searchsorted(edges, np.maximum(np.asarray(counts, float), 1), side="right") - 1,
                        0, max_points - 1)
        bins = [[c for c in range(len(counts)) if where[c] == b] for b in range(max_points)]
        bins = [b for b in bins if b]
    xs, means, sds = [], [], []
    for members in bins:
        per_run = [mean([run[c] for c in members]) for run in per_class_runs]
        m = mean(per_run)
        if m is None:
            continue
        xs.append(float(math.exp(sum(math.log(max(counts[c], 1)) for c in members) / len(members))))
        means.append(m)
        sds.append(sample_sd(per_run))
    return xs, means, sds


def _thresholds(groups: Sequence[Group]) -> tuple[int, int]:
    ev = (groups[0].runs[0].config or {}).get("eval") or {}
    return int(ev.get("many_shot_min", 101)), int(ev.get("few_shot_max", 19))


def plot_per_class(groups: Sequence[Group], out_dir: Path, stem: str = "per_class_accuracy") -> list[Path]:
    """Per-class test accuracy against the class's training count (log axis), one line per group, the band
    +- one sd over seeds; with and without FCC of a method share a colour and differ in line and marker
    (solid with filled circles: with FCC; dashed with hollow squares: without). The legend is under the axes."""
    from matplotlib.ticker import FuncFormatter

    usable = [g for g in groups if all(r.per_class is not None and r.train_counts is not None for r in g.runs)]
    if not usable:
        raise DataError("no finished run with per-class accuracies and training counts in its eval.json")
    labels, styles = group_labels(usable), group_styles(usable)
    width = MIN_WIDTH
    with paper_style():
        fig = new_figure(width, 3.4 + legend_height(labels, width))
        ax = fig.add_subplot()
        handles = []
        markers = group_markers(usable, [c for c, _ in styles])
        for g, (color, ls), marker in zip(usable, styles, markers):
            counts = g.runs[0].train_counts or []
            xs, ms, sds = count_curve([r.per_class or [] for r in g.runs], counts)
            (line,) = ax.plot(xs, ms, linestyle=ls, color=color, markersize=3.5, **marker)
            handles.append(line)
            if len(g.runs) > 1:
                lo = [m - (s or 0.0) for m, s in zip(ms, sds)]
                hi = [m + (s or 0.0) for m, s in zip(ms, sds)]
                ax.fill_between(xs, lo, hi, color=color, alpha=0.18, linewidth=0)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("training images of the class (log scale)")
        ax.set_ylabel("test accuracy of the class (%)")
        ax.set_ylim(-2, 102)
        shot_bounds(ax, *_thresholds(usable))
        bands = " (bands: ± 1 sd over seeds)" if any(len(g.runs) > 1 for g in usable) else ""
        ax.set_title("Per-class accuracy against training count" + bands)
        legend_below(fig, handles, labels, width)
        return save_figure(fig, out_dir, stem)


def plot_feature_clusters(groups: Sequence[Group], out_dir: Path, stem: str = "feature_clusters") -> list[Path]:
    """Against class rank: the spread of each class's test features divided by the distance to the nearest
    other class centre, and the mean feature norm; one line per group, +- one sd over seeds; with and
    without FCC told apart by line and marker as in the per-class figure."""
    from matplotlib.ticker import MaxNLocator

    series = []
    for g in groups:
        data = [read_feature_stats(r.path) for r in g.runs]
        counts = data[0].get("train_counts") or g.runs[0].train_counts
        if not counts:
            raise DataError(f"{g.runs[0].path}: neither features.json nor eval.json has train_counts")
        series.append((data, [int(c) for c in counts]))
    labels, styles = group_labels(groups), group_styles(groups)
    width = 7.0
    with paper_style():
        fig = new_figure(width, 3.0 + legend_height(labels, width))
        axes = fig.subplots(1, 2)
        panels = (("spread_ratio", "spread / nearest-centre distance"), ("mean_norm", "mean feature norm"))
        handles = []
        markers = group_markers(groups, [c for c, _ in styles])
        for (data, counts), (color, ls), marker in zip(series, styles, markers):
            order = rank_order(counts)
            for ax, (key, _) in zip(axes, panels):
                values = [d["per_class"].get(key) or [None] * len(counts) for d in data]
                ms = [mean([v[c] for v in values]) for c in order]
                sds = [sample_sd([v[c] for v in values]) for c in order]
                xs = [i + 1 for i, m in enumerate(ms) if m is not None]
                ys = [m for m in ms if m is not None]
                ss = [s or 0.0 for m, s in zip(ms, sds) if m is not None]
                (line,) = ax.plot(xs, ys, linestyle=ls, color=color, markersize=3, **marker)
                if key == "spread_ratio":
                    handles.append(line)
                if len(data) > 1:
                    ax.fill_between(xs, [y - s for y, s in zip(ys, ss)], [y + s for y, s in zip(ys, ss)],
                                    color=color, alpha=0.18, linewidth=0)
        for ax, (_, ylabel) in zip(axes, panels):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("class rank (1 = most training images)")
            ax.set_ylabel(ylabel)
        axes[0].set_title("Cluster spread (scale-free)")
        axes[1].set_title("Test feature norms")
        legend_below(fig, handles, labels, width)
        return save_figure(fig, out_dir, stem)


def plot_report(report: Report, out_dir: Path) -> list[Path]:
    """The group figures of a report: per-class accuracy, and the feature clusters when every run of some
    group has a features.json with per-class statistics."""
    written: list[Path] = []
    if any(all(r.per_class is not None and r.train_counts is not None for r in g.runs) for g in report.groups):
        written += plot_per_class(report.groups, out_dir)
    with_features = [g for g in report.groups if all(_has_cluster_stats(r.path) for r in g.runs)]
    if with_features:
        written += plot_feature_clusters(with_features, out_dir)
    written += plot_report_analyses(report, out_dir)
    return written


def plot_report_analyses(report: Report, out_dir: Path) -> list[Path]:
    """The margin and scale figures of the groups whose every run has an analysis.json (none: nothing)."""
    groups = [g for g, _ in analysed(report.groups)[0]]
    if not groups:
        return []
    written = plot_margins(groups, out_dir)
    if any(g for g, _ in analysed(groups, with_scale_sweep=True)[0]):  # heads that normalise features have none
        written += plot_scale_sweep(groups, out_dir)
    return written


def _has_cluster_stats(run_dir: Path) -> bool:
    try:
        read_feature_stats(run_dir)
    except DataError:
        return False
    return True


def _why_left_out(run: ReportRun) -> str:
    """A run's state with what it lacks (e.g. 'failed (no eval_best.json)'), or 'duplicate'."""
    if run.duplicate_of is not None:
        return f"duplicate of {run.duplicate_of}"
    return f"{run.state} ({run.detail})" if run.detail else run.state


def grouped_plot(kind: str, paths: Sequence[str | Path], out_dir: Path, group_by: str | None = None,
                 eval_file: str = "eval.json", include_short: bool = False) -> tuple[list[Path], list[str]]:
    """`fcc plot per-class|clusters DIR...`: the figure and one line for each run left out (unfinished,
    failed, short unless ``include_short``, duplicate)."""
    from fcc_lt.experiments.report import build_report

    report = build_report(paths, group_by, eval_file, include_short)
    skipped = [f"{r.path}: {_why_left_out(r)}, not plotted" for r in report.runs if not r.counted]
    if not report.groups:
        raise DataError("no finished runs to plot (" + "; ".join(skipped) + ")")
    draws: dict[str, Callable[[Sequence[Group], Path], list[Path]]] = {
        "per-class": plot_per_class, "clusters": plot_feature_clusters, "margins": plot_margins,
        "scale": plot_scale_sweep}
    return draws[kind](report.groups, out_dir), skipped

