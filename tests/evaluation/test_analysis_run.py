"""`fcc analyze` end to end on tiny trained runs: each number of analysis.json is re-derived here from the run's
network and the split it belongs to, so reading the wrong split, dropping the bias or taking tau by class
index instead of rank all fail a test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.data.augment import Normalize
from fcc_lt.data.build import build_splits
from fcc_lt.engine.step import TrainingForward
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation import analyses as A
from fcc_lt.evaluation.run_loader import load_run, load_run_config
from fcc_lt.methods.fcc import FeatureClusterCompression
from image_fixtures import write_folder, write_json, write_json_dataset

ONE_EPOCH = ("train.epochs=1", "train.milestones=[]")


@pytest.fixture(scope="module")
def fcc_run(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CIFAR-10-LT fixture, FCC from epoch 1, 5 validation images per class held out."""
    out = tmp_path_factory.mktemp("analysis") / "fcc"
    cfg = load_config(None, tiny_run_overrides(cifar10_root, out, *ONE_EPOCH, "data.val_per_class=5",
                                               "fcc.enabled=true", "fcc.gamma=0.5"))
    Trainer(cfg).fit()
    assert main(["analyze", str(out)]) == 0
    return out


def _analysis(run: Path) -> dict:
    return json.loads((run / "analysis.json").read_text())


def _independent(run: Path) -> dict[str, torch.Tensor]:
    """Features and logits of each split computed here: the run's network on the split's normalised images."""
    cfg = load_run_config(run)
    splits = build_splits(cfg)
    network = load_run(run, device="cpu").network.eval()
    norm = Normalize(splits.mean, splits.std)
    out: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name in ("train", "val", "test"):
            ds = splits.split(name)
            f = network.features(norm(ds.images)).double()
            out[f"{name}_f"], out[f"{name}_y"] = f, ds.labels
            out[f"{name}_z"] = network(norm(ds.images)).double()
    out["bias"] = network.head.fc.bias.detach().double()
    return out


def _class_norms(f: torch.Tensor, y: torch.Tensor, c: int) -> list[float]:
    return [f[y == k].norm(dim=1).mean().item() for k in range(c)]


def test_what_fcc_analyze_writes_passes_the_report_s_schema(fcc_run: Path) -> None:
    from fcc_lt.experiments.run_folder import read_analysis

    data = read_analysis(fcc_run)  # raises RunFileError naming the field if the writer and the reader disagree
    assert data["scale_sweep"]["zero_bias_invariant"] is True and "skipped" not in data["logit_adjustment"]


def test_norms_come_from_the_test_and_training_splits(fcc_run: Path) -> None:
    a, ind = _analysis(fcc_run), _independent(fcc_run)
    c = len(a["train_counts"])
    assert a["samples"] == {"test": len(ind["test_y"]), "train": len(ind["train_y"]), "val": len(ind["val_y"])}
    assert a["norm_ratio"]["test_norm"] == pytest.approx(_class_norms(ind["test_f"], ind["test_y"], c), rel=1e-5)
    assert a["norm_ratio"]["train_norm"] == pytest.approx(_class_norms(ind["train_f"], ind["train_y"], c), rel=1e-5)
    tau = [1.5 - 0.05 * k for k in range(c)]  # CIFAR-LT: class k has rank k
    expected = [t * tr / te for t, tr, te in zip(tau, a["norm_ratio"]["train_norm"], a["norm_ratio"]["test_norm"])]
    assert a["norm_ratio"]["per_class"] == pytest.approx(expected)


def test_margins_and_accuracies_match_the_full_forward_with_its_bias(fcc_run: Path) -> None:
    a, ind = _analysis(fcc_run), _independent(fcc_run)
    z, y = ind["test_z"].numpy(), ind["test_y"].numpy()
    assert ind["bias"].abs().max() > 0.05  # a bias large enough to matter
    true = z[np.arange(len(y)), y]
    rivals = z.copy()
    rivals[np.arange(len(y)), y] = -np.inf
    margin = true - rivals.max(1)
    m = a["margins"]["logit"]
    assert m["all"]["median"] == pytest.approx(np.median(margin), abs=1e-4)
    assert m["all"]["p10"] == pytest.approx(np.percentile(margin, 10), abs=1e-4)
    assert m["all"]["pct_negative"] == pytest.approx(100.0 * (margin < 0).mean())
    for k in range(len(a["train_counts"])):
        assert m["per_class"]["median"][k] == pytest.approx(np.median(margin[y == k]), abs=1e-4)
    eval_json = json.loads((fcc_run / "eval.json").read_text())  # the trainer's own final evaluation
    assert a["oracle_factor"]["unscaled"]["top1"] == pytest.approx(eval_json["top1"])
    assert a["oracle_factor"]["unscaled"]["per_class"] == pytest.approx(eval_json["per_class"])
    sweep = a["scale_sweep"]
    assert sweep["with_bias"]["top1"][sweep["scales"].index(1.0)] == pytest.approx(eval_json["top1"])
    no_bias = (z - ind["bias"].numpy()).argmax(1)
    assert sweep["zero_bias"]["top1"] == pytest.approx([100.0 * (no_bias == y).mean()] * len(sweep["scales"]))


def test_oracle_factor_is_the_training_forward_on_the_test_images(fcc_run: Path) -> None:
    a, ind = _analysis(fcc_run), _independent(fcc_run)
    run = load_run(fcc_run, device="cpu")
    cfg, splits = load_run_config(fcc_run), build_splits(load_run_config(fcc_run))
    fcc = FeatureClusterCompression(run.stats.train_counts, cfg.fcc.gamma, cfg.fcc.start_epoch, cfg.fcc.rank_by)
    with torch.no_grad():
        logits, _ = TrainingForward(run.network)(Normalize(splits.mean, splits.std)(splits.test.images),
                                                 factors=fcc.factors(ind["test_y"], epoch=1))
    hits = (logits.argmax(1) == ind["test_y"]).double()
    assert a["oracle_factor"]["oracle"]["top1"] == pytest.approx(100.0 * hits.mean().item())


def test_logit_adjustment_is_chosen_on_the_validation_split(fcc_run: Path) -> None:
    a, ind = _analysis(fcc_run), _independent(fcc_run)
    la = a["logit_adjustment"]
    counts = np.asarray(a["train_counts"], dtype=np.float64)
    prior = np.log(counts / counts.sum())
    z, y = ind["val_z"].numpy(), ind["val_y"].numpy()
    expected = [100.0 * ((z - t * prior).argmax(1) == y).mean() for t in A.ADJUSTMENTS]
    assert la["val_top1"] == pytest.approx(expected)
    best = la["best_t"]
    assert best == A.ADJUSTMENTS[int(np.argmax(expected))]
    zt, yt = ind["test_z"].numpy(), ind["test_y"].numpy()
    assert la["test"]["top1"] == pytest.approx(100.0 * ((zt - best * prior).argmax(1) == yt).mean())


def test_tau_is_taken_by_rank_on_a_dataset_whose_classes_are_not_in_count_order(tmp_path: Path) -> None:
    root = tmp_path / "data"
    train_json, test_json = write_json_dataset(root, [6, 24, 12], test_per_class=2)
    val_json = write_json(root / "val.json", [(f"val/{p}", y) for p, y in write_folder(root / "val", [2, 2, 2],
                                                                                         seed=3)], 3)
    out = tmp_path / "run"
    cfg = load_config(None, tiny_run_overrides(tmp_path, out, *ONE_EPOCH, "data.dataset=json",
                                               f"data.train_json={train_json}", f"data.test_json={test_json}",
                                               f"data.val_json={val_json}", "data.image_size=32",
                                               "fcc.enabled=true", "fcc.gamma=0.6"))
    Trainer(cfg).fit()
    assert main(["analyze", str(out)]) == 0
    a = _analysis(out)
    # ranks by count: class 1 (24) first, class 2 (12), class 0 (6): tau 1.6, 1.4, 1.2
    assert a["norm_ratio"]["tau"] == pytest.approx([1.2, 1.6, 1.4], abs=1e-6)
    ratio = a["norm_ratio"]
    assert ratio["per_class"] == pytest.approx([t * tr / te for t, tr, te in
                                                zip([1.2, 1.6, 1.4], ratio["train_norm"], ratio["test_norm"])])
    assert a["logit_adjustment"]["best_t"] in A.ADJUSTMENTS and a["samples"]["val"] == 6


def test_a_run_without_a_validation_split_is_analysed_without_logit_adjustment(
        cifar10_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ce"
    Trainer(load_config(None, tiny_run_overrides(cifar10_root, out, *ONE_EPOCH))).fit()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert main(["analyze", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "logit adjustment refused" in err and "was trained without a validation split" in err
    a = _analysis(out)
    assert "skipped" in a["logit_adjustment"] and a["fcc"]["enabled"] is False
    assert a["norm_ratio"]["tau"] == [1.0] * 10 and a["oracle_factor"]["difference"]["top1"] == 0.0
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "analysis.json"}
    assert after == before  # eval.json and the rest are untouched
    assert all(math.isfinite(v) for v in a["scale_sweep"]["with_bias"]["top1"])
    from fcc_lt.experiments.run_folder import read_analysis

    assert read_analysis(out)["logit_adjustment"]["skipped"].startswith("refused")


def test_bad_arguments_are_one_line_errors(fcc_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(tmp_path / "nope")]) == 2
    assert "no such directory" in capsys.readouterr().err
    assert main(["analyze", str(fcc_run), "data.val_per_class=7"]) == 2
    assert "differ from the run's own" in capsys.readouterr().err
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / "config.yaml").write_text((fcc_run / "config.yaml").read_text())
    assert main(["analyze", str(stopped)]) == 2
    err = capsys.readouterr().err
    assert "empty" in err and "nothing was analysed" in err
    assert main(["analyze", str(fcc_run), "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "error: fcc analyze: checkpoint not found" in capsys.readouterr().err  # the command that was run
