"""Image files (ImageNet-LT, iNaturalist 2018, your own images): the file lists and their decoding.
The ``json`` and ``image_folder`` dataset builders are in fcc_lt.data.image_datasets, the worker loaders in
fcc_lt.data.image_loader (both build on this module; it imports neither).

Decoding uses PIL. A transform turns one file into a uint8 HWC array of ``size`` x ``size``:
- ``RandomResizedCropFlip`` (training): a random-resized crop (scale/ratio as torchvision), cut and
  resized in one PIL call, and a horizontal flip with probability 1/2. Its randomness comes from a
  per-sample seed that the loader derives from (run seed, epoch, step, position in the global batch),
  never from the worker that happens to decode the file, so any worker count gives the same batches.
- ``CenterResizeCrop`` (evaluation, and the base of the device-side crop-and-flip): the shorter side
  resized to int(size / crop_ratio), then the central size x size crop.
With ``jpeg_draft`` (``data.jpeg_draft``, off by default) JPEG files are decoded at a reduced scale (PIL's
``draft``, DCT scaling by 1/2, 1/4 or 1/8) when the reduced region still has the output resolution, i.e.
for images at least twice that size (a shorter side >= 512 for 224-pixel evaluation). On photos of 800x600
and 1024x768 that made evaluation decoding 1.5x and training decoding 1.1-1.2x cheaper, and changed the
output pixels by 1.6-2.5 grey levels on average (up to 21): benchmarks/jpeg_draft.py, docs/benchmarks.md.
Off, every file is decoded whole, as the original code did.

Colour jitter and normalisation run on the training device, on whole batches (fcc_lt.data.augment).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fcc_lt.config.schema import DataConfig
from fcc_lt.data.augment import random_resized_boxes
from fcc_lt.util.errors import DataError, file_problem

log = logging.getLogger("fcc")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataWarning(UserWarning):
    """Images left out of a split (data.skip_bad_images) or other data that loads with a caveat."""


class DecodeError(Exception):
    """One image file could not be decoded; the loaders turn it into a DataError or a counted skip."""


# --------------------------------------------------------------------------------------------- files


class ImageFiles:
    """The image files and labels of one split.

    Paths are kept in one byte buffer with offsets rather than a list of strings: DataLoader workers
    share the parent's memory copy-on-write, and touching a Python object's reference count (as reading
    a list item does) would copy its page into every worker, a known way to run out of memory on
    large datasets.
    """

    def __init__(self, paths: Sequence[str], labels: Tensor | np.ndarray | Sequence[int], source: str = "") -> None:
        encoded = [os.fsencode(p) for p in paths]
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        self._offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._blob = np.frombuffer(b"".join(encoded), dtype=np.uint8).copy()
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.source = source
        if self.labels.shape != (len(encoded),):
            raise ValueError(f"{source}: {len(encoded)} paths but labels of shape {tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.labels.numel())

    def path(self, index: int) -> str:
        start, end = self._offsets[index], self._offsets[index + 1]
        return os.fsdecode(self._blob[start:end].tobytes())

    def subset(self, keep: Sequence[int] | np.ndarray) -> ImageFiles:
        keep = np.asarray(keep, dtype=np.int64)
        return ImageFiles([self.path(i) for i in keep.tolist()], self.labels[torch.from_numpy(keep)], self.source)


# ---------------------------------------------------------------------------------------- decoding


def _open(path: str) -> Any:  # a PIL image; PIL is imported lazily
    """PIL's lazy open, once the path is known to be a regular file: a folder is named as one, and a FIFO
    or device (which would block the decoding worker forever, or never end) is never opened."""
    from PIL import Image

    problem = file_problem(path)
    if problem is not None:
        raise DecodeError(problem)
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise DecodeError("does not exist") from None
    except Exception as err:  # PIL raises many types for unreadable files
        raise DecodeError(f"not a readable image ({type(err).__name__}: {err})") from None


def _finish(img: Any, path: str) -> np.ndarray:
    try:
        if img.mode != "RGB":
            img = img.convert("RGB")
        return np.asarray(img)
    except Exception as err:
        raise DecodeError(f"cannot decode ({type(err).__name__}: {err})") from None


class CenterResizeCrop:
    """Shorter side to int(size / crop_ratio) (aspect kept), then the central size x size crop."""

    def __init__(self, size: int, crop_ratio: float = 0.875, jpeg_draft: bool = False) -> None:
        self.size = size
        self.resize_to = int(size / crop_ratio)
        self.jpeg_draft = jpeg_draft

    def target(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the shorter-side resize, rounded down as torchvision does."""
        r = self.resize_to
        if width <= height:
            return r, int(r * height / width)
        return int(r * width / height), r

    def __call__(self, path: str, seed: int = 0) -> np.ndarray:
        img = _open(path)
        with img:
            return self.image(img, path, draft=self.jpeg_draft)

    def image(self, img: Any, path: str = "the image", draft: bool = False) -> np.ndarray:
        """The same for an image already open (a PIL image, e.g. one given to the Python API); ``img``
        itself is left as it was unless ``draft`` lets JPEG decoding scale it down (``data.jpeg_draft``)."""
        from PIL import Image

        try:
            ow, oh = self.target(*img.size)
            if draft and img.format == "JPEG":
                img.draft("RGB", (ow, oh))
            if img.mode not in ("RGB", "L"):
                img = img.convert("RGB")
            if img.size != (ow, oh):
                img = img.resize((ow, oh), Image.BILINEAR)
            top = round((oh - self.size) / 2.0)
            left = round((ow - self.size) / 2.0)
            if (ow, oh) != (self.size, self.size):
                img = img.crop((left, top, left + self.size, top + self.size))
            return _finish(img, path)
        except DecodeError:
            raise
        except Exception as err:  # truncated data and the like surface while decoding
            raise DecodeError(f"cannot decode ({type(err).__name__}: {err})") from None


class RandomResizedCropFlip:
    """Random-resized crop to size x size (scale, ratio as torchvision) and a horizontal flip (p = 1/2)."""

    def __init__(self, size: int, scale: Sequence[float] = (0.08, 1.0),
                 ratio: Sequence[float] = (3 / 4, 4 / 3), flip: bool = True, jpeg_draft: bool = False) -> None:
        self.size = size
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.flip = flip
        self.jpeg_draft = jpeg_draft

    def params(self, width: int, height: int, seed: int) -> tuple[tuple[int, int, int, int], bool]:
        """((top, left, height, width) of the crop, flip) for an image of this size and this seed."""
        gen = torch.Generator().manual_seed(seed)
        box = random_resized_boxes(torch.tensor([height]), torch.tensor([width]), gen, self.scale, self.ratio)
        flip = bool(torch.rand(1, generator=gen) < 0.5) if self.flip else False
        t, left, h, w = box[0].tolist()
        return (t, left, h, w), flip

    def __call__(self, path: str, seed: int) -> np.ndarray:
        from PIL import Image

        img = _open(path)
        try:
            with img:
                width, height = img.size
                (top, left, h, w), flip = self.params(width, height, seed)
                if self.jpeg_draft and img.format == "JPEG":
                    # the largest DCT scaling that keeps the crop at >= size pixels on both sides
                    img.draft("RGB", (-(-width * self.size // w), -(-height * self.size // h)))
                sx, sy = img.size[0] / width, img.size[1] / height
                if img.mode not in ("RGB", "L"):
                    img = img.convert("RGB")
                box = (left * sx, top * sy, (left + w) * sx, (top + h) * sy)
                img = img.resize((self.size, self.size), Image.BILINEAR, box=box)
                if flip:
                    img = img.transpose(Image.FLIP_LEFT_RIGHT)
                return _finish(img, path)
        except DecodeError:
            raise
        except Exception as err:
            raise DecodeError(f"cannot decode ({type(err).__name__}: {err})") from None


Transform = CenterResizeCrop | RandomResizedCropFlip


# ------------------------------------------------------------------------------------- config glue


def image_mean_std(cfg: DataConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return tuple(cfg.mean or IMAGENET_MEAN), tuple(cfg.std or IMAGENET_STD)


def eval_transform(cfg: DataConfig) -> CenterResizeCrop:
    return CenterResizeCrop(cfg.image_size, cfg.test_crop_ratio, cfg.jpeg_draft)


def train_transform(cfg: DataConfig) -> Transform:
    """The worker-side part of the training transform; crop_flip's crop and flip run on the device."""
    if cfg.augment == "rrc_flip":
        return RandomResizedCropFlip(cfg.image_size, cfg.rrc_scale, cfg.rrc_ratio, jpeg_draft=cfg.jpeg_draft)
    return eval_transform(cfg)


def workers_for(cfg: DataConfig) -> int:
    """data.workers, or by default min(8, the CPUs of this machine per local process)."""
    if cfg.workers is not None:
        return cfg.workers
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, (os.cpu_count() or 1) // local))


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def scan_folder(root: Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> tuple[list[str], list[list[str]]]:
    """Class names (sub-folders, sorted) and each class's image files (recursive, sorted, relative)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    exts = {e.lower() for e in extensions}
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected ROOT/<class>/<image files>)")
    files = []
    for name in classes:
        found = []
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            rel_dir = os.path.relpath(dirpath, root)
            found += [os.path.join(rel_dir, f) for f in filenames
                      if not f.startswith(".") and os.path.splitext(f)[1].lower() in exts]
        files.append(sorted(found))
    return classes, files
