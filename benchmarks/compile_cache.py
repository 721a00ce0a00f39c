"""How long compiling ResNet-32's training forward and backward (and its evaluation forward) takes with an
empty compile cache and again from the cache, as the runs of a sweep find it: two fresh processes, one
after the other, sharing one TORCHINDUCTOR_CACHE_DIR.

    python benchmarks/compile_cache.py [--device auto] [--threads 1] [--classes 100] [--amp auto]

Each process builds the network as the trainer does (fcc_lt.engine.build: memory format and compile as planned
for a 200-epoch run), runs one training step through fcc_lt.engine.speed.CompiledForward (its first call compiles the
forward and the backward) and one evaluation pass through fcc_lt.engine.speed.eval_forward (compiled on the CPU),
and prints the seconds of each first call and inductor's cache hits and misses.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from fcc_lt.util import argtypes
from fcc_lt.util.argtypes import int_at_least


def child(args: argparse.Namespace) -> None:
    import torch
    import torch.nn.functional as F
    from torch._dynamo.utils import counters

    from fcc_lt.config.load import load_config
    from fcc_lt.engine.build import build_optimizer, build_training_network, wrap_for_training
    from fcc_lt.engine.speed import compiled_call, eval_forward, plan_of
    from fcc_lt.util.distributed import DistContext, resolve_device
    from fcc_lt.util.precision import autocast, autocast_dtype

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = load_config(None, [f"device={device}", "train.epochs=200", f"train.amp={args.amp}", "fcc.enabled=true",
                             "train.compile=on"])
    ctx = DistContext(device=device)
    net, _ = build_training_network(cfg, args.classes, ctx, resuming=False)
    forward = wrap_for_training(net, ctx)
    optimizer = build_optimizer(cfg, net)
    dtype = autocast_dtype(cfg.train.amp, device)
    x = torch.randn(128, 3, 32, 32, device=device)
    y = torch.randint(0, args.classes, (128,), device=device)
    t0 = time.perf_counter()
    with autocast(device, dtype):
        logits, _ = forward(x, torch.ones(128, device=device))
    F.cross_entropy(logits.float(), y).backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    train = time.perf_counter() - t0
    net.eval()
    t0 = time.perf_counter()
    with torch.no_grad(), autocast(device, dtype):
        eval_forward(net)(x[:125].contiguous(memory_format=plan_of(net).memory_format))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    evaluation = time.perf_counter() - t0
    print(json.dumps({"train_first_step_s": train, "compile_s": compiled_call(forward).seconds,
                      "eval_first_pass_s": evaluation, "plan": plan_of(net).reason,
                      "inductor": dict(counters["inductor"]), "aot_autograd": dict(counters["aot_autograd"])}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", type=argtypes.device, default="auto")
    parser.add_argument("--threads", type=int_at_least(1), default=1)
    parser.add_argument("--classes", type=int_at_least(1), default=100)
    parser.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONWARNINGS": "ignore"}
        print(f"cache {cache} (empty), device {args.device}, {args.threads} threads, {args.classes} classes")
        print("| process | first training step (s) | of it compiling (s) | first evaluation pass (s) | "
              "FX graph cache hits / misses |")
        print("|---|---:|---:|---:|---:|")
        for name in ("first (empty cache)", "second (from the cache)"):
            cmd = [sys.executable, __file__, "--child", f"--device={args.device}", f"--threads={args.threads}",
                   f"--classes={args.classes}", f"--amp={args.amp}"]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"compile_cache: the child process failed ({done.returncode}):\n{done.stderr[-2000:]}")
            out = done.stdout
            r = json.loads(out.strip().splitlines()[-1])
            ind = r["inductor"]
            print(f"| {name} | {r['train_first_step_s']:.1f} | {r['compile_s']:.1f} | {r['eval_first_pass_s']:.1f} | "
                  f"{ind.get('fxgraph_cache_hit', 0)} / {ind.get('fxgraph_cache_miss', 0)} |", flush=True)
        print(f"plan: {r['plan']}")


if __name__ == "__main__":
    main()
