"""Error types meant for the user: the CLI prints their message and exits non-zero, no traceback.

Anything else escaping the CLI is a bug in fcc, so it keeps its traceback.
"""

from __future__ import annotations


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
