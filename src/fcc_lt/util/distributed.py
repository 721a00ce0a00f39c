"""Process-group setup for torchrun/DDP and the few collectives the trainer needs.

Launched by ``torchrun``, the environment carries RANK, WORLD_SIZE and LOCAL_RANK; otherwise the run is
a single process. NCCL is used on CUDA, gloo on CPU.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from fcc_lt.util.errors import ConfigError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' picks CUDA when available; under torchrun each process takes cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device: {name!r} asked for, but CUDA is not available here; use cpu or auto")
        if name == "cuda":
            if local_rank >= torch.cuda.device_count():
                raise ConfigError(f"device: process LOCAL_RANK={local_rank} needs cuda:{local_rank}, but only "
                                  f"{torch.cuda.device_count()} CUDA devices are visible; start at most that "
                                  "many processes per node (torchrun --nproc-per-node)")
            name = f"cuda:{local_rank}"
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' asked for, but MPS is not available here")
    return torch.device(name)


def setup(device_name: str) -> DistContext:
    """Join the process group when launched by torchrun; returns this process's rank and device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    elif device.type == "cuda":
        torch.cuda.set_device(device)
    return DistContext(rank, world_size, local_rank, device)


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum across ranks in place (no-op for one process)."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


T = TypeVar("T")


def in_turns(ctx: DistContext, build: Callable[[], T]) -> T:
    """``build()`` on rank 0 first, then on the first process of every other node, then on all the rest.

    Whatever ``build`` downloads, extracts or caches is then written by one process per file system
    while the others wait, and found complete by them (several processes downloading into the same
    folder would overwrite each other's partial files).
    """
    if not ctx.distributed:
        return build()
    turn = 0 if ctx.rank == 0 else 1 if ctx.local_rank == 0 else 2
    result: T | None = None
    for current in range(3):
        if current == turn:
            result = build()
        dist.barrier()
    return result  # type: ignore[return-value]


def broadcast_buffers(module: nn.Module, ctx: DistContext) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics).

    DDP copies rank 0's buffers at the start of each training forward, but the last step of an epoch
    leaves every rank with statistics updated from its own share of the batch. Evaluating and
    checkpointing after this keeps all ranks on the one model rank 0 saves.
    """
    if ctx.distributed:
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def cleanup() -> None:
    """Leave the process group once nothing uses it any more.

    Called after the command's exceptions are handled, and after a garbage collection, so that no DDP
    reducer (which holds the group and its communication threads) outlives the group: destroying a group
    still in use can abort the process at exit.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
