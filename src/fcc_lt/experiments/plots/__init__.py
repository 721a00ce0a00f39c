"""Figures for papers from run directories, each written as PNG and PDF, one module per family:

- ``groups``: per-class accuracy against training count and feature-cluster statistics against class rank,
  one line per report group (seeds as bands);
- ``curves``: training curves from metrics.jsonl;
- ``confusion``: the ranked confusion matrix of one run;
- ``features``: 2-D projections of test features (PCA; t-SNE / UMAP when installed);
- ``style``: what they share (paper style, figure and canvas, saving, colours, rank order).

Every figure is built on its own ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot, no global
backend switch), in paper-sized inches with readable fonts. Classes are always in rank order: by
training count, largest first, ties by class index (the order FCC ranks them in).
"""

from fcc_lt.experiments.plots.confusion import block_confusion, plot_confusion_ranked, plot_confusion_run
from fcc_lt.experiments.plots.curves import curves_plot, plot_training_curves
from fcc_lt.experiments.plots.features import pca_2d, plot_feature_projection, project
from fcc_lt.experiments.plots.groups import (
    count_curve,
    group_labels,
    group_styles,
    grouped_plot,
    plot_feature_clusters,
    plot_per_class,
    plot_report,
)
from fcc_lt.experiments.plots.style import rank_order, run_labels, save_figure

__all__ = ["block_confusion", "count_curve", "curves_plot", "group_labels", "group_styles", "grouped_plot", "pca_2d",
           "plot_confusion_ranked", "plot_confusion_run", "plot_feature_clusters", "plot_feature_projection",
           "plot_per_class", "plot_report", "plot_training_curves", "project", "rank_order", "run_labels",
           "save_figure"]
