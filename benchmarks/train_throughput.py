"""Images/s of the training step and of evaluation, every variant side by side in one process.

Variants (ResNet-32, CE + FCC active, batch 128, the trainer's fused SGD):
- model-only steps, on batches made beforehand and resident on the device: forward (with FCC's factors
  as ones), cross-entropy, backward, optimizer step; in NCHW eager, NHWC eager and NHWC compiled;
- full steps: what Trainer._run_epoch does per step (DeviceLoader gather, pad-crop-flip and normalise
  of the batch, fcc_lt.engine.step.TrainingStep with the objective, FCC's per-class factors and the loss, and the
  loop's device-side tallies), with the plans `train.channels_last=false` (the former default),
  `auto` for a short run (NHWC eager) and `auto` for a 200-epoch run (NHWC compiled);
- evaluation (fcc_lt.evaluation.passes.run_eval on the test split): compiled (as a compiled CPU run evaluates), NHWC
  eager at several loader batch sizes, on the CPU also without cutting the batch into forward passes of
  at most 128 (fcc_lt.evaluation.passes.CPU_FORWARD_CHUNK), and NCHW.

The variants are timed in alternating rounds (``--rounds``, ``--steps`` each) and the median round
counts, so machine drift hits all of them alike: compare the ratios, not the absolute rates (other
processes share this machine). The first round is an untimed warm-up that also compiles. On the CPU
with ``--threads 1`` the rates are per CPU-second of this process (process time), which other load on
a shared machine hardly changes; otherwise wall-clock (both are printed).

    python benchmarks/train_throughput.py [--data-root data/cifar10-real] [--dataset cifar10] [--device auto]
                                          [--steps 10] [--rounds 3] [--threads N] [--amp off] [--no-compile]

Without CIFAR under --data-root, a synthetic CIFAR-10 folder with random pixels is written to a
temporary directory (the pixel values do not affect the speed).
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fcc_lt.config.load import load_config
from fcc_lt.data.augment import Normalize
from fcc_lt.data.cifar import DataWarning
from fcc_lt.data.loader import DeviceEvalLoader
from fcc_lt.engine.speed import compiled_call, plan_of
from fcc_lt.engine.trainer import Trainer
from fcc_lt.evaluation.passes import run_eval
from fcc_lt.models.network import model_memory_format
from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least
from fcc_lt.util.precision import autocast


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


def device_type(name: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else torch.device(name).type


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args: argparse.Namespace, root: Path, out: Path, *extra: str) -> Trainer:
    cfg = load_config(None, [
        f"data.dataset={args.dataset}", f"data.root={root}", "data.imbalance_factor=100", f"device={args.device}",
        f"train.batch_size={args.batch_size}", f"train.amp={args.amp}", "train.progress=false",
        "train.warmup_epochs=0", "train.milestones=[]", f"out={out}", "fcc.enabled=true", "fcc.start_epoch=1",
        "eval.confusion_png_max_classes=0", *extra,
    ])
    trainer = Trainer(cfg, overwrite=True)
    trainer.model.train()
    return trainer


def model_only_step(t: Trainer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> Callable[[int], None]:
    """Forward, loss, backward and optimizer step on pre-made batches: the model's own cost."""
    device, dtype = t.device, t.amp_dtype
    ones = torch.ones(batches[0][1].numel(), device=device)

    def run(epoch: int) -> None:
        for x, y in batches:
            with autocast(device, dtype):
                logits, _ = t.forward(x, ones)
            F.cross_entropy(logits.float(), y).backward()
            t.optimizer.step()
            t.optimizer.zero_grad(set_to_none=True)

    return run


def full_step(t: Trainer, steps: int) -> Callable[[int], None]:
    """The trainer's per-step work for ``steps`` steps of epoch ``epoch`` (as Trainer._run_epoch)."""
    device = t.device

    def run(epoch: int) -> None:
        sums = torch.zeros(2, dtype=torch.float64, device=device)
        first_bad = torch.full((), -1, dtype=torch.long, device=device)
        batches = t.train_loader.epoch(epoch)
        try:
            for step in range(steps):
                images, labels = next(batches)
                out = t.step(images, labels, epoch, step, labels.numel())
                first_bad = torch.where((first_bad < 0) & ~torch.isfinite(out.loss), step, first_bad)
                sums += torch.stack([out.loss.double() * labels.numel(), out.correct.double()])
        finally:
            batches.close()

    return run


def eval_pass(t: Trainer, batch_size: int, images: int, chunk: int | None = -1) -> Callable[[int], None]:
    """fcc_lt.evaluation.passes.run_eval over the first ``images`` test images (``chunk``: CPU_FORWARD_CHUNK for it,
    -1 = as shipped)."""
    import fcc_lt.evaluation.passes

    test = t.splits.test
    n = min(images, len(test.labels))
    loader = DeviceEvalLoader(type(test)(test.images[:n], test.labels[:n]), batch_size, t.device,
                              normalize=Normalize(t.splits.mean, t.splits.std),
                              channels_last=model_memory_format(t.model) == torch.channels_last)
    shipped = fcc_lt.evaluation.passes.CPU_FORWARD_CHUNK

    def run(epoch: int) -> None:
        fcc_lt.evaluation.passes.CPU_FORWARD_CHUNK = shipped if chunk == -1 else chunk
        try:
            run_eval(t.model, loader, t.stats.num_classes, t.ctx, t.amp_dtype)
        finally:
            fcc_lt.evaluation.passes.CPU_FORWARD_CHUNK = shipped

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="data/cifar10-real")
    parser.add_argument("--dataset", default="cifar10", choices=["cifar10", "cifar100"])
    parser.add_argument("--device", type=argtypes.device, default="auto")
    parser.add_argument("--batch-size", type=int_at_least(1), default=128)
    parser.add_argument("--steps", type=int_at_least(1), default=10, help="timed steps per variant and round")
    parser.add_argument("--rounds", type=int_at_least(1), default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int_at_least(1), default=None, help="intra-op threads (default: torch's)")
    parser.add_argument("--amp", default="off", choices=["auto", "off", "bf16", "fp16"],
                        help="train.amp (fp32 by default: CPUs without native bf16)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the compiled variants")
    parser.add_argument("--eval-batch-sizes", type=int_at_least(1), nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--eval-images", type=int_at_least(1), default=4000, help="test images per evaluation pass")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=DataWarning)  # re-encoded CIFAR: checksums differ, as expected
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_root)
        folder = "cifar-10-batches-py" if args.dataset == "cifar10" else "cifar-100-python"
        if not (root / folder).is_dir():
            if args.dataset != "cifar10":
                raise SystemExit(f"{root / folder} not found (benchmarks/cifar_from_jpeg.py --cifar100-standin)")
            root = Path(tmp) / "data"
            write_synthetic_cifar10(root)
        out = Path(tmp) / "runs"
        nchw = build(args, root, out / "nchw", "train.channels_last=false", "train.compile=off", "train.epochs=2")
        short = build(args, root, out / "short", "train.epochs=2")  # auto: NHWC, eager (too short to compile)
        trainers = {"nchw": nchw, "nhwc": short}
        if not args.no_compile:
            trainers["compiled"] = build(args, root, out / "long", "train.epochs=200")  # auto: NHWC, compiled
        for name, t in trainers.items():
            print(f"{name}: {t.cfg.train.channels_last=} {t.cfg.train.compile=} -> "
                  f"{plan_of(t.model).reason}", flush=True)

        def premade(t: Trainer) -> list[tuple[torch.Tensor, torch.Tensor]]:
            batches = t.train_loader.epoch(1)
            made = [next(batches) for _ in range(args.steps)]
            batches.close()
            return made

        variants: dict[str, Callable[[int], None]] = {
            "model-only step, NCHW eager": model_only_step(nchw, premade(nchw)),
            "model-only step, NHWC eager": model_only_step(short, premade(short)),
        }
        if "compiled" in trainers:
            variants["model-only step, NHWC compiled"] = model_only_step(trainers["compiled"],
                                                                         premade(trainers["compiled"]))
        variants["full step, channels_last=false (the former default)"] = full_step(nchw, args.steps)
        variants["full step, auto for a short run (NHWC eager)"] = full_step(short, args.steps)
        if "compiled" in trainers:
            variants["full step, auto for 200 epochs (NHWC compiled)"] = full_step(trainers["compiled"], args.steps)
        first = args.eval_batch_sizes[0]
        if "compiled" in trainers:
            variants[f"evaluation, NHWC compiled, batch {first}"] = eval_pass(trainers["compiled"], first,
                                                                            args.eval_images)
        for b in args.eval_batch_sizes:
            variants[f"evaluation, NHWC eager, batch {b}"] = eval_pass(short, b, args.eval_images)
        if device_type(args.device) == "cpu":
            variants[f"evaluation, NHWC eager, batch {first} in one forward"] = eval_pass(short, first,
                                                                                        args.eval_images, None)
        variants[f"evaluation, NCHW eager, batch {first}"] = eval_pass(nchw, first, args.eval_images)
        images = {k: (min(args.eval_images, len(short.splits.test.labels)) if k.startswith("evaluation")
                      else args.steps * args.batch_size) for k in variants}

        device = short.device
        seconds: dict[str, list[float]] = {k: [] for k in variants}
        cpu_seconds: dict[str, list[float]] = {k: [] for k in variants}
        for r in range(args.rounds + 1):  # round 0: warm-up (compilation, allocator, oneDNN/cuDNN choices)
            for name, run in variants.items():
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                run(2 + r)
                sync(device)
                if r:
                    seconds[name].append(time.perf_counter() - t0)
                    cpu_seconds[name].append(time.process_time() - c0)
            print(f"round {r} done", flush=True)

    # On the CPU with one thread, process time counts the work of this process alone: other processes on a
    # shared machine delay it (wall clock) but hardly change it, so its ratios are the steadier ones.
    clock = "CPU time" if device.type == "cpu" and torch.get_num_threads() == 1 else "wall clock"
    timing = cpu_seconds if clock == "CPU time" else seconds
    rate = {k: images[k] / statistics.median(v) for k, v in timing.items()}
    wall = {k: images[k] / statistics.median(v) for k, v in seconds.items()}
    model_keys = [k for k in rate if k.startswith("model-only")]
    fastest = max(model_keys, key=rate.__getitem__)
    train_keys = [k for k in rate if k.startswith("full step")]
    best_full = max(train_keys, key=rate.__getitem__)
    print(f"\ndevice {device} ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads, "
          f"amp {short.amp_dtype}, batch {args.batch_size}, dataset {args.dataset} {root}, {args.steps} steps x "
          f"{args.rounds} rounds (median), load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"rates and ratios by {clock}")
    if "compiled" in trainers:
        seconds = compiled_call(trainers["compiled"].forward).seconds
        print(f"compile: {seconds:.1f} s for the first compiled forward and "
              f"backward (cache {os.environ.get('TORCHINDUCTOR_CACHE_DIR')})")
    print(f"\n| variant | images/s ({clock}) | / fastest model-only ({fastest.split(', ')[1]}) | "
          "/ former default full step | images/s (wall clock) |")
    print("|---|---:|---:|---:|---:|")
    former = rate["full step, channels_last=false (the former default)"]
    for k, v in rate.items():
        print(f"| {k} | {v:,.0f} | {v / rate[fastest]:.3f} | {v / former:.3f} | {wall[k]:,.0f} |")
    eval_keys = [k for k in rate if k.startswith("evaluation")]
    best_eval = max(eval_keys, key=rate.__getitem__)
    print(f"\nfull step / fastest model-only step: {rate[best_full] / rate[fastest]:.3f} ({best_full})")
    print(f"evaluation / training throughput: {rate[best_eval] / rate[best_full]:.2f}x ({best_eval} vs {best_full})")

if __name__ == "__main__":
    main()
