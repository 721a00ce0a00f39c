"""2-D projections of test features (features.npz): PCA with numpy, t-SNE / UMAP when installed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fcc_lt.evaluation.metrics import shot_groups
from fcc_lt.experiments.plots.style import (
    MAX_WIDTH,
    MIN_WIDTH,
    legend_below,
    legend_height,
    new_figure,
    paper_style,
    rank_order,
    run_labels,
    save_figure,
)
from fcc_lt.experiments.run_folder import config_or_none, read_features_npz
from fcc_lt.util.errors import ConfigError

PROJECTIONS = ("pca", "tsne", "umap")


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


def _run_title(run_dir: Path, label: str, chars: int) -> str:
    """The panel's title: the folder name and the method as the report names it, wrapped to the panel."""
    import textwrap

    from fcc_lt.experiments.report.collect import fcc_chain_label, method_label

    cfg = config_or_none(run_dir)
    if cfg is None:
        return textwrap.fill(label, chars)
    fcc = fcc_chain_label(cfg, Path(run_dir))
    method = method_label(cfg, Path(run_dir)) + ("" if fcc == "-" else f" + {fcc}")
    text = method if method == label else f"{label}: {method}"
    return textwrap.fill(text, chars)


MARKERS = {"many": ("o", "many-shot (head) class centre"), "medium": ("s", "medium-shot class centre"),
           "few": ("^", "few-shot (tail) class centre")}
MAX_NAMED_CLASSES = 20  # up to this many classes, each has its colour and its name in a legend


def plot_feature_projection(run_dirs: Sequence[Path], out_dir: Path, projection: str = "pca",
                            max_points: int = 5000, seed: int = 0, stem: str | None = None) -> list[Path]:
    """One panel a run (two per row): a 2-D projection of its test features coloured by class, each class
    centre marked by its shot group. Up to 20 classes a legend beside the panels names each colour (class and
    training count, in rank order), so no label sits on the data or on another label; above, a colour scale
    by class rank. The marker key is under the panels."""
    import math

    from matplotlib.lines import Line2D

    if projection not in PROJECTIONS:
        raise ConfigError(f"--projection: expected one of {', '.join(PROJECTIONS)}, got {projection!r}")
    if max_points < 3:
        raise ConfigError(f"--max-points: expected at least 3, got {max_points}")
    loaded = [read_features_npz(r) for r in run_dirs]
    panels = []
    for run_dir, data in zip(run_dirs, loaded):
        n = data["features"].shape[0]
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(n, max_points, replace=False)) if n > max_points else np.arange(n)
        coords, axis_labels = project(data["features"], rows, projection, seed)
        panels.append((run_dir, data, rows, coords, axis_labels))
    thresholds = []
    for r in run_dirs:
        ev = (config_or_none(r) or {}).get("eval") or {}
        thresholds.append((int(ev.get("many_shot_min", 101)), int(ev.get("few_shot_max", 19))))
    num_classes = max(len(p[1]["train_counts"]) for p in panels)
    categorical = num_classes <= MAX_NAMED_CLASSES
    ncols = min(len(panels), 2)
    nrows = math.ceil(len(panels) / ncols)
    width = MIN_WIDTH if len(panels) == 1 else MAX_WIDTH
    key_labels = [MARKERS[g][1] for g in ("many", "medium", "few")] + ["test sample"]
    with paper_style():
        import matplotlib

        fig = new_figure(width, 3.3 * nrows + legend_height(key_labels, width))
        axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        used_groups: set[str] = set()
        cmap = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20" if categorical else "viridis"]
        title_chars = int((width - (1.6 if categorical else 1.0)) / ncols / (0.6 * 8 / 72)) - 2
        for ax, (run_dir, data, rows, coords, axis_labels), label, (many_min, few_max) in zip(
                axes, panels, run_labels(run_dirs), thresholds):
            counts = [int(c) for c in data["train_counts"]]
            rank = np.empty(len(counts), dtype=np.int64)
            rank[rank_order(counts)] = np.arange(len(counts))
            labels = data["labels"][rows].astype(np.int64)
            shade = rank[labels] if categorical else rank[labels] / max(len(counts) - 1, 1)
            ax.scatter(coords[:, 0], coords[:, 1], c=[cmap(s) for s in shade], s=3, alpha=0.45, linewidths=0,
                       rasterized=True)
            for group, members in shot_groups(counts, many_min, few_max).items():
                for c in members:
                    mask = labels == c
                    if not mask.any():
                        continue
                    centre = coords[mask].mean(axis=0)
                    color = cmap(rank[c] if categorical else rank[c] / max(len(counts) - 1, 1))
                    ax.scatter([centre[0]], [centre[1]], marker=MARKERS[group][0], s=55, color=color,
                               edgecolors="black", linewidths=0.8, zorder=3)
                    used_groups.add(group)
            ax.set_xlabel(axis_labels[0])
            ax.set_ylabel(axis_labels[1])
            ax.set_title(_run_title(run_dir, label, max(20, title_chars)), fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        if categorical:  # a colour per class, named beside the panels (classes of the first run, in rank order)
            counts = [int(c) for c in panels[0][1]["train_counts"]]
            names = [str(n) for n in panels[0][1]["class_names"]]
            entries = [Line2D([], [], linestyle="", marker="o", markersize=5, color=cmap(r))
                       for r in range(len(counts))]
            texts = [f"{names[c][:24]} ({counts[c]})" for c in rank_order(counts)]
            fig.legend(entries, texts, loc="outside right upper", frameon=False, title="class (training images)",
                       title_fontsize=7, ncols=1)
        else:
            from matplotlib.cm import ScalarMappable
            from matplotlib.colors import Normalize

            fig.colorbar(ScalarMappable(Normalize(1, num_classes), cmap), ax=list(axes[:len(panels)]), shrink=0.8,
                         label="class rank (1 = most training images)")
        handles = [Line2D([], [], linestyle="", marker=MARKERS[g][0], markerfacecolor="white",
                          markeredgecolor="black") for g in ("many", "medium", "few") if g in used_groups]
        shown = [MARKERS[g][1] for g in ("many", "medium", "few") if g in used_groups]
        handles.append(Line2D([], [], linestyle="", marker="o", markersize=3, color="0.5"))
        shown.append("test sample (colour: its class)")
        legend_below(fig, handles, shown, width)
        return save_figure(fig, out_dir, stem or f"feature_projection_{projection}")
