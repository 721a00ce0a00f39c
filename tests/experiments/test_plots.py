"""Figures from fabricated run directories: the numbers behind each plot by hand, and the files written
as valid PNG and PDF of the intended size."""

from __future__ import annotations

import json
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fcc_lt.cli.main import main
from fcc_lt.experiments import plots, run_folder
from fcc_lt.util.errors import ConfigError, DataError
from run_fixtures import features_json, make_run, write_confusion, write_features_npz


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG header, after checking the signature and the IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data.endswith(b"IEND\xaeB`\x82")
    return struct.unpack(">II", data[16:24])


def assert_pdf(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-32:] and len(data) > 1000


def assert_figure(paths: list[Path], stem: str, width: float) -> None:
    """PNG and PDF written, the PNG ``width`` inches wide at 200 dpi (a paper's 6 to 7.6 inches) and of a
    height that depends on its legend."""
    assert [p.name for p in paths] == [f"{stem}.png", f"{stem}.pdf"]
    size = png_size(paths[0])
    assert size[0] == round(width * 200) and 2.5 * 200 <= size[1] <= 8 * 200, size
    assert_pdf(paths[1])


def test_rank_order_largest_first_ties_by_index() -> None:
    assert plots.rank_order([10, 40, 30, 40, 5]) == [1, 3, 2, 0, 4]


def test_count_curve_averages_equal_counts_then_seeds() -> None:
    runs = [[90.0, 60.0, 50.0, 30.0], [80.0, 70.0, 40.0, 20.0]]
    xs, means, sds = plots.count_curve(runs, [500, 50, 50, 5])
    assert xs == pytest.approx([5, 50, 500])
    # count 50: classes 1 and 2 -> 55 in both runs; count 5: 30, 20; count 500: 90, 80
    assert means == pytest.approx([25.0, 55.0, 85.0])
    assert sds == pytest.approx([50 ** 0.5, 0.0, 50 ** 0.5])
    # a missing class is left out of its count's mean
    xs, means, _ = plots.count_curve([[None, 60.0, 40.0, 10.0]], [500, 50, 50, 5])
    assert means == pytest.approx([10.0, 50.0]) and xs == pytest.approx([5, 50])


def test_count_curve_bins_many_distinct_counts() -> None:
    counts = list(range(1, 101))
    xs, means, _ = plots.count_curve([[float(c) for c in counts]], counts, max_points=4)
    edges = np.geomspace(1, 100, 5)
    assert len(xs) == 4
    for x, m, lo, hi in zip(xs, means, edges[:-1], edges[1:]):
        members = [c for c in counts if lo <= c < hi or (hi == 100 and c == 100)]
        assert m == pytest.approx(np.mean(members))
        assert x == pytest.approx(np.exp(np.mean(np.log(members))))


def test_block_confusion_by_hand() -> None:
    counts = [10, 40, 30, 20]  # rank order 1, 2, 3, 0
    m = np.array([[5, 1, 0, 4], [2, 6, 2, 0], [0, 0, 9, 1], [1, 1, 1, 7]])
    rates, members = plots.block_confusion(m, counts)
    assert members == [[1], [2], [3], [0]]
    assert rates[0].tolist() == pytest.approx([6 / 10, 2 / 10, 0, 2 / 10])  # true class 1, columns 1, 2, 3, 0
    assert rates[3].tolist() == pytest.approx([1 / 10, 0, 4 / 10, 5 / 10])
    rates, members = plots.block_confusion(m, counts, blocks=2)
    assert members == [[1, 2], [3, 0]]
    # block {1, 2}: rows 1 and 2 -> columns {1, 2}: 6 + 2 + 0 + 9 = 17, columns {3, 0}: 0 + 2 + 1 + 0 = 3
    # block {3, 0}: rows 3 and 0 -> columns {1, 2}: 1 + 1 + 1 + 0 = 3, columns {3, 0}: 7 + 1 + 4 + 5 = 17
    assert rates.ravel().tolist() == pytest.approx([17 / 20, 3 / 20, 3 / 20, 17 / 20])
    big = np.random.default_rng(0).integers(0, 5, size=(40, 40))
    rates, members = plots.block_confusion(big, list(range(40, 0, -1)))
    assert rates.shape == (20, 20) and [len(b) for b in members] == [2] * 20
    assert rates.sum(axis=1) == pytest.approx(np.ones(20))
    with pytest.raises(ConfigError, match="--blocks"):
        plots.block_confusion(m, counts, blocks=0)


def seeded_runs(root: Path, with_features: bool = False) -> Path:
    counts = (500, 50, 5)
    for seed in range(3):
        extra = {"features": features_json([0.8 + 0.05 * seed, 1.0, 1.2], [5.0, 4.0, 3.0], counts)} \
            if with_features else {}
        make_run(root / f"ce_s{seed}", seed=seed, per_class=(90.0 + seed, 60.0, 30.0 + seed), **extra)
        extra = {"features": features_json([0.6, 0.7 + 0.05 * seed, 0.9], [4.0, 3.5, 3.0], counts)} \
            if with_features else {}
        make_run(root / f"fcc_s{seed}", seed=seed, fcc=True, per_class=(89.0, 63.0 + seed, 38.0), **extra)
    return root


def test_per_class_plot(tmp_path: Path) -> None:
    runs = seeded_runs(tmp_path / "runs")
    make_run(runs / "unfinished", seed=9, done_epochs=1)
    written, skipped = plots.grouped_plot("per-class", [runs], tmp_path / "out")
    assert_figure(written, "per_class_accuracy", 6.0)
    assert len(skipped) == 1 and skipped[0].startswith(f"{runs / 'unfinished'}: stopped (")
    assert skipped[0].endswith("), not plotted")
    # a run without the asked-for result file says which file it lacks, not only "failed"
    with pytest.raises(DataError, match=r"ce_s0: failed \(no eval_best\.json\), not plotted"):
        plots.grouped_plot("per-class", [runs / "ce_s0"], tmp_path / "out", eval_file="eval_best.json")
    from fcc_lt.experiments.report import build_report

    groups = build_report([runs]).groups
    labels = plots.group_labels(groups)
    assert labels == ["ce (n=3)", "ce + FCC(gamma 0.5, from epoch 1) (n=3)"]
    colours = plots.group_styles(groups)
    assert colours[0][0] == colours[1][0] and (colours[0][1], colours[1][1]) == ("--", "-")


def test_cluster_plot_and_report_dir(tmp_path: Path) -> None:
    runs = seeded_runs(tmp_path / "runs", with_features=True)
    written, _ = plots.grouped_plot("clusters", [runs], tmp_path / "out")
    assert_figure(written, "feature_clusters", 7.0)
    assert main(["report", str(runs), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "feature_clusters.pdf").is_file()
    assert (tmp_path / "rep" / "per_class_accuracy.png").is_file()
    # a features.json from before the spread ratio: a one-line error saying what to rerun
    old = runs / "ce_s0" / "features.json"
    old.write_text(json.dumps({"per_class": {"spread": [1, 2, 3]}}))
    with pytest.raises(DataError, match="no per-class spread_ratio; rerun `fcc eval"):
        plots.grouped_plot("clusters", [runs], tmp_path / "out")


def test_training_curves(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a", seed=0)
    b = make_run(tmp_path / "x" / "a", seed=1, epochs=6, done_epochs=3)  # still training: plotted too
    with open(b / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 4, "lr": 0.0')  # a line cut by a kill
    with open(a / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 5, "lr": 0.01, "train_loss": 0.3, "train_acc": 80.0, "val_top1": 70.0}) + "\n")
    rows = run_folder.read_metrics(b)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    empty = make_run(tmp_path / "empty", seed=2, done_epochs=0)
    written, skipped = plots.curves_plot([a, b, empty], tmp_path / "out")
    assert_figure(written, "training_curves", 7.0)
    assert len(skipped) == 1 and "no epoch lines" in skipped[0]
    assert plots.run_labels([a, b]) == [str(a), str(b)]  # the same folder name: shown by path
    with pytest.raises(DataError, match="no run with epoch lines"):
        plots.curves_plot([empty], tmp_path / "out")


def test_confusion_plot_small_and_blocked(tmp_path: Path) -> None:
    small = make_run(tmp_path / "small", seed=0, per_class=(80.0, 50.0, 20.0, 10.0),
                     train_counts=(10, 400, 30, 20), class_names=["cat", "dog", "emu", "fox"])
    write_confusion(small, np.array([[8, 2, 0, 0], [1, 5, 4, 0], [0, 0, 2, 8], [1, 0, 0, 1]]),
                    ["cat", "dog", "emu", "fox"])
    written = plots.plot_confusion_run(small, small)
    assert png_size(written[0]) == (6.0 * 200, 5.0 * 200) and written[0].parent == small  # 4 classes: 6 in wide
    assert_pdf(written[1])
    names = [f"c{i}" for i in range(45)]
    big = make_run(tmp_path / "big", seed=0, per_class=[50.0] * 45, train_counts=list(range(500, 50, -10)),
                   class_names=names)
    write_confusion(big, np.random.default_rng(1).integers(0, 9, size=(45, 45)), names)
    written = plots.plot_confusion_run(big, tmp_path / "out")
    assert png_size(written[0]) == (round(7.6 * 200), round(6.6 * 200))  # 23 blocks: the widest, 7.6 in
    names_read, counts = run_folder.read_confusion(big)
    assert names_read == names and counts.shape == (45, 45)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "confusion.csv").write_text("true\\pred,a,b\na,1,2\n")
    with pytest.raises(DataError, match="expected 2 rows of 2 counts"):
        run_folder.read_confusion(tmp_path / "bad")
    with pytest.raises(DataError, match=r"confusion.csv: confusion matrix .* not found"):
        plots.plot_confusion_run(tmp_path / "nothing", tmp_path / "out")


def test_pca_against_numpy_svd() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)) * np.array([5.0, 2.0, 1.0, 0.5, 0.2, 0.1]) + 3.0
    coords, explained = plots.pca_2d(x)
    centred = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    assert explained == pytest.approx(s[:2] ** 2 / (s ** 2).sum())
    assert np.abs(coords) == pytest.approx(np.abs(u[:, :2] * s[:2]), abs=1e-8)
    # the sign is fixed: the first axis points along the dominant input direction
    assert np.corrcoef(coords[:, 0], x[:, 0])[0, 1] > 0.9
    rows = np.array([3, 7, 11])
    assert plots.pca_2d(x, rows)[0] == pytest.approx(coords[rows])


def feature_runs(root: Path, num_classes: int = 4, dim: int = 8) -> list[Path]:
    rng = np.random.default_rng(3)
    counts = [int(500 * 0.5 ** c) for c in range(num_classes)]
    names = [f"k{c}" for c in range(num_classes)]
    runs = []
    for fcc, spread in ((False, 1.0), (True, 0.5)):
        run = make_run(root / ("fcc" if fcc else "ce"), seed=0, fcc=fcc, per_class=[50.0] * num_classes,
                       train_counts=counts, class_names=names)
        labels = np.repeat(np.arange(num_classes), 30)
        centres = rng.normal(size=(num_classes, dim)) * 4
        write_features_npz(run, centres[labels] + spread * rng.normal(size=(len(labels), dim)), labels, counts, names)
        runs.append(run)
    return runs


def test_feature_projection_pca(tmp_path: Path) -> None:
    runs = feature_runs(tmp_path)
    written = plots.plot_feature_projection(runs, tmp_path / "out", max_points=100)
    assert_figure(written, "feature_projection_pca", 7.6)
    many = feature_runs(tmp_path / "many", num_classes=25)  # a colour scale by rank instead of a legend
    assert_figure(plots.plot_feature_projection(many[:1], tmp_path / "out2"), "feature_projection_pca", 6.0)
    with pytest.raises(ConfigError, match="--max-points"):
        plots.plot_feature_projection(runs, tmp_path / "out", max_points=2)


def test_tsne_and_umap_only_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = feature_runs(tmp_path)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.manifold", None)
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(ConfigError, match=r"--projection tsne needs scikit-learn"):
        plots.plot_feature_projection(runs, tmp_path / "out", projection="tsne")
    with pytest.raises(ConfigError, match=r"--projection umap needs umap-learn"):
        plots.plot_feature_projection(runs, tmp_path / "out", projection="umap")
    # with a stand-in scikit-learn, t-SNE is called on the sampled rows and its coordinates are plotted
    calls = []

    class TSNE:
        def __init__(self, **kwargs: object) -> None:
            calls.append(kwargs)

        def fit_transform(self, x: np.ndarray) -> np.ndarray:
            calls.append(x.shape)
            return x[:, :2]

    manifold = types.ModuleType("sklearn.manifold")
    manifold.TSNE = TSNE  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sklearn", types.ModuleType("sklearn"))
    monkeypatch.setitem(sys.modules, "sklearn.manifold", manifold)
    written = plots.plot_feature_projection(runs[:1], tmp_path / "out", projection="tsne", max_points=50, seed=7)
    assert_figure(written, "feature_projection_tsne", 6.0)
    assert calls[0] == {"n_components": 2, "init": "pca", "random_state": 7, "perplexity": pytest.approx(49 / 3)}
    assert calls[1] == (50, 8)


def test_load_features_rejects_bad_files(tmp_path: Path) -> None:
    (run,) = feature_runs(tmp_path)[:1]
    data = dict(np.load(run / "features.npz"))
    np.savez(run / "features.npz", **{**data, "labels": data["labels"] + 10})
    with pytest.raises(DataError, match=r"labels in 0\.\.3"):
        run_folder.read_features_npz(run)
    np.savez(run / "features.npz", **{**data, "class_names": np.array(["a", 1, None, 2.0], dtype=object)})
    with pytest.raises(DataError, match=r"not a readable \.npz of plain arrays"):
        run_folder.read_features_npz(run)
    np.savez(run / "features.npz", features=data["features"])
    with pytest.raises(DataError, match="missing array"):
        run_folder.read_features_npz(run)
    (run / "features.npz").unlink()
    with pytest.raises(DataError, match=r"features.npz: test features .*fcc eval RUN --features"):
        run_folder.read_features_npz(run)


def test_plot_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = seeded_runs(tmp_path / "runs")
    assert main(["plot", "per-class", str(runs)]) == 0  # one folder named: the figures go there
    assert (runs / "per_class_accuracy.pdf").is_file()
    assert main(["plot", "curves", str(runs / "ce_s0"), "--out", str(tmp_path / "o")]) == 0
    assert "wrote" in capsys.readouterr().out and (tmp_path / "o" / "training_curves.png").is_file()
    fruns = feature_runs(tmp_path / "f")
    assert main(["plot", "features", *map(str, fruns), "--out", str(tmp_path / "o"), "--max-points", "60"]) == 0
    assert (tmp_path / "o" / "feature_projection_pca.png").is_file()
    capsys.readouterr()
    for args, message in (
            (["plot", "features", *map(str, fruns)], "--out DIR: needed when plotting several"),
            (["plot", "features", str(runs / "ce_s0")], "features.npz: test features"),
            (["plot", "confusion", str(runs / "ce_s0")], "confusion.csv: confusion matrix"),
            (["plot", "confusion", str(runs)], "expected one run directory, found 6"),
            (["plot", "per-class"], "name one or more run directories"),
            (["plot", "per-class", str(tmp_path / "missing")], "missing: no such directory"),
            (["plot", "clusters", str(runs)], "features.json: feature statistics")):
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1, (args, err)
