"""The Python API at the top of fcc_lt: load / predict give the run's predictions for files, PIL images and
uint8 pixels (checked against a forward computed here by hand), train returns the run directory and its
eval.json, evaluate what `fcc eval` writes, the README's snippet runs as written, and `import fcc_lt`
does not import torch."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fcc_lt
from conftest import subprocess_env, tiny_run_overrides
from fcc_lt.util.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
CIFAR_MEAN = torch.tensor((0.4914, 0.4822, 0.4465), dtype=torch.float64).view(1, 3, 1, 1)
CIFAR_STD = torch.tensor((0.2023, 0.1994, 0.2010), dtype=torch.float64).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def trained(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> fcc_lt.TrainResult:
    out = tmp_path_factory.mktemp("api") / "run"
    return fcc_lt.train("cifar10_lt/ce_if100", tiny_run_overrides(cifar10_root, out, "train.epochs=1",
                                                                  "train.milestones=[]"))


def by_hand(run: Path, pixels: torch.Tensor) -> torch.Tensor:
    """Logits of uint8 (B, 3, 32, 32) pixels: CIFAR normalisation in float64, the checkpoint's network."""
    from fcc_lt.evaluation.run_loader import load_run

    net = load_run(run, device="cpu").network.double()
    with torch.no_grad():
        return net((pixels.double() / 255 - CIFAR_MEAN) / CIFAR_STD).float()


def test_public_names() -> None:
    assert set(fcc_lt.__all__) == {"__version__", "load", "predict", "train", "evaluate", "export", "Classifier",
                                   "Prediction", "TrainResult", "ExportResult"}
    for name in fcc_lt.__all__:
        assert getattr(fcc_lt, name) is not None
        if callable(getattr(fcc_lt, name)):
            assert getattr(fcc_lt, name).__doc__, name
    with pytest.raises(AttributeError, match="no attribute 'lod'"):
        fcc_lt.lod  # noqa: B018


def test_train_returns_the_run_directory_and_its_metrics(trained: fcc_lt.TrainResult) -> None:
    assert (trained.run_dir / "checkpoints" / "last.pt").is_file()
    assert trained.metrics == json.loads((trained.run_dir / "eval.json").read_text())
    assert set(trained.metrics) >= {"top1", "top5", "per_class"}


def test_train_refuses_bad_input_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'cifar10_lt/ce_if100'"):
        fcc_lt.train("cifar10_lt/ce_if10")
    with pytest.raises(ConfigError, match=r"did you mean 'train\.epochs'"):
        fcc_lt.train("cifar10_lt/ce_if100", ["train.epoch=3"])
    assert not (tmp_path / "runs").exists()


def test_load_gives_the_runs_predictions_for_files_pil_and_pixels(trained: fcc_lt.TrainResult,
                                                                  cifar10_root: Path, tmp_path: Path) -> None:
    from fcc_lt.data.build import build_splits
    from fcc_lt.evaluation.run_loader import load_run_config

    pixels = build_splits(load_run_config(trained.run_dir)).test.images[:8]
    expected = by_hand(trained.run_dir, pixels)
    model = fcc_lt.load(trained.run_dir, device="cpu")
    assert not model.model.training and model.input_size == 32
    assert model.class_names[:2] == ["airplane", "automobile"]
    files = []
    for i, img in enumerate(pixels):
        files.append(tmp_path / f"{i}.png")  # lossless: the pixels come back exactly
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(files[-1])
    pil = [Image.open(f) for f in files]
    hwc = pixels.permute(0, 2, 3, 1).numpy()
    for given in (files, [str(f) for f in files], pil, pixels, list(pixels), hwc):
        assert torch.allclose(model.logits(given), expected, atol=1e-4, rtol=1e-4), type(given)
    predictions = model.predict(files, top_k=3)
    probs = expected.softmax(1)
    for p, row in zip(predictions, probs):
        assert p.index == int(row.argmax()) and p.label == model.class_names[p.index]
        assert p.probability == pytest.approx(float(row.max()), abs=1e-5)
        assert [name for name, _ in p.top] == [model.class_names[i] for i in row.topk(3).indices.tolist()]
    one = fcc_lt.predict(trained.run_dir, files[0], device="cpu")
    assert isinstance(one, fcc_lt.Prediction) and one.index == predictions[0].index
    assert re.fullmatch(r"\w+ \(\d\.\d{3}\)", str(one))


def test_other_sizes_are_resized_as_fcc_predict_does(trained: fcc_lt.TrainResult, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from fcc_lt.cli.main import main

    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8)).save(photo)
    assert main(["predict", str(trained.run_dir), str(photo), "--out", str(tmp_path / "p.csv"), "--device", "cpu"]) == 0
    row = (tmp_path / "p.csv").read_text().splitlines()[1].split(",")
    got = fcc_lt.load(trained.run_dir, device="cpu").predict(photo)
    assert (got.index, got.label) == (int(row[1]), row[2])
    assert got.probability == pytest.approx(float(row[3]), abs=1e-5)


def test_bad_images_and_devices_are_one_line_errors(trained: fcc_lt.TrainResult, tmp_path: Path) -> None:
    model = fcc_lt.load(trained.run_dir, device="cpu")
    with pytest.raises(DataError, match="must be uint8 pixels"):
        model.predict(torch.zeros(3, 32, 32))
    with pytest.raises(DataError, match=r"nope\.png: does not exist"):
        model.predict(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"bad\.png: not a readable image"):
        model.predict([tmp_path / "bad.png"])
    with pytest.raises(DataError, match="expected an image file path"):
        model.predict([3])
    with pytest.raises(ConfigError, match="device: expected auto, cpu, cuda"):
        fcc_lt.load(trained.run_dir, device="gpu")


def test_evaluate_writes_and_returns_what_fcc_eval_does(trained: fcc_lt.TrainResult) -> None:
    result = fcc_lt.evaluate(trained.run_dir, overrides=["device=cpu"])
    assert result == json.loads((trained.run_dir / "eval_last_test.json").read_text())
    assert result["top1"] == pytest.approx(trained.metrics["top1"])  # the same weights, split and forward


def readme_snippet() -> str:
    text = (REPO / "README.md").read_text()
    return re.search(r"```python\n(.*?)```", text, flags=re.DOTALL).group(1)


def test_the_readme_snippet_is_three_lines_and_runs(cifar10_root: Path, tmp_path: Path) -> None:
    """README's Python block, run as written from a folder where the README's first command left its run
    (here a tiny one at the same place) and a photo: it prints the class the run predicts."""
    snippet = readme_snippet()
    code = [line for line in snippet.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) == 3, snippet
    photo = re.search(r"predict\(\"([^\"]+)\"\)", snippet).group(1)
    run_dir = re.search(r"load\(\"([^\"]+)\"\)", snippet).group(1)
    fcc_lt.train("cifar10_lt/ce_fcc_if100", tiny_run_overrides(cifar10_root, tmp_path / run_dir, "train.epochs=1",
                                                               "train.milestones=[]"))
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / photo)
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=subprocess_env(), capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    pixels = torch.from_numpy(np.array(Image.open(tmp_path / photo))).permute(2, 0, 1)[None]
    expected = by_hand(tmp_path / run_dir, pixels)
    names = fcc_lt.load(tmp_path / run_dir).class_names
    assert done.stdout.strip() == f"{names[int(expected.argmax())]} ({float(expected.softmax(1).max()):.3f})"


def test_import_fcc_lt_and_fcc_configs_do_not_import_torch() -> None:
    code = ("import sys, fcc_lt; assert fcc_lt.__version__; assert 'torch' not in sys.modules, 'import fcc_lt'; "
            "from fcc_lt.cli.main import main; main(['configs']); assert 'torch' not in sys.modules, 'fcc configs'")
    done = subprocess.run([sys.executable, "-c", code], env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
