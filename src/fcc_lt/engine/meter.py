"""What an epoch's steps add up to, watched without waiting for the device: the running loss and accuracy
sums, the first non-finite step, the progress display.

Every step adds to device tensors (no host read). Every ``train.log_every`` steps the loop looks at
them: ``LaggedRead`` starts an asynchronous copy into pinned host memory and hands back the newest value
whose copy has already finished, so the loop sees values at most one log interval old and never waits
(on the CPU there is nothing to wait for and the value is current). Under DDP the ranks must stop at
the same step, so there they agree on the earliest bad step with a collective instead. The epoch's end
reads the totals once (summed over ranks).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from fcc_lt.util.distributed import DistContext, all_reduce_sum


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


class EpochMeter:
    """The tallies of one rank for one epoch, and the progress bar (rank 0, ``train.progress``)."""

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
        self.bar = tqdm(total=steps, initial=start, desc=f"epoch {epoch}/{epochs}", unit="step",
                        disable=not (show and ctx.is_main), leave=False, dynamic_ncols=True)
        self.watch = LaggedRead(self.device)
        self.t0 = time.perf_counter()

    def add(self, step: int, loss: Tensor, correct: Tensor, n: int) -> None:
        """One step's mean loss and correct count over ``n`` samples (0 for a skipped step); device only."""
        self.first_bad = torch.where((self.first_bad < 0) & ~torch.isfinite(loss), step, self.first_bad)
        self.sums += torch.stack([loss.double() * n, correct.double()])
        self.count += n
        self.bar.update(1)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0

    def look(self) -> int | None:
        """Every train.log_every steps: the first non-finite step seen so far (None: none seen), and a
        refreshed progress bar. Lagged on one process; a collective under DDP."""
        if self.ctx.distributed:
            bad = self.earliest_bad()
            if bad is not None:
                return bad
            values = None if self.bar.disable else [*self.sums.tolist(), -1]
        else:
            values = self.watch.poll(torch.cat([self.sums, self.first_bad.double().reshape(1)]))
            if values is not None and values[2] >= 0:
                return int(values[2])
        if values is not None and not self.bar.disable:
            count = max(self.count, 1)
            rate = self.count * self.ctx.world_size / max(time.perf_counter() - self.t0, 1e-9)
            self.bar.set_postfix(loss=f"{values[0] / count:.4f}", acc=f"{100 * values[1] / count:.2f}",
                                 lr=f"{self.lr:.4g}", img_s=f"{rate:.0f}")
        return None

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
        self.bar.close()
