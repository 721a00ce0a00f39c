"""Tiny CIFAR datasets written in the official "python version" formats, for tests without network.

Images are random but class-dependent (a per-class colour offset), so a model can learn them.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_images(labels: np.ndarray, num_classes: int, seed: int) -> np.ndarray:
    """uint8 (N, 3072) rows: noise plus a colour that depends on the class."""
    base = np.random.default_rng(12345).integers(0, 256, size=(num_classes, 3), dtype=np.int64)
    rng = np.random.default_rng(seed)
    n = len(labels)
    pixels = rng.integers(0, 64, size=(n, 3, 32 * 32), dtype=np.int64) + base[labels][:, :, None] * 3 // 4
    return np.clip(pixels, 0, 255).astype(np.uint8).reshape(n, 3072)


def _dump(obj: object, path: Path, bytes_keys: bool) -> None:
    if bytes_keys:
        obj = {k.encode(): v for k, v in obj.items()}  # type: ignore[union-attr]
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_class_train: int = 50, per_class_test: int = 10, seed: int = 0,
                  bytes_keys: bool = True) -> Path:
    """root/cifar-10-batches-py with 5 train batches, a test batch and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_labels = rng.permutation(np.repeat(np.arange(10), per_class_train))
    test_labels = rng.permutation(np.repeat(np.arange(10), per_class_test))
    train = make_images(train_labels, 10, seed + 1)
    for b, part in enumerate(np.array_split(np.arange(len(train_labels)), 5)):
        _dump({"batch_label": f"training batch {b + 1} of 5", "labels": train_labels[part].tolist(),
               "data": train[part], "filenames": [f"img_{i}.png".encode() for i in part]},
              folder / f"data_batch_{b + 1}", bytes_keys)
    _dump({"batch_label": "testing batch 1 of 1", "labels": test_labels.tolist(),
           "data": make_images(test_labels, 10, seed + 2), "filenames": []}, folder / "test_batch", bytes_keys)
    _dump({"label_names": [n.encode() if bytes_keys else n for n in CIFAR10_NAMES],
           "num_cases_per_batch": len(train_labels) // 5, "num_vis": 3072}, folder / "batches.meta", bytes_keys)
    return folder


def write_cifar100(root: Path, per_class_train: int = 10, per_class_test: int = 2, seed: int = 0) -> Path:
    """root/cifar-100-python with train, test and meta (fine and coarse labels)."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        labels = rng.permutation(np.repeat(np.arange(100), per_class))
        _dump({"batch_label": split, "fine_labels": labels.tolist(), "coarse_labels": (labels // 5).tolist(),
               "data": make_images(labels, 100, seed + len(split)), "filenames": []}, folder / split, True)
    _dump({"fine_label_names": [f"class{c}" for c in range(100)],
           "coarse_label_names": [f"super{c}" for c in range(20)]}, folder / "meta", True)
    return folder


def make_archive(folder: Path, archive: Path) -> str:
    """Pack ``folder`` as the official archive does (folder at the top level); returns the MD5."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    archive.write_bytes(buf.getvalue())
    return hashlib.md5(buf.getvalue()).hexdigest()


if __name__ == "__main__":  # `python tests/cifar_fixtures.py DIR`: a tiny CIFAR-10 for smoke runs (CI's wheel check)
    import argparse

    parser = argparse.ArgumentParser(description="write a tiny synthetic CIFAR-10 (official format) into DIR")
    parser.add_argument("root", type=Path, help="folder that receives cifar-10-batches-py/")
    parser.add_argument("--per-class-train", type=int, default=100,
                        help="training images per class (default 100: enough for the shipped IF-100 subsets)")
    parser.add_argument("--per-class-test", type=int, default=10, help="test images per class (default 10)")
    args = parser.parse_args()
    print(write_cifar10(args.root, args.per_class_train, args.per_class_test))
