"""Training throughput of this tree against another revision, side by side: the same `fcc train` command
in alternating rounds, each tree importing its own sources, so machine drift affects both alike.

    python benchmarks/compare_trees.py [--old 5e00318] [--rounds 3] [--epochs 1] [--steps N]
        [--data-root data/cifar10-real] [--threads 2] [-- extra overrides ...]

Each round trains CE+FCC on CIFAR-10-LT IF 100 (ResNet-32, fp32, batch 128) for ``--epochs`` epochs in a
fresh process per tree and reads the epoch's ``images_per_s`` from its metrics.jsonl (the loop only:
start-up and the final evaluation are not in it). ``--steps N`` times the first N steps of each epoch
only (``train.max_steps_per_epoch``, with one evaluation batch): shorter rounds for a busy machine. The
old revision is checked out with `git worktree` into a temporary folder; the config is each tree's own,
and so is the package: revisions before the rename to fcc-lt (5e00318 and older) run `python -m fcc` on
configs/cifar10_lt/ce_fcc_if100.yaml, later ones `python -m fcc_lt` on the shipped recipe of that name.
Prints one table (median images/s per tree and the ratio this/old); appends nothing anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from fcc_lt.util.argtypes import int_at_least

ROOT = Path(__file__).resolve().parents[1]
CONFIG = "cifar10_lt/ce_fcc_if100"


def config_of(tree: Path) -> str:
    """The config in a checkout: its configs/ file where it has one (before recipes moved into the package),
    else the shipped recipe's name."""
    path = Path("configs") / f"{CONFIG}.yaml"
    return str(path) if (tree / path).is_file() else CONFIG


def package_of(tree: Path) -> str:
    """The import package of a checkout: ``fcc_lt`` since the rename, ``fcc`` before it."""
    for name in ("fcc_lt", "fcc"):
        if (tree / "src" / name / "__main__.py").is_file():
            return name
    raise SystemExit(f"{tree}: neither src/fcc_lt nor src/fcc holds a __main__.py; not an fcc checkout")


def run_once(tree: Path, out: Path, data_root: Path, epochs: int, threads: int, extra: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": str(threads),
           "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", package_of(tree), "train", config_of(tree), f"data.root={data_root}",
           f"train.epochs={epochs}", "train.amp=off", "train.progress=false", f"train.eval_every={epochs}",
           f"out={out}", *extra]
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: fcc train failed ({done.returncode}):\n{done.stderr[-2000:]}")
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(float(m["images_per_s"]) for m in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="5e00318",
                        help="the revision to compare with (default: the last one before the move to fcc_lt)")
    parser.add_argument("--rounds", type=int_at_least(1), default=3)
    parser.add_argument("--epochs", type=int_at_least(1), default=1)
    parser.add_argument("--threads", type=int_at_least(1), default=2)
    parser.add_argument("--steps", type=int_at_least(1), default=None,
                        help="time only the first N steps of each epoch (default: whole epochs)")
    parser.add_argument("--data-root", type=Path, default=ROOT / "data" / "cifar10-real")
    parser.add_argument("extra", nargs="*", help="overrides for both trees (e.g. train.channels_last=false)")
    args = parser.parse_args()
    data_root = args.data_root.resolve()
    extra = [*args.extra, *([f"train.max_steps_per_epoch={args.steps}", "eval.max_batches=1"] if args.steps else [])]
    if not (data_root / "cifar-10-batches-py").is_dir():
        raise SystemExit(f"{data_root}: no cifar-10-batches-py; put the official CIFAR-10 there (`fcc train "
                         f"cifar10_lt/ce_if100 --smoke data.root={data_root}` downloads it) or build it from a JPEG "
                         "archive with benchmarks/cifar_from_jpeg.py")
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        added = subprocess.run(["git", "worktree", "add", "--detach", "-f", str(old_tree), args.old], cwd=ROOT,
                               capture_output=True, text=True)
        if added.returncode != 0:
            raise SystemExit(f"--old {args.old}: cannot check it out ({added.stderr.strip().splitlines()[-1]})")
        try:
            speeds: dict[str, list[float]] = {"old": [], "this": []}
            order = [("old", old_tree), ("this", ROOT)]
            for r in range(args.rounds):
                for name, tree in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
                    out = Path(tmp) / f"{name}{r}"
                    speeds[name].append(run_once(tree, out, data_root, args.epochs, args.threads, extra))
                    print(f"round {r + 1} {name}: {speeds[name][-1]:.1f} img/s", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old_tree)], cwd=ROOT, capture_output=True)
    old, this = statistics.median(speeds["old"]), statistics.median(speeds["this"])
    print("| tree | rounds | images/s (median) | each round |\n|---|---:|---:|---|")
    print(f"| {args.old} | {args.rounds} | {old:.1f} | {', '.join(f'{v:.1f}' for v in speeds['old'])} |")
    print(f"| this tree | {args.rounds} | {this:.1f} | {', '.join(f'{v:.1f}' for v in speeds['this'])} |")
    print(f"\nratio this / {args.old}: {this / old:.3f} (CE+FCC, CIFAR-10-LT IF 100, {args.epochs} epoch(s), "
          f"{args.threads} thread(s), overrides {extra or 'none'})")


if __name__ == "__main__":
    main()
