"""Image-file datasets (ImageNet-LT, iNaturalist 2018, your own images): files, decoding, and the
``json`` and ``image_folder`` dataset builders.

Decoding uses PIL. A transform turns one file into a uint8 HWC array of ``size`` x ``size``:
- ``RandomResizedCropFlip`` (training): a random-resized crop (scale/ratio as torchvision), cut and
  resized in one PIL call, and a horizontal flip with probability 1/2. Its randomness comes from a
  per-sample seed that the loader derives from (run seed, epoch, step, position in the global batch),
  never from the worker that happens to decode the file, so any worker count gives the same batches.
- ``CenterResizeCrop`` (evaluation, and the base of the device-side crop-and-flip): the shorter side
  resized to int(size / crop_ratio), then the central size x size crop.
JPEG files are decoded at a reduced scale (PIL's ``draft``, DCT scaling by 1/2, 1/4 or 1/8) when the
region that is kept still has at least the output resolution (``jpeg_draft``), which makes large photos
several times cheaper to decode.

Colour jitter and normalisation run on the training device, on whole batches (fcc.data.augment).

Small datasets (``data.loader``: ``device``, or ``auto`` when the decoded splits fit
``data.preload_max_mb``) are decoded once with the evaluation transform into uint8 arrays and trained
through the DeviceLoader like CIFAR.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fcc.config import DataConfig
from fcc.data.annotations import Annotations, check_classes_present, check_files, read_annotations, resolve_paths
from fcc.data.augment import random_resized_boxes
from fcc.data.datasets import ArrayDataset, DataSplits, LabelledDataset
from fcc.errors import ConfigError, DataError, file_problem
from fcc.registry import DATASETS

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

    def __init__(self, size: int, crop_ratio: float = 0.875, jpeg_draft: bool = True) -> None:
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
        from PIL import Image

        img = _open(path)
        try:
            with img:
                ow, oh = self.target(*img.size)
                if self.jpeg_draft and img.format == "JPEG":
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
                 ratio: Sequence[float] = (3 / 4, 4 / 3), flip: bool = True, jpeg_draft: bool = True) -> None:
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


# ---------------------------------------------------------------------------------- split building


def _load_split(path: str, cfg: DataConfig, *, training: bool, num_classes: int | None,
                class_names: list[str] | None) -> tuple[ImageFiles, Annotations]:
    ann = read_annotations(path)
    if num_classes is not None and ann.num_classes != num_classes:
        raise DataError(f"{path}: num_classes is {ann.num_classes}, but the training JSON has {num_classes}")
    if class_names is not None and ann.class_names is not None and ann.class_names != class_names:
        raise DataError(f"{path}: class_names differ from the training JSON's")
    root = cfg.image_root if cfg.image_root is not None else str(Path(path).parent)
    root = os.path.expanduser(root)
    return _checked_files(ann, root, cfg, training=training), ann


def _checked_files(ann: Annotations, root: str, cfg: DataConfig, *, training: bool) -> ImageFiles:
    paths = resolve_paths(ann, root)
    bad = check_files(paths, cfg.check_images, ann.source, root, skip_bad=cfg.skip_bad_images)
    if bad:
        warnings.warn(f"{ann.source}: leaving out {len(bad)} unreadable image files (data.skip_bad_images), "
                      f"for example {paths[bad[0]]}", DataWarning, stacklevel=2)
        keep = np.setdiff1d(np.arange(len(ann)), np.asarray(bad))
        ann = ann.subset(keep)
        paths = [paths[i] for i in keep.tolist()]
    if training:
        check_classes_present(ann)
    return ImageFiles(paths, ann.labels, ann.source)


def decoded_bytes(n: int, size: int) -> int:
    return n * 3 * size * size


def use_device_loader(cfg: DataConfig, sizes: Sequence[int]) -> bool:
    """data.loader: device or workers as set; auto picks device when the decoded splits fit the budget."""
    if cfg.loader == "device":
        return True
    if cfg.loader == "workers":
        return False
    return cfg.augment != "rrc_flip" and decoded_bytes(sum(sizes), cfg.image_size) <= cfg.preload_max_mb * 2**20


def preload(files: ImageFiles, cfg: DataConfig) -> ArrayDataset:
    """Decode every image once with the evaluation transform into a uint8 (N, 3, S, S) array."""
    from fcc.data.image_loader import decode_all

    images = decode_all(files, eval_transform(cfg), workers=workers_for(cfg), skip_bad=cfg.skip_bad_images)
    keep = images.valid
    if not bool(keep.all()):
        files_kept = files.subset(np.flatnonzero(keep.numpy()))
        return ArrayDataset(images.images[keep], files_kept.labels, files.source)
    return ArrayDataset(images.images, files.labels, files.source)


def build_image_splits(cfg: DataConfig, name: str, train: tuple[ImageFiles, Annotations],
                       test: ImageFiles, val: ImageFiles | None) -> DataSplits:
    train_files, ann = train
    mean, std = image_mean_std(cfg)
    splits: list[LabelledDataset | None] = [train_files, test, val]
    if cfg.augment == "rrc_flip" and cfg.loader == "device":
        raise ConfigError("data.loader: 'device' keeps decoded images of one size and augments them with "
                          "crop_flip; data.augment 'rrc_flip' needs data.loader=workers (or auto)")
    if use_device_loader(cfg, [len(s) for s in splits if s is not None]):
        log.info("%s: decoding %d images once into memory (data.loader=%s)", name,
                 sum(len(s) for s in splits if s is not None), cfg.loader)
        splits = [preload(s, cfg) if s is not None else None for s in splits]  # type: ignore[arg-type]
    return DataSplits(name=name, num_classes=ann.num_classes, train=splits[0], test=splits[1],  # type: ignore[arg-type]
                      val=splits[2], class_names=ann.class_names or [], mean=mean, std=std)  # type: ignore[arg-type]


@DATASETS.register("json")
def json_dataset(cfg: DataConfig) -> DataSplits:
    """Images listed in JSON annotation files (data.train_json, data.test_json, optional data.val_json)."""
    if not cfg.train_json or not cfg.test_json:
        raise ConfigError("data.dataset 'json' needs data.train_json and data.test_json (annotation files; see "
                          "docs/datasets.md)")
    train = _load_split(cfg.train_json, cfg, training=True, num_classes=None, class_names=None)
    c, names = train[1].num_classes, train[1].class_names
    test, _ = _load_split(cfg.test_json, cfg, training=False, num_classes=c, class_names=names)
    val = None
    if cfg.val_json:
        val, _ = _load_split(cfg.val_json, cfg, training=False, num_classes=c, class_names=names)
    return build_image_splits(cfg, f"json:{Path(cfg.train_json).name}", train, test, val)


@DATASETS.register("image_folder")
def image_folder_dataset(cfg: DataConfig) -> DataSplits:
    """Class-per-folder trees data.root/{train,test}/<class>/... (and val/ when present)."""
    from fcc.data.convert import scan_folder

    root = Path(cfg.root).expanduser()
    classes, _ = scan_folder(root / "train")
    index = {n: k for k, n in enumerate(classes)}

    def split(name: str, training: bool) -> tuple[ImageFiles, Annotations]:
        found, files = scan_folder(root / name)
        unknown = [n for n in found if n not in index]
        if unknown:
            raise DataError(f"{root / name}: class folders {unknown[:5]} do not exist in {root / 'train'}")
        rel = [f for class_files in files for f in class_files]
        labels = [index[n] for n, class_files in zip(found, files) for _ in class_files]
        if not rel:
            raise DataError(f"{root / name}: no image files in the class folders")
        ann = Annotations(list(range(len(rel))), rel, np.asarray(labels), len(classes), class_names=classes,
                          source=str(root / name))
        return _checked_files(ann, str(root / name), cfg, training=training), ann

    train = split("train", True)
    test, _ = split("test", False)
    val = split("val", False)[0] if (root / "val").is_dir() else None
    return build_image_splits(cfg, f"image_folder:{root.name}", train, test, val)
