"""One training step, top to bottom: micro-batches -> mix -> FCC factors -> forward -> loss -> scaled backward
-> optimizer step. Nothing here reads a device value back to the host (the opt-in skipping of
non-finite steps aside).

The path of one micro-batch: the mixer -> the network's features (mixed inside at a backbone stage for
manifold mixup) -> FCC scales the pooled features by each sample's factor (float32) -> mixing at pool ->
head -> mixing at logits -> loss. The network stays pure (``fcc_lt.models.network``); everything that
depends on labels, the epoch or the mix happens here.

Which FCC factor a sample gets: where the scaled features are mixtures of two samples (input mixing,
or manifold mixing at a backbone stage) the factor is w * tau(a) + (1 - w) * tau(b) with the sample's
label weight w (or ``MixedBatch.factor_weight_a`` when a mixer sets it, e.g. the original remix, which
gives every sample label a's factor); mixing at pool or logits happens after FCC, so every (still
unmixed) sample is scaled by its own class's factor.

The modules: ``TrainingForward`` (features -> FCC -> head) is what DDP wraps; ``torch.compile`` is applied
to it by ``fcc_lt.engine.speed.compile_training`` (no extra module layer), so the module tree is
DDP -> TrainingForward -> Network.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fcc_lt.config.schema import Config
from fcc_lt.methods.fcc import FeatureClusterCompression, compress
from fcc_lt.methods.losses import Loss
from fcc_lt.methods.mixers import BatchShare, FeatureMix, MixedBatch, Mixer
from fcc_lt.models.network import model_memory_format
from fcc_lt.util.distributed import DistContext, all_reduce_sum
from fcc_lt.util.precision import autocast
from fcc_lt.util.rng import StreamGenerators, derive_seed


@dataclass
class StepOutput:
    """The loss to back-propagate, and the (possibly fractional) number of correct predictions."""

    loss: Tensor
    correct: Tensor


@dataclass
class MethodParts:
    """What a method adds to a step: the loss, the mixer, FCC and the optional (frozen) teacher."""

    criterion: Loss
    mixer: Mixer
    compression: FeatureClusterCompression | None = None
    teacher: nn.Module | None = None


# ----------------------------------------------------------------------------------- the forward pass

def mixed_features(network: nn.Module, images: Tensor, feature_mix: FeatureMix | None) -> Tensor:
    """Pooled features, with hidden activations mixed after backbone stage K for ``feature_mix`` at stageK."""
    stage = feature_mix.stage if feature_mix is not None else None
    if stage is None:
        return network.features(images)
    backbone = network.backbone
    if stage > len(backbone.stages):
        raise ValueError(f"manifold mixing after stage {stage}, but the backbone has {len(backbone.stages)} stages")
    maps = backbone.stem(images)
    for i, block in enumerate(backbone.stages, start=1):
        maps = block(maps)
        if i == stage:
            maps = feature_mix(maps)  # type: ignore[misc]
    return network.pool(maps)


def forward_pass(network: nn.Module, images: Tensor, factors: Tensor | None = None,
                 feature_mix: FeatureMix | None = None) -> tuple[Tensor, Tensor]:
    """(logits, features): features -> FCC (``factors`` (B,), float32) -> mixing at pool -> head -> mixing at
    logits. The features are returned as the head saw them (scaled, and mixed at pool), which losses such
    as influence-balanced use."""
    features = mixed_features(network, images, feature_mix)
    if factors is not None:
        features = compress(features, factors)
    if feature_mix is not None and feature_mix.location == "pool":
        features = feature_mix(features)
    logits = network.head(features)
    if feature_mix is not None and feature_mix.location == "logits":
        logits = feature_mix(logits)
    return logits, features


class TrainingForward(nn.Module):
    """The module a training step runs, and what DDP wraps: ``forward_pass`` of the network.

    Batches are brought into the network's memory format (a no-op when the loader made them so).
    ``compiled`` is the compiled call that ``fcc_lt.engine.speed.compile_training`` attaches (None: eager);
    a manifold-mixing step (``feature_mix``, whose per-step object would change the graph) runs eagerly.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.memory_format = model_memory_format(network)
        self.compiled: Callable[[Tensor, Tensor | None], tuple[Tensor, Tensor]] | None = None

    def forward(self, images: Tensor, factors: Tensor | None = None,
                feature_mix: FeatureMix | None = None) -> tuple[Tensor, Tensor]:
        images = images.contiguous(memory_format=self.memory_format)
        if feature_mix is None and self.compiled is not None:
            return self.compiled(images, factors)
        return self.eager(images, factors, feature_mix)

    def eager(self, images: Tensor, factors: Tensor | None = None,
              feature_mix: FeatureMix | None = None) -> tuple[Tensor, Tensor]:
        return forward_pass(self.network, images, factors, feature_mix)


# ------------------------------------------------------------------------- what a micro-batch optimises

def fcc_factors(compression: FeatureClusterCompression | None, batch: MixedBatch, epoch: int) -> Tensor | None:
    """Each sample's FCC factor for this batch (see the module doc), or None without FCC."""
    if compression is None:
        return None
    fm = batch.feature_mix
    if batch.labels_b is None or (fm is not None and fm.stage is None):
        return compression.factors(batch.labels_a, epoch)
    weight = batch.factor_weight_a if batch.factor_weight_a is not None else batch.weight_a
    return compression.mixed_factors(batch.labels_a, batch.labels_b, weight, epoch)


def teacher_logits(teacher: nn.Module | None, batch: MixedBatch) -> Tensor | None:
    """The frozen teacher's logits on the same (mixed) images; under manifold mixup the teacher mixes its
    own hidden activations at the same location with the same lambda and pairing. No FCC."""
    if teacher is None:
        return None
    with torch.no_grad():
        logits, _ = forward_pass(teacher, batch.images, None, batch.feature_mix)
    return logits.float()


def objective(forward: nn.Module, parts: MethodParts, images: Tensor, labels: Tensor, epoch: int,
              generator: torch.Generator, share: BatchShare | None = None) -> StepOutput:
    """Mix the batch, run ``forward`` (a TrainingForward, possibly DDP-wrapped) with FCC's factors, apply the
    loss; returns the loss and the (mixed) number of correct predictions. ``generator`` and ``share``: the
    mixer's random streams (fcc_lt.methods.mixers)."""
    batch = parts.mixer(images, labels, generator, share=share)
    logits, features = forward(batch.images, fcc_factors(parts.compression, batch, epoch), batch.feature_mix)
    teacher = teacher_logits(parts.teacher, batch)
    extra = {} if teacher is None else {"teacher_logits": teacher}
    a, b = batch.labels_a, batch.labels_b
    if b is None:
        loss = parts.criterion(logits, a, features=features, **extra)
        return StepOutput(loss, (logits.argmax(dim=1) == a).sum())
    # L(labels_a) weighted w per sample plus L(labels_b) weighted 1 - w, before the loss's own
    # reduction, so per-sample label weights (remix) act per sample; accuracy mixed alike.
    w = batch.weight_a.float()
    loss = (parts.criterion(logits, a, features=features, sample_weight=w, **extra)
            + parts.criterion(logits, b, features=features, sample_weight=1 - w, **extra))
    pred = logits.argmax(dim=1)
    return StepOutput(loss, (w * (pred == a) + (1 - w) * (pred == b)).sum())


# ---------------------------------------------------------------------------------------- the step

class TrainingStep:
    """``step(images, labels, epoch, step, global_n)`` -> this rank's mean loss and correct count.

    This rank holds positions rank::world of the global batch and micro-batch i takes positions i::k of
    those, i.e. global positions rank + world*i :: world*k; its random streams are keyed by that global
    micro-batch index. How a global batch is cut into groups (each normalised with its own BatchNorm
    statistics, each mixed on its own) thus depends only on world*k: one process with k = 2 computes the
    same step as two processes with k = 1.
    """

    def __init__(self, cfg: Config, ctx: DistContext, forward: nn.Module, network: nn.Module, parts: MethodParts,
                 optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                 amp_dtype: torch.dtype | None) -> None:
        self.cfg, self.ctx = cfg, ctx
        self.forward, self.network, self.parts = forward, network, parts
        self.optimizer, self.scaler, self.amp_dtype = optimizer, scaler, amp_dtype
        self.generators = StreamGenerators(cfg.seed)
        self.skipped = False  # whether the last step was skipped (non-finite, train.max_nonfinite_steps)

    def objective(self, images: Tensor, labels: Tensor, epoch: int, generator: torch.Generator,
                  share: BatchShare | None = None) -> StepOutput:
        """What one micro-batch optimises (``objective`` above, with this run's forward and parts)."""
        return objective(self.forward, self.parts, images, labels, epoch, generator, share)

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
            # what a mixer draws for the whole global batch (the same on every rank); this micro-batch
            # holds its positions micro::world*chunks
            share = BatchShare(micro, world * chunks, global_n, self.generators.get("mix-global", ctx.device,
                                                                                      epoch, step))
            with sync:
                with autocast(ctx.device, self.amp_dtype):
                    out = self.objective(x, y, epoch, gen, share)
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
