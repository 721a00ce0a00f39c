"""Files in and out: bounded reads of user-named files, atomic writes.

Reads accept regular files only and at most a size cap, naming the file in every error. Writes go to a
temporary file in the same folder, which is flushed, fsynced and renamed over the old one, so a crash,
a kill or a full disk leaves either the previous file or the new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

from fcc_lt.util.errors import DataError, FccError, OutputError


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


def read_input(path: str | Path, what: str, error: type[FccError] = DataError) -> bytes:
    """The bytes of an input file the user named; a missing or unreadable one raises ``error`` that names
    the path and what the file was meant to be (``what``, e.g. "annotation file")."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (OSError, ValueError) as err:  # ValueError: a path the OS cannot take (an embedded NUL)
        raise error(f"{path}: cannot read {what}: {getattr(err, 'strerror', None) or err}") from None


def read_input_text(path: str | Path, what: str, error: type[FccError] = DataError) -> str:
    """``read_input`` decoded as UTF-8; undecodable bytes raise ``error`` as well."""
    data = read_input(path, what, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"{path}: cannot read {what}: not UTF-8 text ({err})") from None
