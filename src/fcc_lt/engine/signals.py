"""SIGTERM and Ctrl-C during training: finish the current step, save a checkpoint, exit 128 + N.

Under DDP the ranks agree at log steps (one all-reduce), so a signal takes effect within
``train.log_every`` steps rather than after the current one, and every rank stops at the same step.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from fcc_lt.util.distributed import DistContext
from fcc_lt.util.errors import FccError


class TrainingInterrupted(FccError):
    """A signal stopped the run after a step; its checkpoint was saved and it can be resumed."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class StopSignals:
    """Records SIGTERM/SIGINT while installed; ``requested`` says whether to stop after this step."""

    def __init__(self, ctx: DistContext) -> None:
        self.ctx = ctx
        self.signum: int | None = None

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Stop after the current step as a signal would (tests and embedding code)."""
        self.signum = signum

    @contextmanager
    def installed(self) -> Iterator[None]:
        """The handlers, for the main thread only (elsewhere the caller handles signals)."""

        def handler(signum: int, _frame: Any) -> None:
            self.signum = signum

        previous = {}
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread
            previous = {}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def requested(self, at_log: bool) -> bool:
        if not self.ctx.distributed:
            return self.signum is not None
        if not at_log:
            return False
        flag = torch.tensor([0 if self.signum is None else self.signum], device=self.ctx.device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if int(flag) and self.signum is None:
            self.signum = int(flag)
        return bool(int(flag))

    def interrupted(self, run_dir: Any, epoch: int, step: int) -> TrainingInterrupted:
        """The error that ends the run after its checkpoint is saved (continues at epoch, step)."""
        signum = self.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        where = f"epoch {epoch}, step {step}" if step else f"the start of epoch {epoch}"
        return TrainingInterrupted(f"stopped by {name}; checkpoint saved, the run continues at {where} with: "
                                   f"fcc train --resume {run_dir}", signum)
