"""Extra training images from an annotation JSON (``data.extra_train_json``), appended to the training split.

Made for CAM-based sampling's stage 2 (``fcc data cam-generate`` writes such a file), but any images in
the annotation format work. Relative ``fpath``s resolve against the JSON file's folder. The extra
images are appended after the training items and every sampler draws from them, but they do not change
the protocol's class counts (``DataSplits.stats.train_counts``) that shot groups, FCC ranks and
class-count losses use: after CAM generation every class has about n_max images to sample from, yet a
tail class is still a tail class. For a training split held in memory (CIFAR, or small image sets decoded
once) the images are decoded once here and must have the training images' size; for an image-file split
they are appended as files and go through the same decoding and augmentation as the others.
"""

from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from fcc_lt.data.annotations import check_files, read_annotations, resolve_paths
from fcc_lt.data.datasets import ArrayDataset, DataSplits
from fcc_lt.util.errors import DataError


def _decode(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except Exception as err:  # PIL raises many types for unreadable files
        raise DataError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None


def decode_exact(paths: list[str], size: tuple[int, int], source: str) -> torch.Tensor:
    """uint8 (N, 3, H, W) of images that must all be exactly ``size`` (no resizing: they are training data)."""
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        arrays = list(pool.map(_decode, paths, chunksize=64))
    wrong = [(p, a.shape[:2]) for p, a in zip(paths, arrays) if a.shape[:2] != size]
    if wrong:
        p, shape = wrong[0]
        raise DataError(f"{source}: {len(wrong)} images are not {size[0]}x{size[1]} like the training images "
                        f"(e.g. {p}: {shape[0]}x{shape[1]})")
    stacked = np.stack(arrays) if arrays else np.zeros((0, *size, 3), dtype=np.uint8)
    return torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()


def add_extra_train(splits: DataSplits, json_path: str | Path) -> DataSplits:
    """``splits`` with the images of ``json_path`` appended to its training split."""
    from fcc_lt.data.images import ImageFiles

    json_path = Path(json_path).expanduser()
    where = f"data.extra_train_json {json_path}"
    try:
        ann = read_annotations(json_path)
    except DataError as err:
        hint = " (for CAM-based sampling, run `fcc data cam-generate` first)" if not json_path.exists() else ""
        raise DataError(f"data.extra_train_json: {err}{hint}") from None
    if ann.num_classes != splits.num_classes:
        raise DataError(f"{where}: num_classes is {ann.num_classes}, the dataset ({splits.name}) has "
                        f"{splits.num_classes}")
    paths = resolve_paths(ann, json_path.parent)
    check_files(paths, "exists", str(json_path), json_path.parent)
    labels = torch.from_numpy(ann.labels)
    train = splits.train
    if isinstance(train, ArrayDataset):
        images = decode_exact(paths, (train.images.shape[2], train.images.shape[3]), where)
        merged = ArrayDataset(torch.cat([train.images, images]), torch.cat([train.labels, labels]),
                              f"{train.source} + {json_path}")
    elif isinstance(train, ImageFiles):
        own = [train.path(i) for i in range(len(train))]
        merged = ImageFiles(own + paths, torch.cat([train.labels, labels]), f"{train.source} + {json_path}")
    else:
        raise DataError(f"{where}: cannot add images to a training split of type {type(train).__name__}")
    return dataclasses.replace(splits, name=f"{splits.name} + {len(ann)} extra", train=merged,
                               protocol_counts=splits.stats.train_counts)
