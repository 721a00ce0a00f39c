"""Tiny image-file datasets written by the tests: class folders, JSON annotation files, odd images.

Images are noise plus a colour that depends on the class, so a tiny model can learn them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def class_image(label: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    base = np.random.default_rng(1000 + label).integers(0, 256, size=3)
    noise = rng.integers(0, 64, size=(height, width, 3))
    return np.clip(noise + base * 3 // 4, 0, 255).astype(np.uint8)


def write_folder(root: Path, counts: Sequence[int], size: tuple[int, int] = (32, 32), fmt: str = "png",
                 seed: int = 0, names: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """root/<class name>/<i>.<fmt> with counts[c] images of class c; returns (relative path, label)."""
    rng = np.random.default_rng(seed)
    names = list(names) if names is not None else [f"class_{c:02d}" for c in range(len(counts))]
    out = []
    for c, n in enumerate(counts):
        (root / names[c]).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rel = f"{names[c]}/{i:04d}.{fmt}"
            Image.fromarray(class_image(c, size[0], size[1], rng)).save(root / rel)
            out.append((rel, c))
    return out


def write_json(path: Path, entries: Sequence[tuple[str, int]], num_classes: int,
               size: tuple[int, int] | None = (32, 32), **extra: object) -> Path:
    annotations = []
    for i, (fpath, label) in enumerate(entries):
        entry: dict[str, object] = {"image_id": i, "fpath": fpath, "category_id": label}
        if size is not None:
            entry["im_height"], entry["im_width"] = size
        annotations.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"annotations": annotations, "num_classes": num_classes, **extra}))
    return path


def write_json_dataset(root: Path, train_counts: Sequence[int], test_per_class: int = 2,
                       size: tuple[int, int] = (32, 32), fmt: str = "png") -> tuple[Path, Path]:
    """root/{train,test}/<class>/... images plus root/train.json and root/test.json (relative fpaths)."""
    c = len(train_counts)
    train = write_folder(root / "train", train_counts, size, fmt, seed=1)
    test = write_folder(root / "test", [test_per_class] * c, size, fmt, seed=2)
    return (write_json(root / "train.json", [(f"train/{p}", y) for p, y in train], c, size),
            write_json(root / "test.json", [(f"test/{p}", y) for p, y in test], c, size))
