"""The processes of a sweep's runs: their threads and environment, their logs, how they ended, and the
signals the sweep forwards to them. Shared by the local pool (sweep.local) and the SLURM / submitit path
(sweep.slurm); it imports neither.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fcc_lt.util.errors import FccError, OutputError
from fcc_lt.util.files import open_input


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, e.g. a SLURM allocation), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_per_run(parallel: int, cores: int | None = None) -> int:
    """max(1, cores // parallel): each of the runs going at once gets its share of the cores."""
    return max(1, (cores if cores is not None else available_cores()) // max(1, parallel))


def child_env(threads: int | None, gpu: str | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of one run's process: its CPU threads (OMP_NUM_THREADS / MKL_NUM_THREADS, unless the
    user set OMP_NUM_THREADS), its GPU (CUDA_VISIBLE_DEVICES, with --gpus), unbuffered output, and a
    progress bar redrawn at most every 30 s (the log is a file, not a terminal)."""
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TQDM_MININTERVAL", "30")
    if threads is not None and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(threads)
        env["MKL_NUM_THREADS"] = str(threads)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return env


def open_log(run: Any, args: list[str]) -> Any:
    """RUN_DIR/train.log opened for appending, headed by the command of this attempt."""
    stamp = datetime.now().isoformat(sep=" ", timespec="seconds")
    try:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        log = open(run.log_path, "ab")  # noqa: SIM115 - handed to the child process, closed by the caller
        log.write(f"\n===== {stamp} fcc sweep: {shlex.join(['fcc', *args])}\n".encode())
        log.flush()
    except OSError as err:
        raise OutputError(f"cannot write {run.log_path}: {err.strerror or err}") from None
    return log


def failure_line(log_path: Path) -> str:
    """The message a failed run ended with: its last 'error:' line, else its last line (of the log's last
    16 KiB, after the header of the last attempt)."""
    try:  # a regular file only (a FIFO in the run folder would block), of any size: only its tail is read
        with open_input(log_path, "run log", max_bytes=1 << 50) as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            lines = [line.strip() for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except (OSError, FccError):
        return ""
    headers = [i for i, line in enumerate(lines) if line.startswith("===== ") and " fcc sweep: " in line]
    if headers:
        lines = lines[headers[-1] + 1:]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line
    return lines[-1] if lines else ""


# what `fcc train` says when another process holds the run directory's lock (fcc_lt.util.run_lock.lock_run_dir)
LOCK_REFUSAL = "is in use by another fcc process"


def elsewhere(run_dir: Path, log_path: Path) -> str | None:
    """Why a run whose process failed is not a failure of this sweep: another process held the run
    directory's lock when this one started it (two sweeps over one folder race for a run; the lock lets
    one of them train it). 'running elsewhere' or 'finished elsewhere', else None."""
    from fcc_lt.experiments.run_folder import run_status
    from fcc_lt.util.run_lock import is_locked

    if LOCK_REFUSAL not in failure_line(log_path):
        return None
    if is_locked(run_dir):
        state = "running"
    elif run_status(run_dir).finished:
        state = "finished"
    else:  # the other process ended without finishing it: a failure to see
        return None
    return f"{state} elsewhere (another fcc process held {Path(run_dir) / '.lock'} when this sweep started it)"


@dataclass
class Outcome:
    """How a run ended in this sweep: finished, failed, stopped (by the sweep's signal), skipped, pending."""

    state: str
    exit_code: int | None = None
    message: str = ""
    elapsed: float = 0.0


@contextlib.contextmanager
def stop_signals(on_signal: Any) -> Iterator[None]:
    """Route SIGINT, SIGTERM and SIGHUP to ``on_signal(signum)`` while the sweep runs."""
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError, AttributeError):  # not the main thread; no SIGHUP
            previous[sig] = signal.signal(sig, lambda signum, _frame: on_signal(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
