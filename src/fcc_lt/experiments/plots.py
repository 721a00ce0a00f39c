"""Figures for papers from run directories: per-class accuracy, training curves, ranked confusion,
feature projections and feature-cluster statistics, each written as PNG and PDF.

Every figure is built on its own ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global
backend switch), in paper-sized inches with readable fonts. Classes are always in rank order: by
training count, largest first, ties by class index (the order FCC ranks them in). t-SNE and UMAP are
used only when scikit-learn / umap-learn are installed; PCA needs nothing beyond numpy.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fcc_lt.evaluation.metrics import shot_groups
from fcc_lt.experiments.run_folder import read_config
from fcc_lt.experiments.statistics import mean, sample_sd
from fcc_lt.util.errors import ConfigError, DataError
from fcc_lt.util.files import read_input, read_input_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from fcc_lt.experiments.report import Group, Report
    from fcc_lt.experiments.report import Run as ReportRun

PROJECTIONS = ("pca", "tsne", "umap")
MAX_CONFUSION_CLASSES = 30  # above this the confusion matrix is aggregated to blocks of ranks
MAX_COUNT_POINTS = 40  # distinct training counts on the per-class plot; more are binned (log-spaced)
PAPER_STYLE = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 9, "legend.fontsize": 7,
               "xtick.labelsize": 8, "ytick.labelsize": 8, "lines.linewidth": 1.5, "axes.grid": True,
               "grid.alpha": 0.3, "pdf.fonttype": 42}


def rank_order(train_counts: Sequence[int]) -> list[int]:
    """Class indices by training count, largest first, ties by index."""
    return sorted(range(len(train_counts)), key=lambda c: (-int(train_counts[c]), c))


def _style() -> AbstractContextManager[Any]:
    import matplotlib

    return matplotlib.rc_context(PAPER_STYLE)


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """``out_dir/stem.png`` (200 dpi) and ``stem.pdf`` (vector, fonts embedded as TrueType), atomically."""
    from fcc_lt.util.files import atomic_write_bytes

    # the PDF backend subsets fonts with fontTools, which logs every table at INFO (the CLI's level)
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: is a file, expected a folder for the figures")
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    atomic_write_bytes(paths[0], lambda f: fig.savefig(f, format="png", dpi=200))
    atomic_write_bytes(paths[1], lambda f: fig.savefig(f, format="pdf", metadata={"CreationDate": None}))
    return paths


def _colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _shot_bounds(ax: Axes, many_min: int, few_max: int) -> None:
    """Dotted lines between the shot groups on a training-count axis, with the groups named."""
    for x in (few_max + 0.5, many_min - 0.5):
        ax.axvline(x, color="0.5", linestyle=":", linewidth=0.8)
    trans = ax.get_xaxis_transform()
    lo, hi = ax.get_xlim()
    for text, x in (("few", math.sqrt(max(lo, 1e-9) * (few_max + 0.5))),
                    ("medium", math.sqrt((few_max + 0.5) * (many_min - 0.5))),
                    ("many", math.sqrt((many_min - 0.5) * max(hi, many_min)))):
        if lo < x < hi:
            ax.text(x, 0.99, text, transform=trans, ha="center", va="top", fontsize=7, color="0.4")


# ------------------------------------------------------------------------------------ per-class accuracy


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


def _group_styles(groups: Sequence[Group]) -> list[tuple[Any, str]]:
    """A colour per method (with and without FCC share it), solid with FCC, dashed without."""
    methods: dict[Any, int] = {}
    for g in groups:
        methods.setdefault(g.runs[0].pair_key(), len(methods))
    colors = _colors(len(methods))
    return [(colors[methods[g.runs[0].pair_key()]], "-" if g.runs[0].fcc_on else "--") for g in groups]


def group_labels(groups: Sequence[Group]) -> list[str]:
    """Legend entries: the method and FCC, plus whatever else differs between the plotted groups."""
    from fcc_lt.experiments.report import COLUMNS, _std_columns

    columns = [_std_columns(g.runs) for g in groups]
    varying = [c for c in COLUMNS if c not in ("method", "fcc") and len({col[c] for col in columns}) > 1]
    labels = []
    for g, col in zip(groups, columns):
        parts = [col["method"] + ("" if col["fcc"] == "-" else f" + {col['fcc']}")]
        parts += [f"{COLUMNS[c]} {col[c]}" for c in varying]
        if g.differs:
            parts.append(g.differs)
        labels.append(f"{', '.join(parts)} (n={len(g.runs)})")
    return labels


def _thresholds(groups: Sequence[Group]) -> tuple[int, int]:
    ev = (groups[0].runs[0].config or {}).get("eval") or {}
    return int(ev.get("many_shot_min", 101)), int(ev.get("few_shot_max", 19))


def plot_per_class(groups: Sequence[Group], out_dir: Path, stem: str = "per_class_accuracy") -> list[Path]:
    """Per-class test accuracy against the class's training count (log axis), one line per group, the band
    +- one sd over seeds; with and without FCC of a method share a colour (solid: with FCC)."""
    from matplotlib.ticker import FuncFormatter

    usable = [g for g in groups if all(r.per_class is not None and r.train_counts is not None for r in g.runs)]
    if not usable:
        raise DataError("no finished run with per-class accuracies and training counts in its eval.json")
    with _style():
        fig = _figure(6.0, 3.8)
        ax = fig.add_subplot()
        for g, label, (color, ls) in zip(usable, group_labels(usable), _group_styles(usable)):
            counts = g.runs[0].train_counts or []
            xs, ms, sds = count_curve([r.per_class or [] for r in g.runs], counts)
            ax.plot(xs, ms, linestyle=ls, color=color, marker="o", markersize=3, label=label)
            if len(g.runs) > 1:
                lo = [m - (s or 0.0) for m, s in zip(ms, sds)]
                hi = [m + (s or 0.0) for m, s in zip(ms, sds)]
                ax.fill_between(xs, lo, hi, color=color, alpha=0.18, linewidth=0)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("training images of the class (log scale)")
        ax.set_ylabel("test accuracy of the class (%)")
        ax.set_ylim(-2, 102)
        _shot_bounds(ax, *_thresholds(usable))
        bands = " (bands: ± 1 sd over seeds)" if any(len(g.runs) > 1 for g in usable) else ""
        ax.set_title("Per-class accuracy against training count" + bands)
        ax.legend(loc="lower right", frameon=True)
        return save_figure(fig, out_dir, stem)


# ------------------------------------------------------------------------------- feature-cluster stats


def _features_json(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "features.json"
    try:
        data = json.loads(read_input_text(path, "feature statistics (`fcc eval RUN --features` writes them)"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    per_class = data.get("per_class") if isinstance(data, dict) else None
    if not isinstance(per_class, dict) or "spread_ratio" not in per_class:
        raise DataError(f"{path}: has no per-class spread_ratio; rerun `fcc eval {run_dir} --features` with this "
                        "version of fcc")
    return data


def plot_feature_clusters(groups: Sequence[Group], out_dir: Path, stem: str = "feature_clusters") -> list[Path]:
    """Against class rank: the spread of each class's test features divided by the distance to the nearest
    other class centre, and the mean feature norm; one line per group, +- one sd over seeds."""
    from matplotlib.ticker import MaxNLocator

    series = []
    for g in groups:
        data = [_features_json(r.path) for r in g.runs]
        counts = data[0].get("train_counts") or g.runs[0].train_counts
        if not counts:
            raise DataError(f"{g.runs[0].path}: neither features.json nor eval.json has train_counts")
        series.append((data, [int(c) for c in counts]))
    with _style():
        fig = _figure(7.0, 3.2)
        axes = fig.subplots(1, 2)
        panels = (("spread_ratio", "spread / distance to nearest other centre"), ("mean_norm", "mean feature norm"))
        for (data, counts), label, (color, ls) in zip(series, group_labels(groups), _group_styles(groups)):
            order = rank_order(counts)
            for ax, (key, _) in zip(axes, panels):
                values = [d["per_class"].get(key) or [None] * len(counts) for d in data]
                ms = [mean([v[c] for v in values]) for c in order]
                sds = [sample_sd([v[c] for v in values]) for c in order]
                xs = [i + 1 for i, m in enumerate(ms) if m is not None]
                ys = [m for m in ms if m is not None]
                ss = [s or 0.0 for m, s in zip(ms, sds) if m is not None]
                ax.plot(xs, ys, linestyle=ls, color=color, marker="o", markersize=2.5,
                        label=label if key == "spread_ratio" else None)
                if len(data) > 1:
                    ax.fill_between(xs, [y - s for y, s in zip(ys, ss)], [y + s for y, s in zip(ys, ss)],
                                    color=color, alpha=0.18, linewidth=0)
        for ax, (_, ylabel) in zip(axes, panels):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("class rank (1 = most training images)")
            ax.set_ylabel(ylabel)
        axes[0].set_title("Cluster spread (lower: denser, better separated)")
        axes[1].set_title("Test feature norms")
        fig.legend(loc="outside lower center", ncols=min(2, len(groups)), frameon=False)
        return save_figure(fig, out_dir, stem)


# -------------------------------------------------------------------------------------- training curves


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl's epoch lines in epoch order (a line cut by a kill is skipped; a re-logged epoch keeps
    its last line)."""
    path = Path(run_dir) / "metrics.jsonl"
    text = read_input_text(path, "training log (metrics.jsonl)")
    by_epoch: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            by_epoch[record["epoch"]] = record
    if not by_epoch:
        raise DataError(f"{path}: no epoch lines yet")
    return [by_epoch[e] for e in sorted(by_epoch)]


def _run_labels(run_dirs: Sequence[Path]) -> list[str]:
    names = [Path(r).name for r in run_dirs]
    return [n if names.count(n) == 1 else str(r) for n, r in zip(names, run_dirs)]


def _series(rows: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pts = [(r["epoch"], float(r[key])) for r in rows if isinstance(r.get(key), int | float) and
           not isinstance(r.get(key), bool) and math.isfinite(r[key])]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_training_curves(run_dirs: Sequence[Path], out_dir: Path, stem: str = "training_curves") -> list[Path]:
    """Training loss, train / test (/ validation) top-1 and the learning rate against epoch, one colour a run."""
    from matplotlib.lines import Line2D

    logs = [read_metrics(r) for r in run_dirs]
    with _style():
        fig = _figure(7.0, 2.8)
        ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
        styles = {"train_acc": "--", "test_top1": "-", "val_top1": ":"}
        positive_lr = True
        for rows, label, color in zip(logs, _run_labels(run_dirs), _colors(len(logs))):
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


# ------------------------------------------------------------------------------------- confusion matrix


def read_confusion_csv(path: Path) -> tuple[list[str], np.ndarray]:
    """confusion.csv as written by `fcc eval`: header 'true\\pred,names...', one row of counts per class."""
    import csv

    text = read_input_text(path, "confusion matrix (`fcc eval RUN` writes it)")
    rows = list(csv.reader(text.splitlines()))
    if len(rows) < 2 or not rows[0] or rows[0][0] != "true\\pred":
        raise DataError(f"{path}: not a confusion matrix of fcc (expected a header 'true\\pred,...')")
    names = rows[0][1:]
    body = rows[1:]
    if len(body) != len(names) or any(len(r) != len(names) + 1 for r in body):
        raise DataError(f"{path}: expected {len(names)} rows of {len(names)} counts, one per class")
    try:
        counts = np.array([[int(v) for v in r[1:]] for r in body], dtype=np.int64)
    except ValueError as err:
        raise DataError(f"{path}: a count is not an integer ({err})") from None
    return names, counts


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
            labels.append(f"ranks {start}-{start + len(m) - 1} ({train_counts[m[0]]}-{train_counts[m[-1]]})")
            start += len(m)
    with _style():
        side = min(3.2 + 0.22 * k, 10.0)
        fig = _figure(side + 1.0, side)
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
    names, counts = read_confusion_csv(run_dir / "confusion.csv")
    try:
        result = json.loads(read_input_text(run_dir / eval_file, "evaluation result (`fcc eval RUN` writes it)"))
    except json.JSONDecodeError as err:
        raise DataError(f"{run_dir / eval_file}: not valid JSON ({err.msg})") from None
    train_counts = result.get("train_counts") if isinstance(result, dict) else None
    if not isinstance(train_counts, list) or len(train_counts) != len(names):
        raise DataError(f"{run_dir / eval_file}: no train_counts for the {len(names)} classes of confusion.csv")
    return plot_confusion_ranked(counts, names, [int(c) for c in train_counts], out_dir, blocks=blocks)


# ----------------------------------------------------------------------------------- feature projection


def load_features(run_dir: Path) -> dict[str, np.ndarray]:
    """features.npz of `fcc eval RUN --features`: features (N, D), labels (N,), train_counts (C,), class_names."""
    import io

    path = Path(run_dir) / "features.npz"
    raw = read_input(path, "test features (`fcc eval RUN --features` writes them)")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz of plain arrays ({err})") from None
    missing = [k for k in ("features", "labels", "train_counts") if k not in data]
    if missing:
        raise DataError(f"{path}: missing array(s) {', '.join(missing)}")
    feats, labels, counts = data["features"], data["labels"], data["train_counts"]
    if feats.ndim != 2 or labels.shape != (feats.shape[0],) or counts.ndim != 1:
        raise DataError(f"{path}: expected features (N, D), labels (N,), train_counts (C,); got "
                        f"{feats.shape}, {labels.shape}, {counts.shape}")
    if feats.shape[0] < 3 or labels.min() < 0 or labels.max() >= counts.shape[0]:
        raise DataError(f"{path}: needs at least 3 samples with labels in 0..{counts.shape[0] - 1}")
    names = data.get("class_names")
    data["class_names"] = np.array([str(n) for n in names] if names is not None and len(names) == len(counts)
                                   else [str(c) for c in range(len(counts))])
    return data


def pca_2d(features: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first two principal components (fitted on all features, returned for ``rows``) and the fraction
    of variance each explains; the sign of each axis is fixed (its largest loading positive)."""
    x = features.astype(np.float64)
    centre = x.mean(axis=0)
    cov = np.cov(x - centre, rowvar=False).reshape(x.shape[1], x.shape[1])
    values, vectors = np.linalg.eigh(cov)
    top = np.argsort(values)[::-1][:2]
    axes = vectors[:, top]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), range(axes.shape[1])])
    if axes.shape[1] < 2:  # one-dimensional features: a zero second axis
        axes = np.concatenate([axes, np.zeros_like(axes)], axis=1)
    chosen = x if rows is None else x[rows]
    total = values.sum()
    explained = values[top] / total if total > 0 else np.zeros(len(top))
    return (chosen - centre) @ axes, np.pad(explained, (0, 2 - len(explained)))


def project(features: np.ndarray, rows: np.ndarray, method: str, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """2-D coordinates of ``features[rows]`` and the two axis labels."""
    if method == "pca":
        coords, explained = pca_2d(features, rows)
        return coords, [f"PC{i + 1} ({100 * e:.0f}% of variance)" for i, e in enumerate(explained)]
    x = features[rows].astype(np.float64)
    if x.shape[1] > 50:  # the usual first step: t-SNE and UMAP on the top 50 principal components
        x = _pca_k(x, 50)
    if method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise ConfigError("--projection tsne needs scikit-learn, which is not installed "
                              "(pip install scikit-learn); --projection pca needs nothing more") from None
        perplexity = max(1.0, min(30.0, (len(x) - 1) / 3.0))
        coords = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(x)
        return np.asarray(coords), ["t-SNE 1", "t-SNE 2"]
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise ConfigError("--projection umap needs umap-learn, which is not installed "
                              "(pip install umap-learn); --projection pca needs nothing more") from None
        coords = umap.UMAP(n_components=2, random_state=seed, n_neighbors=min(15, len(x) - 1)).fit_transform(x)
        return np.asarray(coords), ["UMAP 1", "UMAP 2"]
    raise ConfigError(f"--projection: expected one of {', '.join(PROJECTIONS)}, got {method!r}")


def _pca_k(x: np.ndarray, k: int) -> np.ndarray:
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:k].T


def _run_title(run_dir: Path, label: str) -> str:
    from fcc_lt.experiments.report import fcc_label, method_label

    cfg = read_config(run_dir)
    if cfg is None:
        return label
    fcc = fcc_label(cfg)
    method = method_label(cfg, run_dir) + ("" if fcc == "-" else f" + {fcc}")
    return method if method == label else f"{label}\n{method}"


def plot_feature_projection(run_dirs: Sequence[Path], out_dir: Path, projection: str = "pca",
                            max_points: int = 5000, seed: int = 0, stem: str | None = None) -> list[Path]:
    """Side by side, one panel a run: a 2-D projection of its test features coloured by class rank, each
    class centre marked by its shot group (head: many-shot, tail: few-shot)."""
    from matplotlib.lines import Line2D

    if projection not in PROJECTIONS:
        raise ConfigError(f"--projection: expected one of {', '.join(PROJECTIONS)}, got {projection!r}")
    if max_points < 3:
        raise ConfigError(f"--max-points: expected at least 3, got {max_points}")
    loaded = [load_features(r) for r in run_dirs]
    panels = []
    for run_dir, data in zip(run_dirs, loaded):
        n = data["features"].shape[0]
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)
        coords, axis_labels = project(data["features"], rows, projection, seed)
        panels.append((run_dir, data, rows, coords, axis_labels))
    thresholds = []
    for r in run_dirs:
        ev = (read_config(r) or {}).get("eval") or {}
        thresholds.append((int(ev.get("many_shot_min", 101)), int(ev.get("few_shot_max", 19))))
    markers = {"many": ("o", "head: many-shot"), "medium": ("s", "medium-shot"), "few": ("^", "tail: few-shot")}
    with _style():
        import matplotlib

        fig = _figure(3.4 * len(panels) + 0.8, 3.8)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        used_groups: set[str] = set()
        num_classes = max(len(p[1]["train_counts"]) for p in panels)
        categorical = num_classes <= 20
        cmap = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20" if categorical else "viridis"]
        for ax, (run_dir, data, rows, coords, axis_labels), label, (many_min, few_max) in zip(
                axes, panels, _run_labels(run_dirs), thresholds):
            counts = [int(c) for c in data["train_counts"]]
            rank = np.empty(len(counts), dtype=np.int64)
            rank[rank_order(counts)] = np.arange(len(counts))
            labels = data["labels"][rows].astype(np.int64)
            shade = rank[labels] if categorical else rank[labels] / max(len(counts) - 1, 1)
            ax.scatter(coords[:, 0], coords[:, 1], c=[cmap(s) for s in shade], s=3, alpha=0.45, linewidths=0,
                       rasterized=True)
            groups = shot_groups(counts, many_min, few_max)
            for group, members in groups.items():
                for c in members:
                    mask = labels == c
                    if not mask.any():
                        continue
                    centre = coords[mask].mean(axis=0)
                    color = cmap(rank[c] if categorical else rank[c] / max(len(counts) - 1, 1))
                    ax.scatter([centre[0]], [centre[1]], marker=markers[group][0], s=55, color=color,
                               edgecolors="black", linewidths=0.8, zorder=3)
                    used_groups.add(group)
                    if len(counts) <= 20:
                        ax.annotate(str(data["class_names"][c]), centre, xytext=(4, 4), textcoords="offset points",
                                    fontsize=6)
            ax.set_xlabel(axis_labels[0])
            ax.set_ylabel(axis_labels[1])
            ax.set_title(_run_title(run_dir, label), fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        handles = [Line2D([], [], linestyle="", marker=markers[g][0], markerfacecolor="white",
                          markeredgecolor="black", label=f"{markers[g][1]} class centre")
                   for g in ("many", "medium", "few") if g in used_groups]
        if not categorical:
            from matplotlib.cm import ScalarMappable
            from matplotlib.colors import Normalize

            fig.colorbar(ScalarMappable(Normalize(1, num_classes), cmap), ax=list(axes), shrink=0.8,
                         label="class rank (1 = most training images)")
        else:
            handles.append(Line2D([], [], linestyle="", marker="o", markersize=3, color="0.5",
                                  label="test sample (colour: class)"))
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
        return save_figure(fig, out_dir, stem or f"feature_projection_{projection}")


# ------------------------------------------------------------------------------------ from run folders


def plot_report(report: Report, out_dir: Path) -> list[Path]:
    """The group figures of a report: per-class accuracy, and the feature clusters when every run of some
    group has a features.json with per-class statistics."""
    written: list[Path] = []
    if any(all(r.per_class is not None and r.train_counts is not None for r in g.runs) for g in report.groups):
        written += plot_per_class(report.groups, out_dir)
    with_features = [g for g in report.groups if all(_has_cluster_stats(r.path) for r in g.runs)]
    if with_features:
        written += plot_feature_clusters(with_features, out_dir)
    return written


def _has_cluster_stats(run_dir: Path) -> bool:
    try:
        _features_json(run_dir)
    except DataError:
        return False
    return True


def _why_left_out(run: ReportRun) -> str:
    """A run's state with what it lacks (e.g. 'failed (no eval_best.json)'), or 'duplicate'."""
    if run.duplicate_of is not None:
        return f"duplicate of {run.duplicate_of}"
    return f"{run.state} ({run.detail})" if run.detail else run.state


def grouped_plot(kind: str, paths: Sequence[str | Path], out_dir: Path, group_by: str | None = None,
                 eval_file: str = "eval.json") -> tuple[list[Path], list[str]]:
    """`fcc plot per-class|clusters DIR...`: the figure and one line for each run left out (unfinished)."""
    from fcc_lt.experiments.report import build_report

    report = build_report(paths, group_by, eval_file)
    skipped = [f"{r.path}: {_why_left_out(r)}, not plotted" for r in report.runs if not r.counted]
    if not report.groups:
        raise DataError("no finished runs to plot (" + "; ".join(skipped) + ")")
    draw: Callable[[Sequence[Group], Path], list[Path]] = plot_per_class if kind == "per-class" \
        else plot_feature_clusters
    return draw(report.groups, out_dir), skipped


def curves_plot(paths: Sequence[str | Path], out_dir: Path) -> tuple[list[Path], list[str]]:
    """`fcc plot curves DIR...`: every run with epoch lines (running and stopped ones too); one line for each
    run left out."""
    from fcc_lt.experiments.report import find_run_dirs

    runs, skipped = [], []
    for run in find_run_dirs(paths):
        try:
            read_metrics(run)
            runs.append(run)
        except DataError as err:
            skipped.append(f"{err}, not plotted")
    if not runs:
        raise DataError("no run with epoch lines in metrics.jsonl (" + "; ".join(skipped) + ")")
    return plot_training_curves(runs, out_dir), skipped
