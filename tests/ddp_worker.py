"""One process of a multi-process test run, launched by torchrun from tests/engine/test_distributed.py.

Usage: ``torchrun --standalone --nproc-per-node N tests/ddp_worker.py SPEC.json``. The spec lists jobs,
each a list of config overrides plus optional extras, run one after another in the same process group:

- ``resume: RUN_DIR`` resumes that run (``fcc train --resume``) instead of starting one from overrides;
- ``stop_at: [epoch, step]`` asks every rank to stop after that step (0-based), as SIGTERM would;
- ``count_allreduce: true`` counts DDP's gradient all-reduces (one per bucket per synchronised backward).

On ranks other than 0 a Python audit hook records every file opened for writing, created, renamed or
removed under the job's run directory. Each rank writes ``<report>.rank<R>.json`` next to the spec.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# fcc and torch are imported inside the functions, so that the write watch can be tested cheaply.

WRITE_EVENTS = {"os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir", "shutil.copyfile", "os.truncate"}


def watch_writes(root: Path, seen: list[str]) -> None:
    """Record write-like file operations under ``root`` (audit hooks cannot be removed: guard by flag)."""
    root_text = str(root.resolve())

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            mode = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            flags = args[2] if len(args) > 2 and isinstance(args[2], int) else 0
            writing = any(c in mode for c in "wax+") or bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and os.fsdecode(args[0]).startswith(root_text):
                seen.append(f"open {os.fsdecode(args[0])}")
        elif (event in WRITE_EVENTS and args and isinstance(args[0], (str, bytes, os.PathLike))
              and os.fsdecode(args[0]).startswith(root_text)):
            seen.append(f"{event} {os.fsdecode(args[0])}")

    sys.addaudithook(hook)


def count_allreduces(trainer: Any, counter: list[int]) -> None:
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    def hook(state, bucket):  # type: ignore[no-untyped-def]  # DDP rejects annotations other than its own
        counter[0] += 1
        return allreduce_hook(state, bucket)

    trainer.forward.register_comm_hook(None, hook)  # type: ignore[operator]


def main(spec_path: str) -> int:
    from fcc_lt.config.load import load_config
    from fcc_lt.engine.signals import TrainingInterrupted
    from fcc_lt.engine.trainer import Trainer
    from fcc_lt.evaluation.run_loader import load_run_config
    from fcc_lt.util.distributed import cleanup, setup

    spec = json.loads(Path(spec_path).read_text())
    ctx = setup("cpu")
    writes: list[str] = []
    if ctx.rank != 0:
        watch_writes(Path(spec["watch"]), writes)
    report: dict[str, Any] = {"rank": ctx.rank, "world_size": ctx.world_size, "jobs": []}
    try:
        for job in spec["jobs"]:
            if job.get("resume"):
                trainer = Trainer(load_run_config(Path(job["resume"])), resume=True, ctx=ctx)
            else:
                trainer = Trainer(load_config(None, job["overrides"]), overwrite=True, ctx=ctx)
            counter = [0]
            if job.get("count_allreduce"):
                count_allreduces(trainer, counter)
            if job.get("stop_at"):
                stop_epoch, stop_step = job["stop_at"]

                def stop(tr: Trainer, epoch: int, step: int, at: tuple[int, int] = (stop_epoch, stop_step)) -> None:
                    if (epoch, step) == at:
                        tr.request_stop()

                trainer.step_callback = stop
            outcome = "finished"
            try:
                trainer.fit()
            except TrainingInterrupted:
                outcome = "interrupted"
            report["jobs"].append({"outcome": outcome, "allreduce_calls": counter[0],
                                   "steps": trainer.train_loader.steps_per_epoch(1)})
    finally:
        report["writes"] = writes
        Path(f"{spec_path}.rank{ctx.rank}.json").write_text(json.dumps(report))
        trainer = None  # the DDP model must not outlive the process group (see fcc_lt.util.distributed.cleanup)
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
