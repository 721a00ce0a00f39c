"""2-D projections of test features (features.npz): PCA with numpy, t-SNE / UMAP when installed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fcc_lt.evaluation.metrics import shot_groups
from fcc_lt.experiments.plots.style import new_figure, paper_style, rank_order, run_labels, save_figure
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


def _run_title(run_dir: Path, label: str) -> str:
    from fcc_lt.experiments.report import fcc_label, method_label

    cfg = config_or_none(run_dir)
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
    markers = {"many": ("o", "head: many-shot"), "medium": ("s", "medium-shot"), "few": ("^", "tail: few-shot")}
    with paper_style():
        import matplotlib

        fig = new_figure(3.4 * len(panels) + 0.8, 3.8)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        used_groups: set[str] = set()
        num_classes = max(len(p[1]["train_counts"]) for p in panels)
        categorical = num_classes <= 20
        cmap = matplotlib.colormaps["tab10" if num_classes <= 10 else "tab20" if categorical else "viridis"]
        for ax, (run_dir, data, rows, coords, axis_labels), label, (many_min, few_max) in zip(
                axes, panels, run_labels(run_dirs), thresholds):
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

