"""RUN/train.log: what `fcc train` said about a run, kept beside metrics.jsonl.

Each start or resume appends a header (time, the command line) and the environment (fcc, torch, CUDA,
the device, Python), then every message of the run as the console shows it: warnings (checksums,
schedule rescaling, "too short"), the ``fcc`` logger's lines (the speed choice, compilation, resume
notes), the epoch lines and the end. Progress bars and periodic progress lines stay on the console.

A sweep already sends a run's whole output to RUN/train.log (``experiments.sweep.processes``): when
this process's stderr is that very file, nothing is written twice.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shlex
import sys
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import torch

from fcc_lt import __version__
from fcc_lt.util.files import open_append

LOG_NAME = "train.log"


def environment_lines(device: torch.device) -> list[str]:
    """fcc, torch, CUDA, the device and Python, one line each."""
    cuda = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA build"
    if torch.cuda.is_available():
        cuda += f", {torch.cuda.device_count()} GPU(s) visible"
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} ({device})"
    else:
        name = f"{platform.processor() or platform.machine()} ({device}, {torch.get_num_threads()} threads)"
    return [f"fcc {__version__}, torch {torch.__version__}, {cuda}", f"device: {name}",
            f"python {platform.python_version()} on {platform.platform()}"]


def format_duration(seconds: float) -> str:
    """'42.3 s', '12 min 05 s', '3 h 02 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {sec:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def command_line() -> list[str]:
    """This process's command line as the user typed it: `fcc ...` for the console script and for
    `python -m fcc_lt`, else Python's argv (a script using the Python API)."""
    first = Path(sys.argv[0]).name if sys.argv else ""
    if first in ("fcc", "__main__.py"):
        return ["fcc", *sys.argv[1:]]
    return [sys.executable, *sys.argv]


def _same_file(stream: Any, path: Path) -> bool:
    """Whether ``stream`` writes to ``path`` (a sweep points a run's stderr at RUN/train.log)."""
    try:
        a, b = os.fstat(stream.fileno()), os.stat(path)
    except (OSError, AttributeError, ValueError):  # no file behind it (pytest's capture), or no log yet
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


class _FileHandler(logging.Handler):
    """The ``fcc`` logger's records, as lines of the run log."""

    def __init__(self, log: RunLog) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        self.log.line(prefix + record.getMessage())


class RunLog:
    """RUN/train.log while a run trains (rank 0 only); ``line`` adds to it, ``close`` ends it."""

    def __init__(self, run_dir: Path, *, enabled: bool = True) -> None:
        self.path = Path(run_dir) / LOG_NAME
        self.enabled = enabled and not _same_file(sys.stderr, self.path)
        self._file: TextIO | None = None
        self._handler: logging.Handler | None = None
        self._showwarning: Any = None
        self._level = logging.NOTSET

    def open(self, device: torch.device, command: Sequence[str] | None = None, notes: Sequence[str] = ()) -> None:
        """Append the header, the environment and ``notes`` (messages from before the run existed, e.g.
        the config's warnings), then record the logger and warnings until ``close``."""
        if not self.enabled or self._file is not None:
            return
        self._file = open_append(self.path, "the run's log")  # closed by close()
        self.line(f"===== {shlex.join(list(command) if command is not None else command_line())}")
        for text in environment_lines(device):
            self.line(text)
        for text in notes:
            self.line(text)
        self._handler = _FileHandler(self)
        logger = logging.getLogger("fcc")
        logger.addHandler(self._handler)
        self._level = logger.level
        if logger.getEffectiveLevel() > logging.INFO:  # logging left unconfigured (the Python API): the file
            logger.setLevel(logging.INFO)  # still gets the run's info lines
        self._showwarning = warnings.showwarning

        def showwarning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                        line: Any = None) -> None:
            self._showwarning(message, category, filename, lineno, file, line)
            self.line(f"warning: {message}")

        warnings.showwarning = showwarning

    def line(self, text: str) -> None:
        """One timestamped line (a run log that cannot be written any more is given up, not the run)."""
        if self._file is None:
            return
        stamp = datetime.now().astimezone().isoformat(sep=" ", timespec="seconds")
        try:
            for part in str(text).splitlines() or [""]:
                self._file.write(f"{stamp} {part}\n")
            self._file.flush()
        except OSError as err:
            self._file = None
            warnings.warn(f"cannot write {self.path} any more ({err.strerror or err}); the run goes on, its "
                          "metrics.jsonl and checkpoints hold every result", stacklevel=2)

    def close(self) -> None:
        if self._handler is not None:
            logger = logging.getLogger("fcc")
            logger.removeHandler(self._handler)
            logger.setLevel(self._level)
            self._handler = None
        if self._showwarning is not None:
            warnings.showwarning = self._showwarning
            self._showwarning = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
