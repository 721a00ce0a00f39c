"""A trained run as a classifier in Python: its model, class names and preprocessing in one object.

``load_classifier(RUN)`` goes through the one run loader (``run_loader.load_run``), so the network, the
weights, the tau-normalisation of ``eval.tau_norm`` and the device are exactly what `fcc eval` and
`fcc predict` use; the preprocessing is the run's evaluation transform and normalisation
(``predict.transform_and_normalisation``), applied the same way to image files, PIL images and uint8
arrays, so ``classifier.predict("photo.png")`` gives the class `fcc predict` writes for that file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from fcc_lt.config.schema import Config
from fcc_lt.data.augment import Normalize
from fcc_lt.data.images import DecodeError
from fcc_lt.evaluation.metrics import NonFiniteOutputs
from fcc_lt.evaluation.passes import nonfinite_hint
from fcc_lt.evaluation.predict import transform_and_normalisation
from fcc_lt.evaluation.run_loader import load_run, num_classes_of, refuse_while_training
from fcc_lt.util.errors import ConfigError, DataError, short_repr
from fcc_lt.util.precision import autocast, autocast_dtype

MAX_IMAGES_PER_CALL = 1_000_000  # a bound on what one call decodes; `fcc predict` is the tool for folders
BATCH = 64


@dataclass(frozen=True)
class Prediction:
    """The top class of one image (``label``, its ``index`` and softmax ``probability``) and the top k
    as (name, probability) pairs, most likely first."""

    label: str
    index: int
    probability: float
    top: tuple[tuple[str, float], ...]

    def __str__(self) -> str:
        return f"{self.label} ({self.probability:.3f})"


def _as_pil_or_array(image: Any, where: str) -> Any:
    """A path, a PIL image or a uint8 array/tensor -> a PIL image or a path for the transform."""
    from PIL import Image

    if isinstance(image, (str, Path)):
        return str(image)
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, Tensor):
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] not in (1, 3):
            raise DataError(f"{where}: a tensor image must be uint8 pixels shaped (3, H, W) or (1, H, W), got "
                            f"{image.dtype} {tuple(image.shape)} (for normalised float batches call .model)")
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
            raise DataError(f"{where}: an array image must be uint8 pixels shaped (H, W, 3) or (H, W), got "
                            f"{image.dtype} {image.shape}")
        return Image.fromarray(image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image)
    raise DataError(f"{where}: expected an image file path, a PIL image or uint8 pixels, got "
                    f"{type(image).__name__}")


def _image_list(images: Any) -> list[Any]:
    """One image or a sequence of them; a 4-D uint8 tensor (B, 3, H, W) or array (B, H, W, 3) is a batch."""
    if isinstance(images, (str, Path)) or not isinstance(images, (Sequence, Tensor, np.ndarray)):
        return [images]
    if isinstance(images, (Tensor, np.ndarray)):
        return list(images) if images.ndim == 4 else [images]
    if len(images) > MAX_IMAGES_PER_CALL:
        raise DataError(f"{len(images)} images in one call; give at most {MAX_IMAGES_PER_CALL} (or use `fcc predict`)")
    return list(images)


class Preprocess:
    """A run's evaluation preprocessing: images -> the normalised float batch (B, 3, S, S) its network takes.

    Files are decoded as `fcc predict` decodes them; PIL images and uint8 arrays go through the same
    resize and centre crop (CIFAR runs: resized to 32 x 32; image datasets: the shorter side to
    ``size / test_crop_ratio``, then the centre crop), then ``(x / 255 - mean) / std``.
    """

    def __init__(self, cfg: Config, device: torch.device) -> None:
        self.transform, mean, std = transform_and_normalisation(cfg)
        self.size = self.transform.size
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.device = device
        self._normalize = Normalize(self.mean, self.std).to(device)

    def pixels(self, images: Any) -> Tensor:
        """The uint8 batch (B, 3, S, S) after resize and crop, before normalisation (what an export takes)."""
        decoded = []
        for i, image in enumerate(_image_list(images)):
            where = f"image {i}" if not isinstance(image, (str, Path)) else str(image)
            source = _as_pil_or_array(image, where)
            try:
                hwc = self.transform(source) if isinstance(source, str) else self.transform.image(source, where)
            except DecodeError as err:
                raise DataError(f"{where}: {err}") from None
            decoded.append(torch.from_numpy(np.array(hwc)))  # a writable copy
        if not decoded:
            raise DataError("no images given")
        return torch.stack(decoded).permute(0, 3, 1, 2).contiguous()

    def __call__(self, images: Any) -> Tensor:
        return self._normalize(self.pixels(images).to(self.device)).contiguous()


class Classifier:
    """A trained run ready to classify images: ``model`` (eval mode, tau-normalised where the run's config
    says), ``class_names``, ``preprocess`` (images -> the network's input), and ``predict`` / ``logits``."""

    def __init__(self, model: nn.Module, class_names: list[str], preprocess: Preprocess, config: Config,
                 run_dir: Path | None, checkpoint: Path, epoch: Any, tau_norm: float | None) -> None:
        self.model = model
        self.class_names = class_names
        self.preprocess = preprocess
        self.config = config
        self.run_dir = run_dir
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.tau_norm = tau_norm
        self.device = preprocess.device
        self._amp = autocast_dtype(config.train.amp, self.device)

    @property
    def input_size(self) -> int:
        return self.preprocess.size

    def __repr__(self) -> str:
        where = self.run_dir if self.run_dir is not None else self.checkpoint
        return (f"Classifier({where}, {len(self.class_names)} classes, input {self.input_size}x{self.input_size}, "
                f"{self.device})")

    @torch.no_grad()
    def logits(self, images: Any) -> Tensor:
        """The network's float32 logits (B, C) on the CPU for one image or a sequence / batch of them."""
        items = _image_list(images)
        out = []
        for start in range(0, len(items), BATCH):
            x = self.preprocess(items[start:start + BATCH])
            with autocast(self.device, self._amp):
                out.append(self.model(x).float().cpu())
        return torch.cat(out)

    def predict(self, images: Any, top_k: int = 5) -> Any:
        """The top class and the top ``top_k`` of each image: a Prediction for one image, a list for several."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        single = isinstance(images, (str, Path)) or not isinstance(images, (Sequence, Tensor, np.ndarray)) or (
            isinstance(images, (Tensor, np.ndarray)) and images.ndim != 4)
        logits = self.logits(images)
        bad = (~torch.isfinite(logits)).any(dim=1)
        if bool(bad.any()):  # their probabilities would be NaN, or a class chosen by accident
            raise NonFiniteOutputs(f"the network gave non-finite logits (NaN or inf) for {int(bad.sum())} of "
                                   f"{len(bad)} images, so it predicts nothing{nonfinite_hint(self._amp)}")
        probs = logits.softmax(dim=1)
        values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
        predictions = []
        for v, c in zip(values.tolist(), indices.tolist()):
            top = tuple((self.class_names[i], p) for i, p in zip(c, v))
            predictions.append(Prediction(top[0][0], c[0], v[0], top))
        return predictions[0] if single else predictions


def _device(device: str | torch.device | None) -> torch.device | None:
    if device is None or isinstance(device, torch.device):
        return device
    from fcc_lt.util.argtypes import DEVICE_PATTERN
    from fcc_lt.util.distributed import resolve_device

    if not isinstance(device, str) or not re.fullmatch(DEVICE_PATTERN, device):
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {short_repr(device)}")
    return resolve_device(device)


def load_classifier(source: str | Path, checkpoint: str = "last", *, device: str | torch.device | None = None
                    ) -> Classifier:
    """A run directory (or checkpoint file) as a Classifier, on ``device`` (default: the run's ``device``); not
    while another process trains the run (the rule of `fcc predict` and `fcc eval`)."""
    refuse_while_training(source, "load", checkpoint)
    run = load_run(source, checkpoint, what="run", device=_device(device))
    cfg = run.config
    assert cfg is not None  # load_run requires it
    names = run.class_names or [str(c) for c in range(num_classes_of(run))]
    return Classifier(run.model, list(names), Preprocess(cfg, run.device), cfg, run.run_dir, run.path, run.epoch,
                      run.tau_norm)
