"""One optimiser step: micro-batches for gradient accumulation, mixed precision, the optional skipping of
non-finite steps. Nothing here reads a device value back to the host (the opt-in skipping aside).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch import Tensor, nn

from fcc_lt.config.schema import Config
from fcc_lt.engine.objective import Objective, StepOutput
from fcc_lt.util.distributed import DistContext, all_reduce_sum
from fcc_lt.util.precision import autocast
from fcc_lt.util.rng import StreamGenerators, derive_seed


class OptimizerStep:
    """``step(images, labels, epoch, step, global_n)`` -> this rank's mean loss and correct count.

    This rank holds positions rank::world of the global batch and micro-batch i takes positions i::k of
    those, i.e. global positions rank + world*i :: world*k; its random streams are keyed by that global
    micro-batch index. How a global batch is cut into groups (each normalised with its own BatchNorm
    statistics, each mixed on its own) thus depends only on world*k: one process with k = 2 computes the
    same step as two processes with k = 1.
    """

    def __init__(self, cfg: Config, ctx: DistContext, forward: nn.Module, network: nn.Module, objective: Objective,
                 optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                 amp_dtype: torch.dtype | None) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.forward, self.network, self.objective = forward, network, objective
        self.optimizer, self.scaler, self.amp_dtype = optimizer, scaler, amp_dtype
        self.generators = StreamGenerators(cfg.seed)
        self.skipped = False  # whether the last step was skipped (non-finite, train.max_nonfinite_steps)

    def __call__(self, images: Tensor, labels: Tensor, epoch: int, step: int, global_n: int) -> StepOutput:
        """``global_n``: the samples of this global batch (train.batch_size, less for a last partial one)."""
        t, ctx = self.cfg.train, self.ctx
        world, rank = ctx.world_size, ctx.rank
        chunks = max(1, min(t.grad_accum_steps, labels.numel()))
        total_loss = torch.zeros((), device=ctx.device)
        total_correct = torch.zeros((), device=ctx.device)
        self.skipped = False
        # Opt-in skipping keeps the buffers (BN statistics) so that a skipped step leaves no trace.
        saved = [b.detach().clone() for b in self.network.buffers()] if t.max_nonfinite_steps > 0 else None
        for i in range(chunks):
            x, y = images[i::chunks], labels[i::chunks]
            sync = self.forward.no_sync() if ctx.distributed and i < chunks - 1 else nullcontext()  # type: ignore[operator]
            micro = rank + world * i
            torch.manual_seed(derive_seed(self.cfg.seed, "step", epoch, step, micro))
            gen = self.generators.get("mix", ctx.device, epoch, step, micro)
            with sync:
                with autocast(ctx.device, self.amp_dtype):
                    out = self.objective(x, y, epoch, gen)
                # Each micro-batch's mean loss is weighted by its share of the global batch, times world
                # because DDP averages gradients over ranks: the gradient of the global batch mean, also
                # for a last partial batch that leaves ranks with unequal shares.
                loss = out.loss.float() * (y.numel() * world / global_n)
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                else:
                    loss.backward()
            # this rank's mean loss, for the logged train loss (the weight above is for the gradient)
            total_loss = total_loss + out.loss.detach().float() * (y.numel() / labels.numel())
            total_correct = total_correct + out.correct.detach().float()
        if saved is not None and self._any_rank_nonfinite(total_loss):
            # Opt-in skipping costs one host sync per step; the default path never syncs here.
            self.skipped = True
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for buffer, value in zip(self.network.buffers(), saved):
                    buffer.copy_(value)
            zero = torch.zeros((), device=ctx.device)
            return StepOutput(zero, zero)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return StepOutput(total_loss, total_correct)

    def _any_rank_nonfinite(self, loss: Tensor) -> bool:
        """Whether the loss is non-finite on any rank (all ranks must skip a step together)."""
        bad = (~torch.isfinite(loss)).float().reshape(1)
        all_reduce_sum(bad, self.ctx)
        return bool(bad)
