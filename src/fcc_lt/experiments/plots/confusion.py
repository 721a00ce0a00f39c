"""The confusion matrix of a run in class-rank order, rows normalised; blocks of ranks above 30 classes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fcc_lt.experiments.plots.style import MAX_WIDTH, MIN_WIDTH, new_figure, paper_style, rank_order, save_figure
from fcc_lt.experiments.run_folder import read_confusion, read_eval
from fcc_lt.util.errors import ConfigError, DataError

MAX_CONFUSION_CLASSES = 30  # above this the confusion matrix is aggregated to blocks of ranks


def block_confusion(confusion: np.ndarray, train_counts: Sequence[int], blocks: int | None = None
                    ) -> tuple[np.ndarray, list[list[int]]]:
    """The confusion matrix in rank order, rows normalised; above MAX_CONFUSION_CLASSES classes (or when
    ``blocks`` is given) consecutive ranks are summed into blocks before normalising, so each cell is the
    fraction of a block's test samples predicted as some class of another (or the same) block."""
    c = confusion.shape[0]
    order = rank_order(train_counts)
    k = blocks if blocks is not None else (c if c <= MAX_CONFUSION_CLASSES else MAX_CONFUSION_CLASSES)
    if not 1 <= k <= c:
        raise ConfigError(f"--blocks: expected 1 to {c} (the number of classes), got {k}")
    size = math.ceil(c / k)
    members = [order[i:i + size] for i in range(0, c, size)]
    ranked = confusion[np.ix_(order, order)].astype(np.float64)
    sums = np.add.reduceat(np.add.reduceat(ranked, list(range(0, c, size)), axis=0), list(range(0, c, size)), axis=1)
    totals = sums.sum(axis=1, keepdims=True)
    rates = np.divide(sums, totals, out=np.zeros_like(sums), where=totals > 0)
    return rates, members


def plot_confusion_ranked(confusion: np.ndarray, class_names: Sequence[str], train_counts: Sequence[int],
                          out_dir: Path, stem: str = "confusion_ranked", blocks: int | None = None) -> list[Path]:
    """Row-normalised confusion matrix, classes (or blocks of ranks) by training count, counts on the axes."""
    rates, members = block_confusion(confusion, train_counts, blocks)
    k = len(members)
    single = all(len(m) == 1 for m in members)
    if single:
        labels = [f"{class_names[m[0]]} ({train_counts[m[0]]})" for m in members]
    else:
        start = 1
        labels = []
        for m in members:
            ranks = f"ranks {start}-{start + len(m) - 1}" if len(m) > 1 else f"rank {start}"
            seen = f"{train_counts[m[0]]}-{train_counts[m[-1]]}" if len(m) > 1 else f"{train_counts[m[0]]}"
            labels.append(f"{ranks} ({seen})")
            start += len(m)
    with paper_style():
        width = min(max(4.2 + 0.22 * k, MIN_WIDTH), MAX_WIDTH)  # the matrix, its labels and the colour bar
        fig = new_figure(width, width - 1.0)
        ax = fig.add_subplot()
        im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of the true row's test samples")
        ax.set_xticks(range(k), labels=labels, rotation=90, fontsize=6 if k > 15 else 7)
        ax.set_yticks(range(k), labels=labels, fontsize=6 if k > 15 else 7)
        ax.grid(False)
        what = "class (training images)" if single else "block of class ranks (training images)"
        ax.set_xlabel(f"predicted {what}")
        ax.set_ylabel(f"true {what}")
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    if rates[i, j] >= 0.005:
                        ax.text(j, i, f"{100 * rates[i, j]:.0f}", ha="center", va="center", fontsize=6,
                                color="white" if rates[i, j] > 0.5 else "black")
        title = "Confusion, classes by training count" if single else \
            f"Confusion in {k} blocks of ~{len(members[0])} ranks (diagonal blocks include confusions within a block)"
        ax.set_title(title, fontsize=8 if not single else 9)
        return save_figure(fig, out_dir, stem)


def plot_confusion_run(run_dir: Path, out_dir: Path, blocks: int | None = None,
                       eval_file: str = "eval.json") -> list[Path]:
    """`fcc plot confusion RUN`: confusion.csv in rank order with the training counts of eval.json."""
    run_dir = Path(run_dir)
    names, counts = read_confusion(run_dir)
    train_counts = read_eval(run_dir, eval_file).train_counts
    if not isinstance(train_counts, list) or len(train_counts) != len(names):
        raise DataError(f"{run_dir / eval_file}: no train_counts for the {len(names)} classes of confusion.csv")
    return plot_confusion_ranked(counts, names, [int(c) for c in train_counts], out_dir, blocks=blocks)

