"""Files in and out: bounded reads of user-named files, atomic writes.

Reads (``read_input``, ``read_input_text``: the one reader of files a user names or a run folder holds)
accept regular files only and at most a size cap, naming the file and the cap in every error. Writes go to a
temporary file in the same folder, which is flushed, fsynced and renamed over the old one, so a crash,
a kill or a full disk leaves either the previous file or the new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from fcc_lt.util.errors import DataError, FccError, OutputError, file_kind, format_size, path_problem


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
    with contextlib.suppress(OSError):  # absent is fine; a device, FIFO or folder there is not ours to replace
        mode = os.stat(path).st_mode  # (the rename below would put a file in place of /dev/full or a pipe)
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else file_kind(mode)
            raise OutputError(f"cannot write {path}: it is {kind}, not a regular file; nothing was written")
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


def write_json(path: str | Path, data: Any, *, compact: bool = False) -> None:
    """Write JSON atomically (a crash never leaves half a file; NaN and inf refused): indented for run files a
    person reads (eval.json, analysis.json), compact UTF-8 for annotation files, which can be large."""
    if compact:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    else:
        text = json.dumps(data, indent=2, allow_nan=False)
    atomic_write_text(Path(path), text + "\n")


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete temporary files a killed process left behind in ``folder``; returns what was removed."""
    removed = []
    if Path(folder).is_dir():
        for p in Path(folder).iterdir():
            if _TEMP_NAME.fullmatch(p.name) and p.is_file():
                _discard(p)
                removed.append(p)
    return removed


# What a read accepts by default: far above any annotation file, TFRecord shard or run file fcc writes
# (an iNaturalist 2018 annotation file is about 60 MiB), far below what exhausts a machine's memory.
MAX_INPUT_BYTES = 1 << 30
# Config-like YAML (configs, their bases, sweep specs, a run's config.yaml, original configs): a real one
# is a few KiB.
MAX_YAML_BYTES = 16 << 20


@contextlib.contextmanager
def open_input(path: str | Path, what: str, error: type[FccError] = DataError,
               max_bytes: int | None = None) -> Iterator[BinaryIO]:
    """An input file the user named or a run folder holds, opened for reading in binary, once it is known to
    be a regular file (a FIFO or a device would block or never end) of at most ``max_bytes``
    (``MAX_INPUT_BYTES`` by default). Every failure to open it raises ``error`` naming the path and what the
    file was meant to be (``what``, e.g. "annotation file"), and its size and the cap when it is too large.
    For streaming readers (checksums, unpickling); ``read_input`` reads the whole file.
    """
    max_bytes = MAX_INPUT_BYTES if max_bytes is None else max_bytes
    path = Path(path)
    problem = path_problem(path)
    if problem is not None:
        raise error(f"{path}: cannot read {what}: the path {problem}")
    try:
        # O_NONBLOCK: opening a FIFO without a writer must not wait for one (no effect on regular files)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, ValueError) as err:  # ValueError: a path the OS cannot take (an embedded NUL)
        raise error(f"{path}: cannot read {what}: {getattr(err, 'strerror', None) or err}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{path}: cannot read {what}: it is a folder, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{path}: cannot read {what}: it is {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise error(f"{path}: cannot read {what}: it is {format_size(info.st_size)}, more than the "
                        f"{format_size(max_bytes)} such a file may be")
        os.set_blocking(fd, True)
        f = os.fdopen(fd, "rb")
    except OSError as err:
        os.close(fd)
        raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    except BaseException:
        os.close(fd)
        raise
    with f:
        yield f


def read_input(path: str | Path, what: str, error: type[FccError] = DataError,
               max_bytes: int | None = None) -> bytes:
    """The bytes of an input file the user named or a run folder holds, read within bounds (``open_input``:
    a regular file of at most ``max_bytes``, ``MAX_INPUT_BYTES`` by default); every failure raises ``error``
    naming the path and what the file was meant to be (``what``, e.g. "annotation file")."""
    max_bytes = MAX_INPUT_BYTES if max_bytes is None else max_bytes
    with open_input(path, what, error, max_bytes) as f:
        try:
            data = f.read(max_bytes + 1)  # a file that grew since it was opened is still bounded
        except OSError as err:
            raise error(f"{path}: cannot read {what}: {err.strerror or err}") from None
    if len(data) > max_bytes:
        raise error(f"{path}: cannot read {what}: it is more than the {format_size(max_bytes)} such a file may be")
    return data


def read_input_text(path: str | Path, what: str, error: type[FccError] = DataError,
                    max_bytes: int | None = None) -> str:
    """``read_input`` decoded as UTF-8; undecodable bytes raise ``error`` as well."""
    data = read_input(path, what, error, max_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: cannot read {what}: not UTF-8 text ({err})") from None


def open_append(path: str | Path, what: str) -> Any:
    """A text file of a run folder opened for appending (train.log, metrics.jsonl), created if absent. Something
    else in its place (a FIFO would block the run until a reader came, a device would swallow the lines) is an
    OutputError naming the path, as is every failure to open it."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO without a reader fails at once (ENXIO) instead of waiting for one
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0), 0o644)
    except OSError as err:
        kind = ""
        with contextlib.suppress(OSError):
            mode = os.stat(path).st_mode
            if stat.S_ISDIR(mode):
                kind = ": it is a folder, not a file"
            elif not stat.S_ISREG(mode):
                kind = f": it is {file_kind(mode)}, not a regular file"
        raise OutputError(f"cannot write {what} {path}{kind or ': ' + (err.strerror or str(err))}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OutputError(f"cannot write {what} {path}: it is {file_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "a", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise
