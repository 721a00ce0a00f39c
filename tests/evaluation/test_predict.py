"""`fcc predict`: the CSV's top classes equal the run's own evaluation forward on the same images."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import load_config
from fcc_lt.data.augment import Normalize
from fcc_lt.data.build import build_splits
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.run_loader import load_run, load_run_config


@pytest.fixture(scope="module")
def run(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("predict") / "run"
    Trainer(load_config(None, tiny_run_overrides(cifar10_root, out, "train.epochs=1", "train.milestones=[]"))).fit()
    return out


def test_predictions_match_the_evaluation_forward(run: Path, tmp_path: Path) -> None:
    cfg = load_run_config(run)
    splits = build_splits(cfg)
    images = splits.test.images[:7]
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    paths = []
    for i, img in enumerate(images):
        p = folder / ("sub" if i % 2 else "") / f"img{i}.png"  # lossless, so the pixels come back exactly
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(p)
        paths.append(p)
    out = tmp_path / "pred.csv"
    assert main(["predict", str(run), str(folder), "--top-k", "3", "--out", str(out), "--device", "cpu"]) == 0
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in paths)
    model = load_run(run).model
    with torch.no_grad():
        probs = model(Normalize(splits.mean, splits.std)(images)).softmax(1)
    for row in rows:
        i = int(Path(row["path"]).stem.removeprefix("img"))
        top = probs[i].topk(3)
        assert [int(row[f"class{k}"]) for k in (1, 2, 3)] == top.indices.tolist()
        assert [float(row[f"prob{k}"]) for k in (1, 2, 3)] == pytest.approx(top.values.tolist(), abs=1e-5)
        assert row["name1"] == splits.class_names[int(row["class1"])]


def test_missing_input_is_a_clear_error(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["predict", str(run), str(tmp_path / "nope.png")]) == 2
    assert "nope.png: no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["predict", str(run), str(tmp_path / "empty")]) == 2
    assert "no image files" in capsys.readouterr().err
