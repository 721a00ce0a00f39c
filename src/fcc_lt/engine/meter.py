"""What an epoch's steps add up to, watched without waiting for the device: the running loss and accuracy
sums, the first non-finite step, and the progress display.

Every step adds to device tensors (no host read). Every ``train.log_every`` steps the loop checks for a
non-finite loss: ``LaggedRead`` starts an asynchronous copy into pinned host memory and hands back the
newest value whose copy has already finished, so the loop sees values at most one log interval old and
never waits (on the CPU there is nothing to wait for and the value is current). Under DDP the ranks
must stop at the same step, so there they agree on the earliest bad step with a collective instead. The
epoch's end reads the totals once (summed over ranks).

The display (rank 0, ``train.progress``) shows running means of loss and accuracy, images/s and the LR
from the first step on, from the same lagged reads (on CUDA a running mean may be a step or two behind;
a read never waits). On a terminal it is a tqdm bar; where stderr is no terminal (a pipe, a SLURM log)
it is a plain line every ``TQDM_MININTERVAL`` seconds (30 by default), never a carriage return.
Evaluation passes get a bar (or such lines) of their own.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from fcc_lt.data.loader import Batch, EvalLoader
from fcc_lt.util.distributed import DistContext, all_reduce_sum

REFRESH_S = 0.5  # a terminal bar's postfix is refreshed at most this often


def line_interval() -> float:
    """Seconds between plain progress lines where stderr is no terminal (``TQDM_MININTERVAL``, e.g. set by
    `fcc sweep`, else 30)."""
    try:
        return max(0.0, float(os.environ.get("TQDM_MININTERVAL", "30")))
    except ValueError:
        return 30.0


def on_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


class LaggedRead:
    """The newest finished host copy of a device value, never blocking on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self._buffer: Tensor | None = None
        self._event: torch.cuda.Event | None = None

    def poll(self, value: Tensor) -> list[float] | None:
        """The newest finished copy of ``value`` (flattened to a list), then a new copy of ``value`` is
        started; None while no copy has finished yet. Never blocks on CUDA."""
        if self.device.type != "cuda":
            return value.detach().flatten().tolist()
        done = None
        if self._event is not None and self._event.query():  # query() does not wait
            done = self._buffer.tolist()  # type: ignore[union-attr]  # host memory: no device access
            self._event = None
        if self._event is None:
            if self._buffer is None or self._buffer.shape != value.flatten().shape:
                self._buffer = torch.empty(value.numel(), dtype=value.dtype, pin_memory=True)
            self._buffer.copy_(value.detach().flatten(), non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        return done


class Progress:
    """A tqdm bar on a terminal, plain periodic lines elsewhere, nothing when hidden."""

    def __init__(self, desc: str, total: int, initial: int = 0, *, show: bool, unit: str = "step") -> None:
        self.desc, self.total, self.n, self.show = desc, total, initial, show
        self.terminal = show and on_terminal()
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                        file=sys.stderr, disable=not self.terminal)
        self.interval = REFRESH_S if self.terminal else line_interval()
        self.shown_at = time.monotonic() if not self.terminal else float("-inf")

    def due(self) -> bool:
        """Whether the next ``update`` is shown (a terminal bar is refreshed every REFRESH_S seconds, a plain
        line written every ``line_interval()`` seconds)."""
        return self.show and time.monotonic() - self.shown_at >= self.interval

    def update(self, postfix: dict[str, str] | None = None) -> None:
        """One more step done; ``postfix`` (loss, acc, ...) is shown with it when given."""
        self.n += 1
        if self.terminal:
            if postfix is not None:
                self.shown_at = time.monotonic()
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(1)
        elif self.due():
            self.shown_at = time.monotonic()
            shown = "  ".join(f"{k} {v}" for k, v in (postfix or {}).items())
            tqdm.write(f"{self.desc}: {self.n}/{self.total}" + (f"  {shown}" if shown else ""), file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


class EvalProgress:
    """An evaluation loader shown as it goes (a bar, or plain lines), for the passes that iterate it."""

    def __init__(self, loader: EvalLoader, desc: str, *, show: bool) -> None:
        self.loader, self.desc, self.show = loader, desc, show

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        progress = Progress(self.desc, len(self.loader), show=self.show, unit="batch")
        try:
            for batch in self.loader:
                yield batch
                progress.update()
        finally:
            progress.close()


class EpochMeter:
    """The tallies of one rank for one epoch, and their display (rank 0, ``train.progress``)."""

    def __init__(self, ctx: DistContext, epoch: int, epochs: int, steps: int, start: int = 0,
                 partial: dict[str, Any] | None = None, *, show: bool = True, lr: float = 0.0) -> None:
        self.ctx, self.device, self.lr = ctx, ctx.device, lr
        self.sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # this rank's [loss sum, correct]
        self.first_bad = torch.full((), -1, dtype=torch.long, device=self.device)  # first non-finite step
        self.count = 0  # samples of this rank (known on the host: no device read for it)
        self.elapsed_before = 0.0
        if start and partial:
            if ctx.is_main:  # the saved sums are totals over all ranks: count them once
                self.sums += torch.tensor(partial["sums"][:2], dtype=torch.float64, device=self.device)
                self.count = int(partial["sums"][2])
            self.elapsed_before = partial["elapsed"]
        self.start_count = self.count  # the samples of this session, for images/s
        self.progress = Progress(f"epoch {epoch}/{epochs}", steps, start, show=show and ctx.is_main)
        self.shown = LaggedRead(self.device)  # the display's copies of [loss sum, correct, samples]
        self.latest: list[float] | None = None
        self.checked = LaggedRead(self.device)  # the log-step look's copies of the first bad step
        self.t0 = time.perf_counter()

    def add(self, step: int, loss: Tensor, correct: Tensor, n: int) -> None:
        """One step's mean loss and correct count over ``n`` samples (0 for a skipped step); device only,
        apart from the display's lagged read."""
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss), step, self.first_bad)
        self.sums += torch.stack([loss.double() * n, correct.double()])
        self.count += n
        postfix = None
        if self.progress.show:
            if self.device.type == "cuda":  # keep copies flowing; the display takes the newest finished one
                self.latest = self._read() or self.latest
            if self.progress.due():
                postfix = self._postfix(self.latest if self.device.type == "cuda" else self._read())
        self.progress.update(postfix)

    def _read(self) -> list[float] | None:
        count = torch.full((1,), float(self.count), dtype=torch.float64, device=self.device)
        return self.shown.poll(torch.cat([self.sums, count]))

    def _postfix(self, values: list[float] | None) -> dict[str, str] | None:
        """Running means of the samples so far (as of the read's copy), images/s and the LR."""
        if values is None:
            return None
        loss_sum, correct, count = values
        rate = (self.count - self.start_count) * self.ctx.world_size / max(time.perf_counter() - self.t0, 1e-9)
        return {"loss": f"{loss_sum / max(count, 1):.4f}", "acc": f"{100 * correct / max(count, 1):.2f}",
                "img/s": f"{rate:.0f}", "lr": f"{self.lr:.4g}"}

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def look(self) -> int | None:
        """Every train.log_every steps: the first non-finite step seen so far (None: none seen). Lagged on
        one process; a collective under DDP."""
        if self.ctx.distributed:
            return self.earliest_bad()
        values = self.checked.poll(self.first_bad.double().reshape(1))
        return int(values[0]) if values is not None and values[0] >= 0 else None

    def earliest_bad(self) -> int | None:
        """The first non-finite step of this epoch (of any rank under DDP, where every rank calls this),
        read exactly; None when every step was finite."""
        first_bad = self.first_bad
        if self.ctx.distributed:  # every rank stops together, at the earliest bad step of any rank
            never = torch.iinfo(torch.long).max
            earliest = torch.where(first_bad >= 0, first_bad, never).reshape(1)
            torch.distributed.all_reduce(earliest, op=torch.distributed.ReduceOp.MIN)
            first_bad = torch.where(earliest == never, -1, earliest)
        bad = int(first_bad)
        return bad if bad >= 0 else None

    def totals(self) -> list[float]:
        """[loss sum, correct, samples] over every rank (a collective under DDP)."""
        totals = torch.cat([self.sums, torch.tensor([float(self.count)], dtype=torch.float64, device=self.device)])
        return all_reduce_sum(totals, self.ctx).cpu().tolist()

    def close(self) -> None:
        self.progress.close()
