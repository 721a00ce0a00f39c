"""The run-directory lock: one process at a time trains into, resumes or overwrites a run directory.

``RUN/.lock`` is held with an exclusive ``flock`` for the life of the process; the kernel drops it however
the process ends. ``is_locked`` is how everything else (evaluation, reports, sweeps) sees a run that is
still training.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

from fcc_lt.util.errors import OutputError

_RUN_LOCKS: dict[str, Any] = {}


def lock_run_dir(run_dir: Path) -> None:
    """Hold ``run_dir/.lock`` exclusively for this process, so that a second fcc process cannot train
    into (or resume, or overwrite) a run directory in use: two runs writing one set of checkpoints
    would produce a silently wrong result. Re-entrant within a process; the kernel drops the lock when
    the process ends, however it ends (a SIGKILL leaves nothing to clean up)."""
    key = str(Path(run_dir).resolve())
    if key in _RUN_LOCKS:
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no locking
        return
    path = Path(run_dir) / ".lock"
    try:
        f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open for as long as the lock
    except OSError as err:
        raise OutputError(f"cannot write to the run directory {run_dir}: {err.strerror or err}") from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "unknown"
        f.close()
        raise OutputError(f"{run_dir} is in use by another fcc process ({holder}); wait for it to end, or stop "
                          "it (SIGTERM saves a checkpoint) before training in this directory again") from None
    except OSError:  # a filesystem without locks: go on unlocked
        f.close()
        return
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    f.flush()
    _RUN_LOCKS[key] = f


def unlock_run_dir(run_dir: Path) -> None:
    """Release this process's lock on ``run_dir`` (no-op when it holds none)."""
    f = _RUN_LOCKS.pop(str(Path(run_dir).resolve()), None)
    if f is not None:
        f.close()  # closing the file releases the lock


def held_here(run_dir: Path) -> bool:
    """Whether this process holds ``run_dir``'s lock (a Trainer made in this process, e.g. in a notebook)."""
    return str(Path(run_dir).resolve()) in _RUN_LOCKS


def is_locked(run_dir: Path) -> bool:
    """Whether another process holds ``run_dir/.lock`` (a run training, resuming or being evaluated)."""
    path = Path(run_dir) / ".lock"
    if not path.is_file():
        return False
    try:
        import fcntl
    except ImportError:  # not POSIX: runs are never locked
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:  # a filesystem without locks
        return False
    finally:
        os.close(fd)  # closing drops the probe lock, if it was taken
    return False
