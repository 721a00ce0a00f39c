"""Reading a device value on the host without waiting for the device.

The training loop wants to look at a few device values every ``train.log_every`` steps (the first
non-finite step, the running loss for the progress bar), but reading a CUDA tensor waits for every
queued kernel: a synchronisation that stalls the pipeline. ``LaggedRead`` starts an asynchronous copy
into pinned host memory and hands back the newest value whose copy has already finished, so the loop
sees values at most one log interval old and never waits. On the CPU there is nothing to wait for and
the value is current. The epoch's end reads the final values exactly (one synchronisation per epoch).
"""

from __future__ import annotations

import torch
from torch import Tensor


class LaggedRead:
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
