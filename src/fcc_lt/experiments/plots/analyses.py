"""Figures of `fcc analyze`'s analysis.json per report group: the margin distributions by shot group and the
accuracy-versus-scale curves, one line per group (with and without FCC of a method share a colour, solid
with FCC), seeds averaged (quantiles and accuracies are averaged over the group's runs; bands +- one sd)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fcc_lt.experiments.plots.style import (
    MAX_WIDTH,
    MIN_WIDTH,
    group_labels,
    group_markers,
    group_styles,
    legend_below,
    legend_height,
    new_figure,
    paper_style,
    save_figure,
)
from fcc_lt.experiments.run_folder import RunFileError, read_analysis
from fcc_lt.experiments.statistics import mean, sample_sd
from fcc_lt.util.errors import DataError

if TYPE_CHECKING:
    from fcc_lt.experiments.report import Group

SHOT_GROUPS = ("many", "medium", "few")


def analysed(groups: Sequence[Group], with_scale_sweep: bool = False
             ) -> tuple[list[tuple[Group, list[dict[str, Any]]]], list[str]]:
    """The groups whose every run has a usable analysis.json (with a scale sweep, if asked), with those files,
    and why each left-out run's file is unusable ('RUN: analysis.json: field: ...'; the report lists them too)."""
    out, problems = [], []
    for g in groups:
        usable = []
        for r in g.runs:
            try:
                data = read_analysis(r.path)  # checked by its schema (every part complete unless skipped)
            except RunFileError as err:
                problems.append(str(err))
                continue
            if with_scale_sweep and "skipped" in data["scale_sweep"]:
                problems.append(f"{r.path}: no scale sweep ({data['scale_sweep']['skipped']})")
            else:
                usable.append(data)
        if len(usable) == len(g.runs):
            out.append((g, usable))
    return out, problems


def _none_usable(what: str, problems: Sequence[str]) -> DataError:
    first = f"; {problems[0]}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "") if problems else ""
    return DataError(f"no group whose every run has {what}{first}")


def _mean_band(curves: Sequence[Sequence[float | None]]) -> tuple[list[float | None], list[float]]:
    points = list(zip(*curves))
    return [mean(p) for p in points], [sample_sd(p) or 0.0 for p in points]


def _styled(groups: Sequence[Group]) -> list[tuple[str, Any, str, dict[str, Any]]]:
    """(label, colour, dash, marker) per group: with and without FCC differ in dash and marker (a filled circle,
    a hollow square), so that they are told apart in print and the b = 0 lines belong to their group."""
    styles = group_styles(groups)
    markers = group_markers(groups, [color for color, _ in styles])
    return [(label, color, ls, {**marker, "markersize": 3.5})
            for label, (color, ls), marker in zip(group_labels(groups), styles, markers)]


def _line(ax: Any, xs: Sequence[float], ys: Sequence[float | None], sds: Sequence[float], color: Any, ls: str,
          label: str | None, band: bool, marker: dict[str, Any], linewidth: float | None = None) -> None:
    keep = [(x, y, s) for x, y, s in zip(xs, ys, sds) if y is not None]
    if not keep:
        return
    x, y, s = (list(v) for v in zip(*keep))
    ax.plot(x, y, linestyle=ls, color=color, label=label, markevery=max(1, len(x) // 6), linewidth=linewidth,
            **marker)
    if band:
        ax.fill_between(x, [a - b for a, b in zip(y, s)], [a + b for a, b in zip(y, s)], color=color, alpha=0.15,
                        linewidth=0)


def plot_margins(groups: Sequence[Group], out_dir: Path, stem: str = "margins") -> list[Path]:
    """The distribution (cumulative fraction of test samples) of the logit and the geometric margin in each shot
    group, one line per group; a sample left of 0 is misclassified."""
    series, problems = analysed(groups)
    if not series:
        raise _none_usable("an analysis.json (`fcc analyze RUN` writes it)", problems)
    present = [s for s in SHOT_GROUPS
               if any(d["margins"]["logit"].get("percentiles", {}).get(s) for _, data in series for d in data)]
    kinds = [k for k in ("logit", "geometric") if any("skipped" not in d["margins"].get(k, {"skipped": 1})
                                                    for _, data in series for d in data)]
    styles = _styled([g for g, _ in series])
    with paper_style():
        labels = [label for label, _, _, _ in styles]
        width = min(max(MIN_WIDTH, 2.4 * len(present) + 0.6), MAX_WIDTH)
        fig = new_figure(width, 2.3 * len(kinds) + 0.5 + legend_height(labels, width))
        axes = fig.subplots(len(kinds), len(present), squeeze=False)
        for row, kind in enumerate(kinds):
            for col, shot in enumerate(present):
                ax = axes[row][col]
                for (_, data), (label, color, ls, marker) in zip(series, styles):
                    curves = [d["margins"][kind]["percentiles"].get(shot) for d in data
                              if "percentiles" in d["margins"].get(kind, {})]
                    curves = [c for c in curves if c]
                    if not curves:
                        continue
                    at = data[0]["margins"][kind]["percentiles"]["at"]
                    ms, _ = _mean_band(curves)
                    keep = [(m, p / 100) for m, p in zip(ms, at) if m is not None]
                    ax.plot([m for m, _ in keep], [p for _, p in keep], linestyle=ls, color=color,
                            label=label if row == 0 and col == 0 else None, markevery=max(1, len(keep) // 6),
                            **marker)
                ax.axvline(0.0, color="0.5", linestyle=":", linewidth=0.8)
                ax.set_title(f"{shot}-shot classes" if row == 0 else "")
                ax.set_xlabel("logit margin" if kind == "logit" else "geometric margin (feature units)")
                if col == 0:
                    ax.set_ylabel("fraction of test samples")
        fig.suptitle("Margins of the true class over the best other class (left of 0: wrong)")
        handles, shown = axes[0][0].get_legend_handles_labels()
        legend_below(fig, handles, shown, width)
        return save_figure(fig, out_dir, stem)


def plot_scale_sweep(groups: Sequence[Group], out_dir: Path, stem: str = "scale_sweep") -> list[Path]:
    """Test accuracy (top-1 and each shot group's) against a common factor s on every test feature, with the
    head's bias (solid / dashed) and with b = 0 (thin dotted, flat by construction); bands +- one sd."""
    series, problems = analysed(groups, with_scale_sweep=True)
    if not series:
        raise _none_usable("a scale sweep in its analysis.json (`fcc analyze RUN`; skipped for heads that "
                           "normalise their features)", problems)
    panels = ["top1", *(s for s in SHOT_GROUPS if any(d["scale_sweep"]["with_bias"][s][0] is not None
                                                     for _, data in series for d in data))]
    styles = _styled([g for g, _ in series])
    with paper_style():
        import math

        labels = [label for label, _, _, _ in styles]
        ncols = min(len(panels), 2)  # two panels a row: four side by side would not fit a page
        nrows = math.ceil(len(panels) / ncols)
        width = MIN_WIDTH if ncols == 1 else MAX_WIDTH
        fig = new_figure(width, 2.4 * nrows + 0.5 + legend_height(labels, width))
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        for ax, key in zip(axes, panels):
            for (_, data), (label, color, ls, marker) in zip(series, styles):
                scales = data[0]["scale_sweep"]["scales"]
                ms, sds = _mean_band([d["scale_sweep"]["with_bias"][key] for d in data])
                _line(ax, scales, ms, sds, color, ls, label if key == "top1" else None, len(data) > 1, marker)
                flat, _ = _mean_band([d["scale_sweep"]["zero_bias"][key] for d in data])
                _line(ax, scales, flat, [0.0] * len(flat), color, ":", None, False, marker, linewidth=0.9)
            ax.axvline(1.0, color="0.5", linestyle=":", linewidth=0.8)
            ax.set_xlabel("factor s on every test feature")
            ax.set_title("top-1" if key == "top1" else f"{key}-shot classes")
            ax.set_ylabel("test accuracy (%)")
        fig.suptitle("Accuracy against a common feature scale (thin dotted, same marker: bias set to zero)")
        handles, shown = axes[0].get_legend_handles_labels()
        legend_below(fig, handles, shown, width)
        return save_figure(fig, out_dir, stem)
