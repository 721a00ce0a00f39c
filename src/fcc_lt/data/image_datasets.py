"""The ``json`` and ``image_folder`` datasets: annotation files or class folders -> checked image files
-> ``DataSplits``.

Small datasets (``data.loader``: ``device``, or ``auto`` when the decoded splits fit
``data.preload_max_mb``) are decoded once with the evaluation transform into uint8 arrays and trained
through the DeviceLoader like CIFAR; the others are decoded by worker processes every epoch
(fcc_lt.data.image_loader).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fcc_lt.config.schema import DataConfig
from fcc_lt.data.annotations import Annotations, check_classes_present, check_files, read_annotations, resolve_paths
from fcc_lt.data.datasets import ArrayDataset, DataSplits, LabelledDataset
from fcc_lt.data.image_loader import decode_all
from fcc_lt.data.images import DataWarning, ImageFiles, eval_transform, image_mean_std, workers_for
from fcc_lt.util.errors import ConfigError, DataError
from fcc_lt.util.registry import DATASETS

log = logging.getLogger("fcc")


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
    from fcc_lt.data.images import scan_folder

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
