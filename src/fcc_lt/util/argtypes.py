"""Types of command-line options (argparse ``type=``) that refuse what the command could not use.

A value that would fail only later (``--top-k 0`` after the model is loaded, ``--batch-size 0`` inside
a DataLoader, an output name too long to write once the work is done) is refused while the command line
is read, by argparse, as "argument --top-k: expected an integer >= 1, got 0" with exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Callable
from pathlib import Path

from fcc_lt.util.errors import NAME_MAX, path_problem, short_repr

DEVICE_PATTERN = r"auto|cpu|mps|cuda(:\d+)?"  # the values `device` (and a command's --device) may take
TEMP_SUFFIX_BYTES = len(".") + len(".tmp-") + 10  # atomic writes go to .NAME.tmp-PID first (fcc_lt.util.files)


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An integer >= ``low`` (and <= ``high``)."""
    expected = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {short_repr(text)}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


def number_at_least(low: float) -> Callable[[str], float]:
    """A finite number >= ``low``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number >= {low:g}, got {short_repr(text)}") from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"expected a finite number >= {low:g}, got {text}")
        return value

    return parse


def device(text: str) -> str:
    """A device name as the config's ``device`` takes it (auto, cpu, cuda, cuda:N); a CUDA device is refused
    where CUDA is not available (torch is imported only then)."""
    if not re.fullmatch(DEVICE_PATTERN, text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {short_repr(text)}")
    if text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available here; use cpu or auto")
    return text


def path(text: str) -> str:
    """A path that a file can have (no NUL byte, no name over 255 bytes); whether it exists is the
    command's to say, with its own message."""
    problem = path_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{short_repr(text, 80)} {problem}")
    return text


def checkpoint(text: str) -> str:
    """'last', 'best', or a checkpoint file's path."""
    return text if text in ("last", "best") else path(text)


def output_file(text: str) -> str:
    """A file to write at the end of a command: refused now when it is a folder, or when its name is too
    long for the temporary file it is first written to, instead of after the work is done."""
    path(text)
    name = os.fsencode(Path(text).name)
    if len(name) + TEMP_SUFFIX_BYTES > NAME_MAX:
        raise argparse.ArgumentTypeError(f"{short_repr(text, 80)}: a name of {len(name)} bytes is too long to "
                                         f"write (at most {NAME_MAX - TEMP_SUFFIX_BYTES} bytes, as it is "
                                         "written to a temporary .NAME.tmp-PID first)")
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the name of the file to write")
    return text
