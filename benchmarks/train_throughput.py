"""Images/s of the full training step against the model-only step, ResNet-32, batch 128.

full step  = DeviceLoader (index gather, pad-crop-flip, normalise) + forward + loss + backward + SGD,
             exactly the Trainer's step;
model only = the same Trainer step on batches made beforehand (no loader, no augmentation).

Both are timed in alternating rounds inside one process, so machine drift affects both alike; the
ratio full/model-only is the figure to compare (the goal: the data pipeline costs < 5%).

    python benchmarks/train_throughput.py [--data-root data/cifar10-real] [--device cpu] [--steps 20]

Without --data-root (or when the folder lacks CIFAR-10) a synthetic CIFAR-10 folder with random pixels
is written to a temporary directory; the pixel values do not affect the speed.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fcc.config import load_config
from fcc.train import Trainer


def write_synthetic_cifar10(root: Path) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, 10000)
        labels[:10] = np.arange(10)
        batch = {"data": rng.integers(0, 256, (10000, 3072), dtype=np.uint8), "labels": labels.tolist()}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=4)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="data/cifar10-real")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--amp", default="auto")
    parser.add_argument("--fcc", action="store_true", help="enable FCC (active from epoch 1)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_root)
        if not (root / "cifar-10-batches-py").is_dir():
            root = Path(tmp) / "data"
            write_synthetic_cifar10(root)
        cfg = load_config(None, [
            f"data.root={root}", "data.imbalance_factor=100", f"device={args.device}",
            f"train.batch_size={args.batch_size}", f"train.amp={args.amp}", "train.progress=false",
            "train.epochs=1", "train.warmup_epochs=0", "train.milestones=[]", f"out={tmp}/run",
            f"fcc.enabled={str(args.fcc).lower()}",
        ])
        trainer = Trainer(cfg)
        trainer._set_lr(1)
        trainer._train_mode()
        device = trainer.device
        loader = trainer.train_loader
        steps_per_epoch = loader.steps_per_epoch(1)
        # Pre-made batches: already augmented and normalised, resident on the device.
        premade = []
        for i, batch in enumerate(loader.epoch(1)):
            premade.append(batch)
            if i + 1 == args.steps:
                break

        def run_full(epoch: int) -> float:
            it = loader.epoch(epoch)
            sync(device)
            t0 = time.perf_counter()
            for step in range(args.steps):
                x, y = next(it)
                trainer._step(x, y, epoch, step)
            sync(device)
            return time.perf_counter() - t0

        def run_model_only(epoch: int) -> float:
            sync(device)
            t0 = time.perf_counter()
            for step, (x, y) in enumerate(premade):
                trainer._step(x, y, epoch, step)
            sync(device)
            return time.perf_counter() - t0

        run_full(1)  # warm-up (allocator, cudnn autotuning)
        run_model_only(1)
        full, model_only = [], []
        for r in range(args.rounds):
            full.append(run_full(2 + r))
            model_only.append(run_model_only(2 + r))

    images = args.steps * args.batch_size
    f = images / statistics.median(full)
    m = images / statistics.median(model_only)
    print(f"device {device}, threads {torch.get_num_threads()}, amp {trainer.amp_dtype}, batch {args.batch_size}, "
          f"{args.steps} steps x {args.rounds} rounds (median), {steps_per_epoch} steps/epoch")
    print("| step | images/s |")
    print("|---|---|")
    print(f"| full training step (loader + augmentation + model) | {f:,.0f} |")
    print(f"| model-only step (pre-made tensors) | {m:,.0f} |")
    print(f"| ratio full / model-only | {f / m:.3f} (pipeline cost {100 * (1 - f / m):+.1f}%) |")


if __name__ == "__main__":
    main()
