"""Every figure of `fcc plot` and `fcc report --out`, rendered from fixture runs, as a paper would take it:
6 to 7.6 inches wide, nothing outside the canvas (matplotlib's tight bounding box inside the figure), no
legend on an axes (legends sit beside or under the panels, never on data), no two texts of an axes on top
of each other; with and without FCC told apart by marker, not only by dash; training curves named by
method and seed, with integer epochs, the LR as steps and smoke runs left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_report_analyses import analysis_json, write_analysis

from fcc_lt.experiments import plots
from fcc_lt.experiments.plots import analyses, confusion, curves, features, groups
from fcc_lt.experiments.plots import style as plot_style
from run_fixtures import features_json, make_run, write_confusion, write_features_npz


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The Figure objects of every figure written, by file stem (the files are written as usual)."""
    figures: dict[str, Any] = {}
    real = plot_style.save_figure

    def keep(fig: Any, out_dir: Path, stem: str) -> list[Path]:
        figures[stem] = fig
        return real(fig, out_dir, stem)

    for module in (analyses, confusion, curves, features, groups):
        monkeypatch.setattr(module, "save_figure", keep)
    return figures


def check_geometry(fig: Any, stem: str) -> None:
    width, height = fig.get_size_inches()
    assert 6.0 <= width <= 7.6 + 1e-9, (stem, width)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    tight = fig.get_tightbbox(renderer)  # inches
    tolerance = 0.02
    assert (tight.x0 >= -tolerance and tight.y0 >= -tolerance and tight.x1 <= width + tolerance
            and tight.y1 <= height + tolerance), (stem, tight.bounds, (width, height))
    visible = [ax for ax in fig.axes if ax.get_visible()]
    for ax in visible:
        assert ax.get_legend() is None, f"{stem}: a legend on an axes covers its data"
        boxes = [t.get_window_extent(renderer) for t in ax.texts if t.get_visible() and t.get_text().strip()]
        for i, a in enumerate(boxes):
            for b in boxes[i + 1:]:
                assert not a.overlaps(b), f"{stem}: two labels on top of each other"
    for legend in fig.legends:
        box = legend.get_window_extent(renderer)
        for ax in visible:
            assert not box.overlaps(ax.get_window_extent(renderer)), f"{stem}: the legend overlaps an axes"


def marker_of(line: Any) -> tuple[str, str]:
    return str(line.get_marker()), str(line.get_markerfacecolor())


def test_every_figure_fits_a_page_and_nothing_falls_outside(tmp_path: Path, drawn: dict[str, Any]) -> None:
    counts = (500, 50, 5)
    runs = tmp_path / "runs"
    for seed in range(2):
        for fcc, ratios, top1 in ((False, [0.8 + 0.1 * seed, 1.0, 1.2], 70.0), (True, [0.6, 0.7, 0.9], 72.0)):
            run = make_run(runs / f"{'fcc' if fcc else 'ce'}_s{seed}", seed=seed, fcc=fcc, top1=top1 + seed,
                           per_class=(90.0 - seed, 60.0 + 4 * fcc, 30.0 + 6 * fcc), features=features_json(
                               ratios, [5.0 - fcc, 4.0, 3.0], counts))
            write_analysis(run, analysis_json(norm_ratio=1.0 + 0.2 * fcc))
    smoke = make_run(runs / "smoke", seed=5, overrides={"train.max_steps_per_epoch": 2})
    report_dir = tmp_path / "report"
    from fcc_lt.cli.main import main

    assert main(["report", str(runs), "--out", str(report_dir)]) == 0
    assert {"per_class_accuracy", "feature_clusters", "margins", "scale_sweep"} <= set(drawn)

    _, skipped = plots.curves_plot([runs], tmp_path / "curves")
    assert any(s.startswith(f"{smoke}: a smoke run") for s in skipped)  # left out with a note

    names = ["cat", "dog", "emu", "fox"]
    small = make_run(tmp_path / "small", seed=0, per_class=(80.0, 50.0, 20.0, 10.0), train_counts=(10, 400, 30, 20),
                     class_names=names)
    write_confusion(small, np.array([[8, 2, 0, 0], [1, 5, 4, 0], [0, 0, 2, 8], [1, 0, 0, 1]]), names)
    plots.plot_confusion_run(small, tmp_path / "conf")
    drawn["confusion_small"] = drawn.pop("confusion_ranked")
    many = [f"class_{i}" for i in range(45)]
    big = make_run(tmp_path / "big", seed=0, per_class=[50.0] * 45, train_counts=list(range(500, 50, -10)),
                   class_names=many)
    write_confusion(big, np.random.default_rng(1).integers(0, 9, size=(45, 45)), many)
    plots.plot_confusion_run(big, tmp_path / "conf_big")

    rng = np.random.default_rng(3)
    for classes in (4, 10, 25):
        cnt = [int(500 * 0.7 ** c) + 1 for c in range(classes)]
        cls = [f"class_{c}" for c in range(classes)]
        pair = []
        for fcc in (False, True):
            run = make_run(tmp_path / f"f{classes}" / ("fcc" if fcc else "ce"), seed=0, fcc=fcc,
                           per_class=[50.0] * classes, train_counts=cnt, class_names=cls)
            labels = np.repeat(np.arange(classes), 20)
            write_features_npz(run, rng.normal(size=(classes, 16))[labels] * 4 + rng.normal(size=(len(labels), 16)),
                               labels, cnt, cls)
            pair.append(run)
        plots.plot_feature_projection(pair[:1], tmp_path / f"one{classes}")
        drawn[f"projection_one_{classes}"] = drawn.pop("feature_projection_pca")
        plots.plot_feature_projection(pair, tmp_path / f"two{classes}")
        drawn[f"projection_two_{classes}"] = drawn.pop("feature_projection_pca")

    assert len(drawn) == 13
    for stem, fig in drawn.items():
        check_geometry(fig, stem)

    # per-class and cluster figures: with and without FCC of one method share a colour, and their legend
    # entries differ in marker (filled circle with FCC, hollow square without), not only in dash
    for stem in ("per_class_accuracy", "feature_clusters", "margins", "scale_sweep"):
        (legend,) = drawn[stem].legends
        entries = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles))
        with_fcc = next(h for t, h in entries.items() if "FCC" in t)
        without = next(h for t, h in entries.items() if "FCC" not in t)
        assert with_fcc.get_color() == without.get_color() and marker_of(with_fcc) != marker_of(without)

    # the scale sweep's b = 0 lines carry their group's marker, so that each belongs to a group
    zero_bias = [line for line in drawn["scale_sweep"].axes[0].get_lines() if line.get_linestyle() == ":"
                 and line.get_marker() not in ("None", "", None)]
    assert len({marker_of(line) for line in zero_bias}) == 2

    # training curves: entries named by method and seed, integer epochs, the LR drawn as steps
    fig = drawn["training_curves"]
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "ce + FCC(gamma 0.5, from epoch 1), seed 0" in texts and "ce, seed 1" in texts
    assert not any(t in ("ce_s0", "fcc_s0", "smoke") for t in texts)
    ax_loss, ax_acc, ax_lr = fig.axes
    for ax in (ax_loss, ax_acc, ax_lr):
        assert all(float(x).is_integer() for x in ax.get_xticks())
    assert {line.get_drawstyle() for line in ax_lr.get_lines()} == {"steps-mid"}

    # the projection names its classes beside the panels (up to 20), not on the data
    for stem in ("projection_one_10", "projection_two_4"):
        fig = drawn[stem]
        assert not any(ax.texts for ax in fig.axes)
        class_legend = next(leg for leg in fig.legends if leg.get_title().get_text())
        assert class_legend.get_texts()[0].get_text() == "class_0 (501)"


def test_fcc_in_this_stage_in_the_first_stage_only_and_nowhere_look_different() -> None:
    """cRT on an FCC backbone (FCC only in the stage it starts from) and cRT + FCC (FCC in its own stage too)
    are different experiments: they share the method's colour but not the dash and marker."""
    from types import SimpleNamespace

    from fcc_lt.experiments.plots.style import group_markers, group_styles

    def group(here: bool, chain: bool) -> Any:
        run = SimpleNamespace(fcc_here=here, fcc_on=here or chain, method_key=lambda: frozenset({("m", "crt")}))
        return SimpleNamespace(runs=[run])

    groups = [group(True, True), group(False, True), group(False, False)]
    styles = group_styles(groups)
    markers = group_markers(groups, [c for c, _ in styles])
    assert len({c for c, _ in styles}) == 1
    assert [ls for _, ls in styles] == ["-", "-.", "--"]
    assert len({(m["marker"], str(m["markerfacecolor"])) for m in markers}) == 3
