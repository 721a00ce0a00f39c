"""Error types meant for the user: the CLI prints their message and exits non-zero, no traceback.

Anything else escaping the CLI is a bug in fcc, so it keeps its traceback.
"""

from __future__ import annotations

from pathlib import Path


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
