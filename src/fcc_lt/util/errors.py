"""Error types meant for the user: the CLI prints their message and exits non-zero, no traceback.

Anything else escaping the CLI is a bug in fcc, so it keeps its traceback.
"""

from __future__ import annotations

import os
import reprlib
import stat
from typing import Any

NAME_MAX = 255  # bytes in one file or folder name (Linux, macOS, Windows)


PATH_MAX = 4096  # bytes in a whole path, terminating NUL included (Linux)


class FccError(Exception):
    """Base class of every error whose message is written for the user."""

    exit_code = 2


class ConfigError(FccError, ValueError):
    """A config file, override or option is wrong: names the key and what was expected."""


class DataError(FccError):
    """A dataset file is missing, corrupt or inconsistent: names the file and the problem."""


class CheckpointError(FccError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""


class TrainingError(FccError):
    """Training cannot continue (for example a non-finite loss); the last good checkpoint is kept."""

    exit_code = 3


class OutputError(FccError):
    """The run directory cannot be written (permissions, full disk); names the path."""


def require(ok: bool, key: str, expected: str, value: Any) -> None:
    """The one form of a range check: unless ``ok``, a ConfigError "KEY: expected WHAT, got VALUE"."""
    if not ok:
        raise ConfigError(f"{key}: expected {expected}, got {short_repr(value)}")


def format_size(num_bytes: float) -> str:
    """A byte count for messages: '512 bytes', '44 KiB', '3.2 MiB', '1.5 GiB' (never '0.0 MiB').

    Two significant digits at least, in the largest unit that keeps the number at 1 or more, so that a
    small amount of free space reads as what it is rather than as nothing.
    """
    if num_bytes < 1024:
        n = max(0, int(num_bytes))
        return f"{n} byte" if n == 1 else f"{n} bytes"
    value = float(num_bytes)
    units = ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    for i, unit in enumerate(units):
        value /= 1024
        text = f"{value:.1f}" if value < 9.95 else f"{value:.0f}"
        if float(text) < 1024 or i == len(units) - 1:  # 1023.9 KiB would print as '1024 KiB': next unit
            return f"{text} {unit}"
    raise AssertionError("unreachable")


class _ShortRepr(reprlib.Repr):
    """reprlib with small limits, and huge integers described instead of converted to digits (which is
    quadratic, and refused beyond 4300 digits by Python's int-to-str limit)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = 6
        self.maxstring = 80
        self.maxlong = 40
        self.maxother = 60

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 128:
            return f"<an integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)

    def repr_instance(self, x: Any, level: int) -> str:
        try:
            return super().repr_instance(x, level)
        except Exception:  # a broken __repr__ of a value from a file must not hide the real error
            return f"<{type(x).__name__}>"


_SHORT = _ShortRepr()


def short_repr(value: Any, limit: int = 100) -> str:
    """repr(value) for an error message, in bounded time and length whatever the value: a config value
    built from YAML aliases can be a graph with billions of leaves, whose full repr never finishes."""
    text = _SHORT.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def path_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is a name no file can have (a NUL byte, a name over 255 bytes, a path over 4095 bytes),
    phrased to follow the path in a message; None when it is fine. Checked before the OS is asked, so
    the message can name the key or option the path came from instead of surfacing as an OSError deep
    inside a run."""
    text = os.fspath(path)
    if "\x00" in text:
        return "contains a NUL byte, which no file name can hold"
    encoded = os.fsencode(text)
    for part in encoded.split(b"/"):
        if len(part) > NAME_MAX:
            return (f"has a file or folder name of {len(part)} bytes ({short_repr(os.fsdecode(part), 40)}); "
                    f"names can be at most {NAME_MAX} bytes: shorten it")
    if len(encoded) >= PATH_MAX:
        return f"is {len(encoded)} bytes long; paths can be at most {PATH_MAX - 1} bytes: shorten it"
    return None


def file_problem(path: str | os.PathLike[str]) -> str | None:
    """None when ``path`` is a regular file (or a link to one) that exists, else what it is instead: not
    there, a folder, a device or FIFO (which would block or never end when read), or unreachable."""
    problem = path_problem(path)
    if problem is not None:
        return problem
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except NotADirectoryError:
        return "does not exist (a part of the path is a file, not a folder)"
    except PermissionError:
        return "cannot be reached: permission denied"
    except OSError as err:
        return f"cannot be reached: {err.strerror or err}"
    except ValueError as err:
        return f"is not a usable path ({err})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return f"is {file_kind(mode)}, not a regular file"
    return None


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is, from its ``st_mode``, for messages ("a FIFO (named pipe)")."""
    return ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")
