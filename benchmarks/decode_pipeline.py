"""Images/s of the image-file pipeline alone: decode + transform in DataLoader workers, no model.

Pipelines (each as the training/evaluation loaders run them, batches handed to the device and
normalised there; the device is the CPU unless --device says otherwise):
- train rrc_flip: random-resized crop + flip while decoding (and a second row with colour jitter 0.4,
  which runs on the batch on the device: on a CPU it competes with the workers for the cores);
- eval: shorter side to int(size/0.875), centre crop.
Each (pipeline, workers) is timed over ``--epochs`` epochs after one warm-up epoch (which starts the
workers, kept persistent), so the figure is the steady-state rate.

    python benchmarks/decode_pipeline.py [--data JSON_OR_CLASS_FOLDER] [--workers 1 2] [--size 224]
    python benchmarks/decode_pipeline.py --cifar10-jpeg ../shared/data/cifar10-jpeg.tar.gz

Without --data, 256 JPEGs of about 400x300 (quality 90, smooth gradients plus noise, like photos
compress) are written to a temporary folder. ``--cifar10-jpeg`` runs the small-image path instead:
the archive's class folders -> `fcc data from-folder` JSON -> decoded once into memory (data.loader
device) -> DeviceLoader epochs with crop_flip, reporting the decode-once time and the loader's rate.
"""

from __future__ import annotations

import argparse
import os
import platform
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fcc_lt.data.annotations import read_annotations, resolve_paths
from fcc_lt.data.augment import ColorJitter, Normalize
from fcc_lt.data.image_loader import WorkerEvalLoader, WorkerLoader
from fcc_lt.data.images import IMAGENET_MEAN, IMAGENET_STD, CenterResizeCrop, ImageFiles, RandomResizedCropFlip
from fcc_lt.methods.samplers import InstanceSampler
from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least


def write_jpegs(folder: Path, count: int, seed: int = 0) -> ImageFiles:
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for i in range(count):
        w, h = int(rng.integers(360, 441)), int(rng.integers(270, 331))
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (w + h) + rng.integers(0, 128)], axis=2)
        pixels = np.clip(base + rng.normal(0, 12, size=(h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
        labels.append(i % 10)
    return ImageFiles(paths, labels, str(folder))


def load_files(data: Path) -> ImageFiles:
    if data.suffix == ".json":
        ann = read_annotations(data)
        return ImageFiles(resolve_paths(ann, data.parent), ann.labels, str(data))
    from fcc_lt.data.images import scan_folder

    _, files = scan_folder(data)
    paths = [str(data / f) for class_files in files for f in class_files]
    labels = [c for c, class_files in enumerate(files) for _ in class_files]
    return ImageFiles(paths, labels, str(data))


def rate_train(files: ImageFiles, workers: int, size: int, batch: int, epochs: int, device: torch.device,
               jitter: float) -> float:
    sampler = InstanceSampler(files.labels.to(device), int(files.labels.max()) + 1)
    augment = ColorJitter(jitter, jitter, jitter) if jitter else None
    loader = WorkerLoader(files, batch, device, sampler=sampler, transform=RandomResizedCropFlip(size),
                          normalize=Normalize(IMAGENET_MEAN, IMAGENET_STD), augment=augment, workers=workers,
                          prefetch=2)
    for _ in loader.epoch(0):  # warm-up: starts the persistent workers
        pass
    n = 0
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        for x, _ in loader.epoch(epoch):
            n += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - start)


def rate_eval(files: ImageFiles, workers: int, size: int, batch: int, epochs: int, device: torch.device) -> float:
    loader = WorkerEvalLoader(files, batch, device, transform=CenterResizeCrop(size),
                              normalize=Normalize(IMAGENET_MEAN, IMAGENET_STD), workers=workers, persistent=True)
    for _ in loader:  # warm-up: starts the workers
        pass
    n = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for x, _ in loader:
            n += x.shape[0]
    return n / (time.perf_counter() - start)


def cpu_rate(files: ImageFiles, transform: RandomResizedCropFlip | CenterResizeCrop) -> float:
    """Images per CPU-second of one transform in this process: what one worker does on a free core
    (process time, so other load on a shared machine hardly changes it)."""
    start = time.process_time()
    for i in range(len(files)):
        transform(files.path(i), i)
    return len(files) / (time.process_time() - start)


def cifar10_jpeg(archive: Path, workers: int) -> None:
    """From-folder + decode-once + DeviceLoader smoke run on the real 32x32 JPEG CIFAR-10."""
    from fcc_lt.config.load import load_config
    from fcc_lt.data.build import build_splits, build_train_loader
    from fcc_lt.data.tools.convert import convert_folder
    from fcc_lt.engine.build import build_sampler
    from fcc_lt.util.distributed import DistContext

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
        t1 = time.perf_counter()
        base = next(p.parent for p in root.rglob("train") if (p.parent / "test").is_dir())
        for split in ("train", "test"):
            convert_folder(base / split, root / f"{split}.json", sizes=True)
        t2 = time.perf_counter()
        cfg = load_config(None, ["data.dataset=json", f"data.train_json={root / 'train.json'}",
                                 f"data.test_json={root / 'test.json'}", "data.image_size=32",
                                 "data.test_crop_ratio=1.0", f"data.workers={workers}", "device=cpu",
                                 "train.batch_size=512"])
        splits = build_splits(cfg)
        t3 = time.perf_counter()
        ctx = DistContext()
        loader = build_train_loader(cfg, splits, build_sampler(cfg, splits, ctx), ctx)
        n = 0
        t4 = time.perf_counter()
        for x, _ in loader.epoch(1):
            n += x.shape[0]
        t5 = time.perf_counter()
        print(f"cifar10-jpeg: extract {t1 - t0:.1f} s, from-folder JSON (with header sizes) {t2 - t1:.1f} s, "
              f"decode once ({len(splits.train)} train + {len(splits.test)} test, {workers} workers) "
              f"{t3 - t2:.1f} s = {(len(splits.train) + len(splits.test)) / (t3 - t2):.0f} images/s; "
              f"train class counts {splits.class_counts}; DeviceLoader epoch (crop_flip, batch 512) "
              f"{n / (t5 - t4):.0f} images/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a JSON annotation file or a class-per-folder tree")
    parser.add_argument("--count", type=int_at_least(1), default=256, help="generated JPEGs when --data is not given")
    parser.add_argument("--workers", type=int_at_least(0), nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int_at_least(1), default=224)
    parser.add_argument("--batch-size", type=int_at_least(1), default=32)
    parser.add_argument("--epochs", type=int_at_least(1), default=2, help="timed epochs after the warm-up one")
    parser.add_argument("--device", type=argtypes.device, default="cpu")
    parser.add_argument("--cifar10-jpeg", type=Path, help="run the small-image (device loader) smoke test")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"# {platform.node()} {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, Pillow {Image.__version__}")
    if args.cifar10_jpeg:
        cifar10_jpeg(args.cifar10_jpeg, max(args.workers))
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = load_files(args.data) if args.data else write_jpegs(Path(tmp), args.count)
        print(f"{len(files)} images from {files.source}, output {args.size}x{args.size}, batch {args.batch_size}")
        print(f"per CPU-second in one process: rrc_flip {cpu_rate(files, RandomResizedCropFlip(args.size)):.0f}, "
              f"eval {cpu_rate(files, CenterResizeCrop(args.size)):.0f} images")
        print("| pipeline | workers | images/s |")
        print("|---|---:|---:|")
        for workers in args.workers:
            r = rate_train(files, workers, args.size, args.batch_size, args.epochs, device, 0.0)
            print(f"| train rrc_flip | {workers} | {r:.0f} |", flush=True)
            r = rate_train(files, workers, args.size, args.batch_size, args.epochs, device, 0.4)
            print(f"| train rrc_flip + colour jitter 0.4 (on {device.type}) | {workers} | {r:.0f} |", flush=True)
            r = rate_eval(files, workers, args.size, args.batch_size, args.epochs, device)
            print(f"| eval resize + centre crop | {workers} | {r:.0f} |", flush=True)


if __name__ == "__main__":
    main()
