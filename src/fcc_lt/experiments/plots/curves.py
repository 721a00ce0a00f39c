"""Training curves from metrics.jsonl: loss, train / test / validation top-1 and the learning rate."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fcc_lt.experiments.plots.style import colors, new_figure, paper_style, run_labels, save_figure
from fcc_lt.experiments.run_folder import config_or_none, find_run_dirs, read_metrics
from fcc_lt.util.errors import DataError


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["epoch"], float(r[key])) for r in rows if isinstance(r.get(key), int | float) and
           not isinstance(r.get(key), bool) and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_training_curves(run_dirs: Sequence[Path], out_dir: Path, stem: str = "training_curves") -> list[Path]:
    """Training loss, train / test (/ validation) top-1 and the learning rate against epoch, one colour a run."""
    from matplotlib.lines import Line2D

    logs = [read_metrics(r) for r in run_dirs]
    with paper_style():
        fig = new_figure(7.0, 2.8)
        ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
        styles = {"train_acc": "--", "test_top1": "-", "val_top1": ":"}
        positive_lr = True
        for rows, label, color in zip(logs, run_labels(run_dirs), colors(len(logs))):
            ax_loss.plot(*_series(rows, "train_loss"), color=color, label=label)
            for key, ls in styles.items():
                xs, ys = _series(rows, key)
                if xs:
                    ax_acc.plot(xs, ys, color=color, linestyle=ls, marker="." if len(xs) < 30 else None)
            xs, ys = _series(rows, "lr")
            positive_lr &= all(y > 0 for y in ys)
            ax_lr.plot(xs, ys, color=color)
        present = [k for k in styles if any(_series(rows, k)[0] for rows in logs)]
        names = {"train_acc": "train", "test_top1": "test", "val_top1": "validation"}
        ax_acc.legend([Line2D([], [], color="0.2", linestyle=styles[k]) for k in present],
                      [names[k] for k in present], loc="lower right")
        if positive_lr:
            ax_lr.set_yscale("log")
        for ax, ylabel, title in ((ax_loss, "training loss", "Loss"), (ax_acc, "top-1 accuracy (%)", "Accuracy"),
                                  (ax_lr, "learning rate", "Learning rate")):
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            ax.set_title(title)
        fig.legend(*ax_loss.get_legend_handles_labels(), loc="outside lower center", ncols=min(4, len(logs)),
                   frameon=False)
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
