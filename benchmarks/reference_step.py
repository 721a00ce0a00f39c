"""A training step written the way the original FCC / bag-of-tricks code works, timed against fcc's
full step in the same process.

The reference step (written here from the original's description, not copied from it):
- data: each training image is a JPEG file, decoded with PIL in DataLoader worker processes, then
  zero-padded by 4, randomly cropped to 32x32 and flipped (Python random numbers per image), turned into
  a float tensor and normalised, one image at a time; batches are collated and copied to the device;
- FCC: in the forward pass the factor list tau is rebuilt from the class counts, and a Python loop over
  the batch multiplies each sample's last feature maps by ``tau[label]``, indexing the Python list by a
  device label (a host-device synchronisation per sample on a GPU);
- the same ResNet-32 in NCHW, eager, fp32 (``--reference-amp`` for autocast), for-loop SGD, and the
  per-step metrics read back to the host (``loss.item()``, accuracy ``.item()``) as the original's
  meters did.
fcc's step: Trainer's per-step work (device-resident uint8 data, batched crop/flip/normalise, FCC as one
gather and multiply, device-side tallies), with the plan `auto` chooses for a 200-epoch run (on CUDA:
bf16, channels-last, compiled; on the CPU: fp32, channels-last, compiled), plus fcc's step in NCHW
eager fp32 (the reference's numerics) to separate the pipeline from the model settings.

Both are timed in alternating rounds after a warm-up round (which starts the workers and compiles);
the median round counts. Compare the ratio.

    python benchmarks/reference_step.py [--archive local/cifar10-jpeg.tar.gz] [--data-root data/cifar10-real]
                                        [--device auto] [--workers 8] [--steps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from cifar_from_jpeg import CLASSES  # this folder is on sys.path
from fcc_lt.config.load import load_config
from fcc_lt.data.cifar import CIFAR_MEAN, CIFAR_STD, SPECS, DataWarning, long_tail_counts
from fcc_lt.engine.speed import compiled_call, plan_of
from fcc_lt.engine.trainer import Trainer
from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least
from train_throughput import full_step  # the trainer's per-step work (this folder is on sys.path)


class JpegFiles(Dataset):
    """Per-image decode and transforms, as the original's dataset __getitem__ did."""

    def __init__(self, paths: list[str], labels: list[int]) -> None:
        self.paths, self.labels = paths, labels
        self.mean = np.array(CIFAR_MEAN, dtype=np.float32).reshape(3, 1, 1)
        self.std = np.array(CIFAR_STD, dtype=np.float32).reshape(3, 1, 1)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as im:
            pixels = np.asarray(im.convert("RGB"))  # (32, 32, 3) uint8
        padded = np.pad(pixels, ((4, 4), (4, 4), (0, 0)))  # RandomCrop(32, padding=4)
        top, left = random.randint(0, 8), random.randint(0, 8)
        crop = padded[top:top + 32, left:left + 32]
        if random.random() < 0.5:  # RandomHorizontalFlip
            crop = crop[:, ::-1]
        chw = crop.transpose(2, 0, 1).astype(np.float32) / 255.0  # ToTensor
        return torch.from_numpy((chw - self.mean) / self.std), self.labels[i]  # Normalize


def lt_jpegs(archive: Path | None, folder: Path, imbalance: float) -> tuple[list[str], list[int], list[int]]:
    """The CIFAR-10-LT training subset as JPEG files under ``folder`` (from the archive, or synthetic
    JPEGs of random pixels when there is none); returns paths, labels and the per-class counts."""
    counts = long_tail_counts(10, imbalance, 5000)
    paths: list[str] = []
    labels: list[int] = []
    if archive is not None and archive.is_file():
        with tarfile.open(archive) as tar:
            members = sorted((m for m in tar if m.isfile() and Path(m.name).parts[-3:-2] == ("train",)),
                             key=lambda m: m.name)
            taken = [0] * 10
            for m in members:
                c = CLASSES.index(Path(m.name).parts[-2])
                if taken[c] >= counts[c]:
                    continue
                taken[c] += 1
                path = folder / f"{c}_{taken[c]:04d}.jpg"
                data = tar.extractfile(m)
                assert data is not None
                path.write_bytes(data.read())
                paths.append(str(path))
                labels.append(c)
    else:
        rng = np.random.default_rng(0)
        for c, n in enumerate(counts):
            for k in range(n):
                path = folder / f"{c}_{k:04d}.jpg"
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path, quality=75)
                paths.append(str(path))
                labels.append(c)
    return paths, labels, counts


class ReferenceStep:
    """One optimizer step the original way (see the module doc)."""

    def __init__(self, trainer: Trainer, counts: list[int], loader: DataLoader, amp: torch.dtype | None,
                 gamma: float = 0.5) -> None:
        torch.manual_seed(0)
        from fcc_lt.models.network import build_network

        self.device = trainer.device
        self.net = build_network(trainer.cfg, 10).to(self.device)  # NCHW, eager
        self.net.train()
        t = trainer.cfg.train
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=t.lr, momentum=t.momentum,
                                         weight_decay=t.weight_decay, nesterov=True, foreach=False)
        self.counts, self.gamma, self.amp = counts, gamma, amp
        self.loader = loader
        self.batches: Iterator = iter(loader)
        self.losses: list[float] = []

    def tau(self) -> list[float]:
        """Rebuilt in every forward pass, as the original did: by rank of class frequency."""
        order = sorted(range(len(self.counts)), key=lambda c: -self.counts[c])
        rank = {c: k for k, c in enumerate(order)}
        n = len(self.counts)
        return [1 + self.gamma - rank[c] * (self.gamma / n) for c in range(n)]

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        maps = self.net.backbone(x).clone()
        tau = self.tau()
        for i in range(len(labels)):
            maps[i] = maps[i] * tau[labels[i]]  # a Python list indexed by a device label: one sync each
        return self.net.head(self.net.pool(maps))

    def __call__(self) -> None:
        try:
            images, labels = next(self.batches)
        except StopIteration:
            self.batches = iter(self.loader)
            images, labels = next(self.batches)
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            logits = self.forward(images, labels)
        loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())  # the meters: a read-back per step
        _ = (logits.argmax(1) == labels).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, help="the CIFAR-10 JPEG archive (default local/cifar10-jpeg.tar.gz "
                        "when it is there, else synthetic JPEGs)")
    parser.add_argument("--data-root", default="data/cifar10-real", help="CIFAR-10 for fcc's step (else synthetic)")
    parser.add_argument("--device", type=argtypes.device, default="auto")
    parser.add_argument("--workers", type=int_at_least(0), default=min(8, os.cpu_count() or 1))
    parser.add_argument("--steps", type=int_at_least(1), default=20)
    parser.add_argument("--rounds", type=int_at_least(1), default=3)
    parser.add_argument("--threads", type=int_at_least(1), default=None)
    parser.add_argument("--reference-amp", choices=["off", "fp16", "bf16"], default="off")
    parser.add_argument("--no-compile", action="store_true", help="fcc's auto step without torch.compile")
    parser.add_argument("--json", type=Path, help="also write the rates to this file (benchmarks/gpu_check.sh)")
    args = parser.parse_args()
    if args.archive is None:
        args.archive = Path("local/cifar10-jpeg.tar.gz")
    elif not args.archive.is_file():
        parser.error(f"--archive {args.archive}: no such file (the CIFAR-10 JPEG archive, cifar10-jpeg.tar.gz)")
    if args.threads:
        torch.set_num_threads(args.threads)
    random.seed(0)
    warnings.filterwarnings("ignore", category=DataWarning)  # re-encoded CIFAR: checksums differ, as expected

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_root)
        if not (root / SPECS["cifar10"].folder).is_dir():
            from train_throughput import write_synthetic_cifar10

            root = Path(tmp) / "data"
            write_synthetic_cifar10(root)
        jpeg_dir = Path(tmp) / "jpeg"
        jpeg_dir.mkdir()
        paths, labels, counts = lt_jpegs(args.archive, jpeg_dir, 100)
        base = [f"data.root={root}", "data.imbalance_factor=100", f"device={args.device}", "train.progress=false",
                "train.warmup_epochs=0", "train.milestones=[]", "fcc.enabled=true", "fcc.start_epoch=1",
                "eval.confusion_png_max_classes=0"]
        compile_key = "train.compile=off" if args.no_compile else "train.compile=auto"
        ours = Trainer(load_config(None, [*base, "train.epochs=200", compile_key, f"out={tmp}/ours"]), overwrite=True)
        plain = Trainer(load_config(None, [*base, "train.epochs=200", "train.compile=off", "train.amp=off",
                                           "train.channels_last=false", f"out={tmp}/plain"]), overwrite=True)
        for t in (ours, plain):
            t.model.train()
        device = ours.device
        amp = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}[args.reference_amp]
        loader = DataLoader(JpegFiles(paths, labels), batch_size=128, shuffle=True, drop_last=True,
                            num_workers=args.workers, pin_memory=device.type == "cuda",
                            persistent_workers=args.workers > 0)
        reference = ReferenceStep(ours, counts, loader, amp)
        ours_full, plain_full = full_step(ours, args.steps), full_step(plain, args.steps)

        def run_reference(r: int) -> None:
            for _ in range(args.steps):
                reference()

        plan = plan_of(ours.model).reason
        variants: dict[str, Callable[[int], None]] = {
            "reference step (per-image PIL in workers, per-sample FCC loop, NCHW eager)": run_reference,
            f"fcc full step, auto for 200 epochs ({plan})": lambda r: ours_full(2 + r),
            "fcc full step, NCHW eager fp32": lambda r: plain_full(2 + r),
        }
        seconds: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.rounds + 1):
            for name, run in variants.items():
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t0 = time.perf_counter()
                run(r)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if r:
                    seconds[name].append(time.perf_counter() - t0)
            print(f"round {r} done", flush=True)

    rate = {k: args.steps * 128 / statistics.median(v) for k, v in seconds.items()}
    ref = next(iter(rate.values()))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"\ndevice {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.workers} DataLoader workers for the reference, {len(paths)} JPEG files "
          f"({'archive ' + str(args.archive) if args.archive.is_file() else 'synthetic'}), reference amp "
          f"{args.reference_amp}, fcc amp {ours.amp_dtype}, {args.steps} steps x {args.rounds} rounds (median)")
    compiled = getattr(compiled_call(ours.forward), "seconds", None)
    if compiled is not None:
        print(f"compile: {compiled:.1f} s (first compiled forward and backward)")
    print("\n| step | images/s | / reference |")
    print("|---|---:|---:|")
    for k, v in rate.items():
        print(f"| {k} | {v:,.0f} | {v / ref:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps({"device": name, "images_per_s": rate, "compile_seconds": compiled,
                                         "steps": args.steps, "rounds": args.rounds, "workers": args.workers}))


if __name__ == "__main__":
    main()
