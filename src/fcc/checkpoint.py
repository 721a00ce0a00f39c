"""Checkpoints: written atomically, read without executing code, checked against the model.

Writing goes to a temporary file in the same folder, which is flushed, fsynced and renamed over the
old file, so a crash, a kill or a full disk leaves either the previous good checkpoint or the new one,
never a half-written file. Reading uses ``torch.load(weights_only=True)``: a checkpoint from an
untrusted source cannot run code.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fcc.errors import CheckpointError, OutputError

FORMAT = "fcc-checkpoint"
VERSION = 1


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_TEMP_NAME = re.compile(r"\..+\.tmp-\d+")  # what atomic_write_bytes names its temporary files


def _discard(tmp: Path) -> None:
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(file)`` on a temporary sibling of ``path``, fsync it, and rename it into place.

    Any failure (full disk, unwritable folder, an exception in ``write``) removes the temporary file and
    leaves ``path`` as it was; OS errors become an OutputError naming ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise OutputError(f"cannot write {path}: {err.strerror or err}"
                          f"{' (disk full?)' if getattr(err, 'errno', None) == 28 else ''}; "
                          "any previous file there is unchanged") from None
    except BaseException:
        _discard(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """``atomic_write_bytes`` of ``text`` encoded as UTF-8 (configs, JSON, CSV, reports)."""
    atomic_write_bytes(path, lambda f: f.write(text.encode("utf-8")))


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temporary files a killed process left behind in ``folder``; returns what was removed."""
    removed = []
    if Path(folder).is_dir():
        for p in Path(folder).iterdir():
            if _TEMP_NAME.fullmatch(p.name) and p.is_file():
                _discard(p)
                removed.append(p)
    return removed


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


def save_checkpoint(state: Mapping[str, Any], path: Path) -> None:
    """Atomically write ``state`` (plain containers and tensors only) to ``path``."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    # Serialise in memory first: torch.save turns a failing write (ENOSPC) into a RuntimeError from its
    # C++ writer, whereas a plain file write raises the OSError that atomic_write_bytes reports.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getbuffer()
    atomic_write_bytes(Path(path), lambda f: f.write(data))


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; raises CheckpointError naming the file on any problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = next((line for line in lines if "GLOBAL" in line or "nsupported" in line), lines[-1] if lines else "")
        raise CheckpointError(f"{path}: refused: it holds Python objects other than tensors and plain "
                              f"containers ({detail}); fcc reads checkpoints with "
                              "torch.load(weights_only=True), which never runs code from the file") from None
    except Exception as err:  # untrusted bytes: any failure to parse them means "not readable"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint ({first})") from None
    if isinstance(state, dict) and state.get("format") == FORMAT:
        if not _is_state_dict(state.get("model")):
            raise CheckpointError(f"{path}: its 'model' entry is not a state_dict (names -> tensors)")
        return state
    if _is_state_dict(state):
        return {"format": FORMAT, "version": VERSION, "model": state}  # a bare state_dict
    raise CheckpointError(f"{path}: not an fcc checkpoint or a model state_dict")


def _is_state_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in value.items())


def resolve_checkpoint(path_or_run: str | Path, which: str = "last") -> Path:
    """A checkpoint file, or the ``which`` checkpoint ('last'/'best') of a run directory."""
    p = Path(path_or_run)
    if p.is_dir():
        p = p / "checkpoints" / f"{which}.pt"
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def run_checkpoint(run_dir: Path, checkpoint: str) -> Path:
    """``checkpoint`` as the commands take it: 'last' or 'best' of ``run_dir``, or a checkpoint file."""
    if checkpoint in ("last", "best"):
        return resolve_checkpoint(run_dir, checkpoint)
    return resolve_checkpoint(checkpoint)


def read_checkpoint(source: str | Path, key: str, hint: str) -> tuple[Path, dict[str, Any]]:
    """Resolve and load the checkpoint a config key names (a run directory or file); errors name the key."""
    try:
        path = resolve_checkpoint(source)
    except CheckpointError as err:
        raise CheckpointError(f"{key}: {err} ({hint})") from None
    return path, load_checkpoint(path)


def load_model_state(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str,
                     exclude: Sequence[str] = (), check_only: bool = False) -> list[str]:
    """Load weights strictly except for keys under ``exclude`` prefixes; returns the keys left at init.

    Every mismatch is reported by name: missing keys, unexpected keys and shape differences. With
    ``check_only`` nothing is loaded (``model`` may live on the meta device).
    """

    def excluded(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in exclude)

    own = model.state_dict()
    incoming = {k: v for k, v in state_dict.items() if not excluded(k)}
    missing = [k for k in own if k not in incoming and not excluded(k)]
    unexpected = [k for k in incoming if k not in own]
    shapes = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
              for k, v in incoming.items() if k in own and v.shape != own[k].shape]
    problems = []
    if shapes:
        problems.append("shape mismatch for " + "; ".join(shapes[:5]) + (" ..." if len(shapes) > 5 else ""))
    if missing:
        problems.append(f"missing {len(missing)} keys ({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''})")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} keys ({', '.join(unexpected[:5])}"
                        f"{' ...' if len(unexpected) > 5 else ''})")
    if problems:
        raise CheckpointError(f"{source} does not fit the model: " + "; ".join(problems) +
                              ". Check model.backbone/model.head and data.dataset (number of classes), "
                              "or list keys to skip in model.init_exclude.")
    if not check_only:
        model.load_state_dict(incoming, strict=False)
    return [k for k in own if excluded(k)]
