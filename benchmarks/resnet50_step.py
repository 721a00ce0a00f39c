"""Images/s of the ImageNet training step of a big backbone (ResNet-50 by default) at 224 pixels.

One step = forward through the network the trainer builds (backbone -> [FCC] -> pool -> linear head,
1000 classes) with the trainer's objective (cross-entropy), backward, and an SGD step (nesterov,
momentum 0.9, weight decay 1e-4), under the chosen autocast dtype (fp16 with a grad scaler) and memory
format. Batches are made beforehand on the device, so no data loading is timed. Each setting runs
``--warmup`` untimed steps, then ``--steps`` timed ones.

    python benchmarks/resnet50_step.py [--device cpu] [--batch-size 16] [--amp off bf16]
                                       [--memory-format contiguous channels_last] [--backbone resnet50]

Prints one table row per (amp, memory format) combination.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from fcc_lt.config.load import load_config
from fcc_lt.engine.step import MethodParts, TrainingForward, objective
from fcc_lt.methods.losses import CrossEntropy
from fcc_lt.methods.mixers import NoMix
from fcc_lt.models.network import build_network
from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least
from fcc_lt.util.precision import autocast, autocast_dtype, grad_scaler
from fcc_lt.util.registry import BACKBONES


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(args: argparse.Namespace, device: torch.device, amp: str, memory_format: str) -> dict[str, float]:
    overrides = [f"model.backbone={args.backbone}", f"fcc.enabled={str(args.fcc).lower()}", "fcc.gamma=0.1"]
    cfg = load_config(None, overrides)
    counts = [1] * args.classes
    torch.manual_seed(0)
    model = build_network(cfg, args.classes).to(device).train()
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    model.to(memory_format=fmt)
    forward, parts = TrainingForward(model), MethodParts(CrossEntropy(counts).to(device), NoMix(counts))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True)
    dtype = autocast_dtype(amp, device)
    scaler = grad_scaler(device, dtype)
    images = torch.randn(args.batch_size, 3, args.size, args.size, device=device).contiguous(memory_format=fmt)
    labels = torch.randint(0, args.classes, (args.batch_size,), device=device)
    gen = torch.Generator(device=device)

    def step() -> None:
        with autocast(device, dtype):
            out = objective(forward, parts, images, labels, 1, gen)
        loss = out.loss.float()
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    return {"ms_per_step": 1000 * seconds, "images_per_s": args.batch_size / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=argtypes.device, default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--backbone", default="resnet50", choices=BACKBONES.names())
    parser.add_argument("--batch-size", type=int_at_least(1), default=16)
    parser.add_argument("--size", type=int_at_least(1), default=224, help="input side in pixels")
    parser.add_argument("--classes", type=int_at_least(1), default=1000)
    parser.add_argument("--steps", type=int_at_least(1), default=5, help="timed steps per setting")
    parser.add_argument("--warmup", type=int_at_least(0), default=2, help="untimed steps per setting")
    parser.add_argument("--amp", nargs="+", default=["off"], choices=["off", "bf16", "fp16", "auto"])
    parser.add_argument("--memory-format", nargs="+", default=["contiguous"],
                        choices=["contiguous", "channels_last"])
    parser.add_argument("--fcc", action="store_true", help="FCC active (one gather and multiply per step)")
    parser.add_argument("--threads", type=int_at_least(1), default=None, help="torch intra-op threads (CPU)")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    print(f"# {args.backbone} training step, {args.size}x{args.size}, batch {args.batch_size}, "
          f"{args.classes} classes, fcc {'on' if args.fcc else 'off'}")
    print(f"# torch {torch.__version__}, device {device} ({where}), {torch.get_num_threads()} threads, "
          f"{args.warmup} warm-up + {args.steps} timed steps per row")
    print("| amp | memory format | ms/step | images/s |")
    print("|---|---|---:|---:|")
    for amp in args.amp:
        for fmt in args.memory_format:
            r = measure(args, device, amp, fmt)
            print(f"| {amp} | {fmt} | {r['ms_per_step']:.0f} | {r['images_per_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
