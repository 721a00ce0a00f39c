"""Milliseconds per optimizer step over ResNet-32's parameters: the for-loop, foreach and fused SGD
(Nesterov, momentum 0.9, weight decay 2e-4, as the CIFAR configs), timed in alternating rounds, and
how far the weights of the three drift apart (float rounding: fused kernels order operations differently).

    python benchmarks/optimizer_step.py [--device cpu] [--threads 1] [--steps 20] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fcc_lt.config.load import load_config
from fcc_lt.models.network import build_network
from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least

KINDS = {"for-loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=argtypes.device, default="cpu")
    parser.add_argument("--threads", type=int_at_least(1), default=1)
    parser.add_argument("--steps", type=int_at_least(1), default=20)
    parser.add_argument("--rounds", type=int_at_least(1), default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(None, ["model.backbone=resnet32"])
    setups = {}
    for name, flags in KINDS.items():
        torch.manual_seed(0)
        net = build_network(cfg, 100).to(device)
        gen = torch.Generator(device=device).manual_seed(1)
        for p in net.parameters():
            p.grad = torch.randn(p.shape, generator=gen, device=device)
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4, nesterov=True, **flags)
        setups[name] = (net, opt)
    times: dict[str, list[float]] = {k: [] for k in KINDS}
    for r in range(args.rounds + 1):
        for name, (_, opt) in setups.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if r:
                times[name].append((time.perf_counter() - t0) / args.steps)
    weights = {k: torch.cat([p.detach().flatten() for p in net.parameters()]) for k, (net, _) in setups.items()}
    tensors = sum(1 for _ in setups["fused"][0].parameters())
    print(f"device {device}, {torch.get_num_threads()} threads, {tensors} parameter tensors, "
          f"{args.steps} steps x {args.rounds} rounds (median)")
    print(f"| SGD | ms per step | max abs. weight difference from the for-loop after {args.steps * (args.rounds + 1)} "
          "steps |")
    print("|---|---:|---:|")
    for name in KINDS:
        diff = float((weights[name] - weights["for-loop"]).abs().max())
        print(f"| {name} | {1000 * statistics.median(times[name]):.2f} | {diff:.2e} |")


if __name__ == "__main__":
    main()
