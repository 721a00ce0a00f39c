"""`fcc export`: a trained run's evaluated model as a TorchScript, ONNX or safetensors file.

What is exported is what `fcc eval` evaluates: the run's network loaded by the one run loader, with the
tau-normalisation of ``eval.tau_norm`` applied. TorchScript and ONNX files take uint8 RGB pixels shaped
(batch, 3, S, S), already resized and centre-cropped to the run's input size S, and give float32
logits: the normalisation ``(pixels / 255 - mean) / std`` is folded into the model. A safetensors file
holds weights only (the tau-normalised head folded into ``head.*``), so there the normalisation is the
caller's. Every export writes ``<file>.json`` beside the model: input size and layout, resize rule, mean,
std, class names, the checkpoint and the run's config (``eval.tau_norm`` set to null where it is folded).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fcc_lt import __version__
from fcc_lt.evaluation.inference import Classifier, load_classifier
from fcc_lt.util.errors import OutputError
from fcc_lt.util.files import atomic_write_bytes, atomic_write_text

FORMATS = ("torchscript", "onnx", "safetensors")
SUFFIX = {"torchscript": ".torchscript.pt", "onnx": ".onnx", "safetensors": ".safetensors"}
EXTRA = "pip install 'fcc-lt[export]'"
ONNX_OPSET = 17  # fixed, not torch's default of the day: onnxruntime >= 1.15 (the export extra's bound) runs it


@dataclass(frozen=True)
class ExportResult:
    """The exported model file and the JSON file that describes its input, classes and config."""

    path: Path
    metadata_path: Path
    metadata: dict[str, Any]


class PixelsToLogits(nn.Module):
    """uint8 RGB pixels (B, 3, S, S) -> logits: the run's normalisation in front of its evaluated model."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        mean_t, std_t = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)
        # (x / 255 - mean) / std as one multiply-add, the constants rounded once from float64
        self.register_buffer("scale", (1.0 / (255.0 * std_t)).float().view(1, -1, 1, 1))
        self.register_buffer("shift", (mean_t / std_t).float().view(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.model(images.to(torch.float32) * self.scale - self.shift)


def _metadata(clf: Classifier, fmt: str, path: Path, folded: bool) -> dict[str, Any]:
    cfg = clf.config.to_dict()
    if clf.tau_norm is not None:
        cfg["eval"]["tau_norm"] = None  # folded into the exported head: applying it again would be wrong
    t = clf.preprocess.transform
    return {
        "format": fmt,
        **({"onnx_opset": ONNX_OPSET} if fmt == "onnx" else {}),
        "file": path.name,
        "fcc_lt_version": __version__,
        "run": str(clf.run_dir) if clf.run_dir is not None else None,
        "checkpoint": str(clf.checkpoint),
        "epoch": clf.epoch,
        "input": {"name": "images", "shape": ["batch", 3, t.size, t.size], "channels": "RGB",
                  "dtype": "uint8" if folded else "float32",
                  "range": [0, 255] if folded else "normalised: (pixels / 255 - mean) / std"},
        "output": {"name": "logits", "shape": ["batch", len(clf.class_names)], "dtype": "float32"},
        "preprocessing": {"resize_shorter_side_to": t.resize_to, "center_crop": t.size, "interpolation": "bilinear"},
        "normalization": {"mean": list(clf.preprocess.mean), "std": list(clf.preprocess.std), "folded": folded,
                          "formula": "(pixels / 255 - mean) / std"},
        "tau_norm": clf.tau_norm,
        "tau_norm_folded": clf.tau_norm is not None,
        "class_names": clf.class_names,
        "config": cfg,
    }


def _example(clf: Classifier, batch: int = 2) -> Tensor:
    size = clf.input_size
    return torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _torchscript(clf: Classifier, path: Path) -> None:
    wrapper = PixelsToLogits(clf.model, clf.preprocess.mean, clf.preprocess.std).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream; TorchScript files still load
        traced = torch.jit.trace(wrapper, (_example(clf),), check_trace=False)

    def write(handle: Any) -> None:
        torch.jit.save(traced, handle)

    atomic_write_bytes(path, write)


def _onnx(clf: Classifier, path: Path) -> None:
    try:
        import onnx  # noqa: F401 - torch's exporter needs it
    except ImportError:
        raise OutputError(f"--format onnx needs the onnx package: {EXTRA}") from None
    wrapper = PixelsToLogits(clf.model, clf.preprocess.mean, clf.preprocess.std).eval()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter: fast, and needs only onnx
            torch.onnx.export(wrapper, (_example(clf),), str(tmp), input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
                              opset_version=ONNX_OPSET)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def export_weights(clf: Classifier) -> dict[str, Tensor]:
    """The network's state dict as evaluated: a tau-normalised head's weights replace ``head.*``."""
    model = clf.model
    network = getattr(model, "network", model)  # TauNormalized keeps the plain network as .network
    state = {k: v.detach().cpu().contiguous() for k, v in network.state_dict().items()}
    if model is not network:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        state.update({f"head.{k}": v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()})
    return state


def _safetensors(clf: Classifier, path: Path, metadata: dict[str, Any]) -> None:
    try:
        from safetensors.torch import save
    except ImportError:
        raise OutputError(f"--format safetensors needs the safetensors package: {EXTRA}") from None
    data = save(export_weights(clf), metadata={"fcc_lt": json.dumps(metadata)})
    atomic_write_bytes(path, lambda handle: handle.write(data))


def export_run(run: str | Path, fmt: str = "torchscript", out: str | Path | None = None, *,
               checkpoint: str = "last") -> ExportResult:
    """Export a run (see the module docstring); ``out`` defaults to RUN/export/<checkpoint><suffix>."""
    if fmt not in FORMATS:
        raise OutputError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    clf = load_classifier(run, checkpoint, device="cpu")
    clf.model.float()
    if out is None:
        base = clf.run_dir if clf.run_dir is not None else Path(clf.checkpoint).parent
        out = base / "export" / (Path(clf.checkpoint).stem + SUFFIX[fmt])
    path = Path(out)
    if path.is_dir():
        raise OutputError(f"--out {path}: a folder; name the file to write, e.g. {path / ('model' + SUFFIX[fmt])}")
    path.parent.mkdir(parents=True, exist_ok=True)
    folded = fmt != "safetensors"
    metadata = _metadata(clf, fmt, path, folded)
    if fmt == "torchscript":
        _torchscript(clf, path)
    elif fmt == "onnx":
        _onnx(clf, path)
    else:
        _safetensors(clf, path, metadata)
    meta_path = path.with_name(path.name + ".json")
    atomic_write_text(meta_path, json.dumps(metadata, indent=1) + "\n")
    return ExportResult(path, meta_path, metadata)
