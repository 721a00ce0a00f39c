"""Training curves from metrics.jsonl: loss, train / test / validation top-1 and the learning rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fcc_lt.experiments.plots.style import (
    colors,
    legend_below,
    legend_height,
    new_figure,
    paper_style,
    run_labels,
    save_figure,
)
from fcc_lt.experiments.run_folder import config_or_none, find_run_dirs, read_metrics
from fcc_lt.util.errors import DataError


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["epoch"], float(r[key])) for r in rows if isinstance(r.get(key), int | float) and
           not isinstance(r.get(key), bool) and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def run_descriptions(run_dirs: Sequence[Path]) -> list[str]:
    """Legend entries for runs: the method and FCC as the report names them (`ce + FCC(gamma 0.5, from epoch
    1)`) and the seed; the folder name is added only where two runs would read the same, and a run whose
    schedule cannot mean what its config means is marked."""
    from fcc_lt.experiments.report.collect import fcc_chain_label, method_label, schedule_caveats

    out = []
    for run in run_dirs:
        cfg = config_or_none(run)
        if cfg is None:
            out.append(Path(run).name)
            continue
        fcc = fcc_chain_label(cfg, Path(run))
        text = method_label(cfg, Path(run)) + ("" if fcc == "-" else f" + {fcc}") + f", seed {cfg.get('seed')}"
        out.append(text + (" †short schedule" if schedule_caveats(cfg, Path(run)) else ""))
    names = run_labels(run_dirs)
    return [t if out.count(t) == 1 else f"{t} ({n})" for t, n in zip(out, names)]


def plot_training_curves(run_dirs: Sequence[Path], out_dir: Path, stem: str = "training_curves") -> list[Path]:
    """Training loss, train / test (/ validation) top-1 and the learning rate against epoch, one colour a run
    (named by its method and seed), integer epochs, the LR as the step function it is (constant within an
    epoch); one legend under the panels."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    logs = [read_metrics(r) for r in run_dirs]
    labels = run_descriptions(run_dirs)
    styles = {"train_acc": "--", "test_top1": "-", "val_top1": ":"}
    names = {"train_acc": "train top-1", "test_top1": "test top-1", "val_top1": "validation top-1"}
    present = [k for k in styles if any(_series(rows, k)[0] for rows in logs)]
    key_labels = [names[k] for k in present]
    width = 7.0
    with paper_style():
        fig = new_figure(width, 2.6 + legend_height([*labels, *key_labels], width))
        ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
        positive_lr = True
        handles = []
        for rows, color in zip(logs, colors(len(logs))):
            (line,) = ax_loss.plot(*_series(rows, "train_loss"), color=color)
            handles.append(line)
            for key, ls in styles.items():
                xs, ys = _series(rows, key)
                if xs:
                    ax_acc.plot(xs, ys, color=color, linestyle=ls, marker="." if len(xs) < 30 else None)
            xs, ys = _series(rows, "lr")
            positive_lr &= all(y > 0 for y in ys)
            ax_lr.plot(xs, ys, color=color, drawstyle="steps-mid")  # the LR holds for a whole epoch
        if positive_lr:  # log axis, ticks at 1, 2 and 5 times a power of ten, written as plain numbers
            ax_lr.set_yscale("log")
            ax_lr.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax_lr.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax_lr.yaxis.set_minor_formatter(NullFormatter())
        for ax, ylabel, title in ((ax_loss, "training loss", "Loss"), (ax_acc, "top-1 accuracy (%)", "Accuracy"),
                                  (ax_lr, "learning rate", "Learning rate")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        keys = [Line2D([], [], color="0.3", linestyle=styles[k]) for k in present]
        legend_below(fig, [*handles, *keys], [*labels, *key_labels], width)
        return save_figure(fig, out_dir, stem)


def curves_plot(paths: Sequence[str | Path], out_dir: Path, include_short: bool = False
                ) -> tuple[list[Path], list[str]]:
    """`fcc plot curves DIR...`: every run with epoch lines (running and stopped ones too); one line for each
    run left out. Smoke runs (steps capped by train.max_steps_per_epoch) are left out unless
    ``include_short``."""
    from fcc_lt.experiments.report.collect import schedule_caveats

    runs, skipped = [], []
    for run in find_run_dirs(paths):
        try:
            read_metrics(run)
        except DataError as err:
            skipped.append(f"{err}, not plotted")
            continue
        cfg = config_or_none(run) or {}
        capped = [c for c in schedule_caveats(cfg, run) if "max_steps_per_epoch" in c]
        if capped and not include_short:
            skipped.append(f"{run}: a smoke run ({capped[0]}), not plotted (--include-short plots it)")
            continue
        runs.append(run)
    if not runs:
        raise DataError("no run with epoch lines in metrics.jsonl (" + "; ".join(skipped) + ")")
    return plot_training_curves(runs, out_dir), skipped
