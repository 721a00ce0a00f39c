"""`fcc export` / ``fcc_lt.export``: every format gives the logits of what `fcc eval` evaluates, checked
against a forward computed here by hand (normalisation in float64, a tau-normalised head rebuilt from the
checkpoint's weights), for a plain run and for a run with ``eval.tau_norm``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_run_overrides
from fcc_lt.cli.main import main
from fcc_lt.config.load import from_dict, load_config
from fcc_lt.data.build import build_splits
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.export import FORMATS, export_run
from fcc_lt.evaluation.run_loader import load_run
from fcc_lt.models.network import build_network
from fcc_lt.util.errors import OutputError

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the normalisation fcc's CIFAR runs use (docs/datasets.md)
CIFAR_STD = (0.2023, 0.1994, 0.2010)


@pytest.fixture(scope="module")
def runs(cifar10_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A plain run and one evaluated with tau-normalisation (tau 1), one short epoch each."""
    out = {}
    for name, extra in (("plain", []), ("tau", ["eval.tau_norm=1.0"])):
        run = tmp_path_factory.mktemp(f"export_{name}") / "run"
        Trainer(load_config(None, tiny_run_overrides(cifar10_root, run, "train.epochs=1", "train.milestones=[]",
                                                     *extra))).fit()
        out[name] = run
    return out


@pytest.fixture(scope="module")
def pixels(runs: dict[str, Path]) -> torch.Tensor:
    splits = build_splits(load_config(Path(runs["plain"]) / "config.yaml"))
    return splits.test.images[:6].clone()  # uint8 (6, 3, 32, 32) test images


def reference_logits(run: Path, pixels: torch.Tensor) -> torch.Tensor:
    """By hand: normalise in float64, the network's features, then the head, tau-normalised by hand when
    the run's config sets eval.tau_norm (W_c / ||W_c||^tau, bias kept)."""
    loaded = load_run(run, device="cpu", tau_norm=False)
    net = loaded.network.double()
    mean = torch.tensor(CIFAR_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD, dtype=torch.float64).view(1, 3, 1, 1)
    x = (pixels.double() / 255.0 - mean) / std
    with torch.no_grad():
        feats = net.features(x)
        w, b = net.head.fc.weight, net.head.fc.bias
        tau = loaded.config.eval.tau_norm
        if tau is not None:
            w = w / w.norm(dim=1, keepdim=True) ** tau
        return (feats @ w.T + b).float()


def test_the_tau_fixture_changes_the_logits(runs: dict[str, Path], pixels: torch.Tensor) -> None:
    """Otherwise the tau checks below could not tell a tau-normalised export from a plain one."""
    plain = load_run(runs["tau"], device="cpu", tau_norm=False).network
    with torch.no_grad():
        ref_plain = plain.double()((pixels.double() / 255 - torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
                                    / torch.tensor(CIFAR_STD).view(1, 3, 1, 1)).float()
    assert (reference_logits(runs["tau"], pixels) - ref_plain).abs().max() > 1e-2


@pytest.mark.parametrize("kind", ["plain", "tau"])
def test_torchscript_gives_the_evaluated_logits(kind: str, runs: dict[str, Path], pixels: torch.Tensor,
                                                tmp_path: Path) -> None:
    result = export_run(runs[kind], "torchscript", tmp_path / "m.pt")
    scripted = torch.jit.load(str(result.path))
    assert torch.allclose(scripted(pixels), reference_logits(runs[kind], pixels), atol=1e-4, rtol=1e-4)
    meta = json.loads(result.metadata_path.read_text())
    assert meta["normalization"]["folded"] and meta["input"]["dtype"] == "uint8"
    assert meta["tau_norm_folded"] == (kind == "tau") and meta["config"]["eval"]["tau_norm"] is None


@pytest.mark.parametrize("kind", ["plain", "tau"])
def test_onnx_gives_the_evaluated_logits(kind: str, runs: dict[str, Path], pixels: torch.Tensor,
                                         tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    result = export_run(runs[kind], "onnx", tmp_path / "m.onnx")
    # a fixed opset that the export extra's oldest onnxruntime (1.15) runs, whatever torch's default
    assert [o.version for o in onnx.load(str(result.path)).opset_import if o.domain in ("", "ai.onnx")] == [17]
    assert result.metadata["onnx_opset"] == 17
    session = ort.InferenceSession(str(result.path))
    (logits,) = session.run(None, {"images": pixels.numpy()})
    assert torch.allclose(torch.from_numpy(logits), reference_logits(runs[kind], pixels), atol=1e-4, rtol=1e-4)
    (one,) = session.run(None, {"images": pixels[:1].numpy()})  # the batch size is free
    assert one.shape == (1, 10)


@pytest.mark.parametrize("kind", ["plain", "tau"])
def test_safetensors_weights_rebuild_the_evaluated_network(kind: str, runs: dict[str, Path], pixels: torch.Tensor,
                                                           tmp_path: Path) -> None:
    """The weights and the JSON beside them are all a user needs: the network rebuilt from the JSON's config,
    the weights loaded with the safetensors package, the normalisation applied from the JSON."""
    st = pytest.importorskip("safetensors.torch")
    result = export_run(runs[kind], "safetensors", tmp_path / "m.safetensors")
    meta = json.loads(result.metadata_path.read_text())
    assert not meta["normalization"]["folded"]
    cfg = from_dict(meta["config"])
    assert cfg.eval.tau_norm is None  # folded into head.* already
    net = build_network(cfg, len(meta["class_names"]))
    net.load_state_dict(st.load_file(str(result.path)))
    net.eval()
    mean = torch.tensor(meta["normalization"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(meta["normalization"]["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = net((pixels.float() / 255 - mean) / std)
    assert torch.allclose(logits, reference_logits(runs[kind], pixels), atol=1e-4, rtol=1e-4)
    with open(result.path, "rb") as handle:  # the metadata travels inside the file too
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    assert json.loads(header["__metadata__"]["fcc_lt"])["class_names"] == meta["class_names"]


def test_the_json_describes_input_and_classes(runs: dict[str, Path], tmp_path: Path) -> None:
    meta = export_run(runs["plain"], "torchscript", tmp_path / "m.pt").metadata
    assert meta["input"]["shape"] == ["batch", 3, 32, 32]
    assert meta["normalization"]["mean"] == pytest.approx(CIFAR_MEAN)
    assert meta["normalization"]["std"] == pytest.approx(CIFAR_STD)
    assert meta["class_names"][:3] == ["airplane", "automobile", "bird"]
    assert meta["preprocessing"] == {"resize_shorter_side_to": 32, "center_crop": 32, "interpolation": "bilinear"}


def test_the_command(runs: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch) -> None:
    from fcc_lt.cli import export as cli_export

    assert cli_export.FORMATS == FORMATS
    assert main(["export", str(runs["tau"])]) == 0
    out = capsys.readouterr().out
    assert f"wrote {runs['tau'] / 'export' / 'last.torchscript.pt'}" in out and "tau-normalised head" in out
    assert main(["export", str(tmp_path / "nope")]) == 2
    assert "error: run: checkpoint not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", str(runs["tau"]), "--format", "tflite"])
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused while parsing, before the run is loaded
        main(["export", str(runs["tau"]), "--out", str(tmp_path)])
    capsys.readouterr()
    with pytest.raises(OutputError, match="a folder; name the file"):
        export_run(runs["tau"], "torchscript", tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # as without the export extra
    assert main(["export", str(runs["tau"]), "--format", "onnx", "--out", str(tmp_path / "x.onnx")]) == 2
    assert "pip install 'fcc-lt[export]'" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    with pytest.raises(OutputError, match="format: expected one of"):
        export_run(runs["tau"], "keras")
