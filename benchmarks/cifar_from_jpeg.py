"""Build CIFAR folders in the official "python version" layout from the JPEG CIFAR-10 archive, offline.

    python benchmarks/cifar_from_jpeg.py ARCHIVE OUT [--cifar100-standin]

ARCHIVE is cifar10-jpeg.tar.gz (``{train,test}/<class>/NNNN.jpg``, 5,000 training and 1,000 test images
per class, see ../shared/data/README.md). OUT receives ``cifar-10-batches-py/`` (five training batches,
``test_batch``, ``batches.meta``), which fcc reads as CIFAR-10 (with a checksum warning: the pixels are
re-encoded). With ``--cifar100-standin`` it also writes ``cifar-100-python/`` with the same images
relabelled into 100 classes of 500 training and 100 test images each (class 10 * c + j holds the j-th
block of CIFAR-10 class c's images, in file order): the shapes of CIFAR-100 (and so of CIFAR-100-LT,
10,847 training images at IF 100) for speed measurements only; its accuracies mean nothing.

A GPU machine gets the checkout alone, so benchmarks/gpu_check.sh builds its data with this script from
the archive copied into the checkout's git-ignored local/ folder. Needs numpy and pillow; no network.
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (images (N, 32, 32, 3) uint8, labels (N,))}, members sorted by name within each split."""
    found: dict[str, list[tuple[str, int, np.ndarray]]] = {"train": [], "test": []}
    with tarfile.open(path) as archive:
        for member in archive:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3 or parts[-3] not in found or parts[-2] not in CLASSES:
                continue
            data = archive.extractfile(member)
            assert data is not None
            with Image.open(io.BytesIO(data.read())) as im:
                pixels = np.asarray(im.convert("RGB"), dtype=np.uint8)
            if pixels.shape != (32, 32, 3):
                raise SystemExit(f"{path}: {member.name} is {pixels.shape}, not a 32x32 RGB CIFAR image")
            found[parts[-3]].append((member.name, CLASSES.index(parts[-2]), pixels))
    out = {}
    for split, items in found.items():
        if not items:
            raise SystemExit(f"{path}: no {split}/<class>/*.jpg images; is this the CIFAR-10 JPEG archive?")
        items.sort(key=lambda item: item[0])
        out[split] = (np.stack([p for _, _, p in items]), np.array([c for _, c, _ in items], dtype=np.int64))
    return out


def planes(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072): R, G, B planes, the official row layout."""
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2).reshape(len(images), -1))


def dump(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


def write_cifar10(splits: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> Path:
    folder = out / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = splits["train"]
    order = np.random.default_rng(0).permutation(len(labels))  # class-sorted files -> mixed batches
    images, labels = images[order], labels[order]
    for i, chunk in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
        dump(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5", "data": planes(images[chunk]),
                                          "labels": labels[chunk].tolist()})
    test_images, test_labels = splits["test"]
    dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": planes(test_images),
                                 "labels": test_labels.tolist()})
    dump(folder / "batches.meta", {"label_names": list(CLASSES), "num_vis": 3072})
    return folder


def hundred_classes(labels: np.ndarray) -> np.ndarray:
    """Class 10 * c + j for the j-th tenth (in order) of CIFAR-10 class c's images."""
    fine = np.empty_like(labels)
    for c in range(10):
        where = np.flatnonzero(labels == c)
        fine[where] = 10 * c + (np.arange(len(where)) * 10) // len(where)
    return fine


def write_cifar100_standin(splits: dict[str, tuple[np.ndarray, np.ndarray]], out: Path) -> Path:
    folder = out / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        images, labels = splits[split]
        dump(folder / split, {"data": planes(images), "fine_labels": hundred_classes(labels).tolist(),
                              "coarse_labels": labels.tolist()})
    names = [f"{CLASSES[c]}_{j}" for c in range(10) for j in range(10)]
    dump(folder / "meta", {"fine_label_names": names, "coarse_label_names": list(CLASSES)})
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("archive", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--cifar100-standin", action="store_true",
                        help="also write cifar-100-python/ with the images relabelled into 100 classes")
    args = parser.parse_args(argv)
    if not args.archive.is_file():
        print(f"{args.archive}: no such file (the CIFAR-10 JPEG archive, cifar10-jpeg.tar.gz)", file=sys.stderr)
        return 2
    splits = read_archive(args.archive)
    print(f"read {len(splits['train'][1])} training and {len(splits['test'][1])} test images from {args.archive}")
    print(f"wrote {write_cifar10(splits, args.out)}")
    if args.cifar100_standin:
        print(f"wrote {write_cifar100_standin(splits, args.out)} (a speed-only stand-in: 100 relabelled classes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
