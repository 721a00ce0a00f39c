"""What one training step optimises: mixing, the forward pass with FCC, the loss.

The path of a batch: mixer -> network features (mixed inside at a backbone stage for manifold mixup)
-> FCC scales the pooled features by each sample's factor (float32) -> mixing at pool -> head ->
mixing at logits -> loss. The network stays pure (``fcc_lt.models.network``); everything that depends
on labels, the epoch or the mix happens here.

Which FCC factor a sample gets: where the scaled features are mixtures of two samples (input mixing,
or manifold mixing at a backbone stage) the factor is w * tau(a) + (1 - w) * tau(b) with the sample's
label weight w (or ``MixedBatch.factor_weight_a`` when a mixer sets it, e.g. the original remix, which
gives every sample label a's factor); mixing at pool or logits happens after FCC, so every (still
unmixed) sample is scaled by its own class's factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fcc_lt.methods.fcc import FeatureClusterCompression, compress
from fcc_lt.methods.losses import Loss
from fcc_lt.methods.mixers import FeatureMix, MixedBatch, Mixer


@dataclass
class StepOutput:
    """The loss to back-propagate, and the (possibly fractional) number of correct predictions."""

    loss: Tensor
    correct: Tensor


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


class TrainingForward(nn.Module):
    """The module a training step runs, and what DDP wraps: features -> FCC -> head, with mixing points.

    ``factors`` (B,) are the FCC factors of the batch (None without FCC); returns (logits, features) with
    the features as the head saw them (scaled, and mixed at pool), which losses such as influence-
    balanced use.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, images: Tensor, factors: Tensor | None = None,
                feature_mix: FeatureMix | None = None) -> tuple[Tensor, Tensor]:
        features = mixed_features(self.network, images, feature_mix)
        if factors is not None:
            features = compress(features, factors)
        if feature_mix is not None and feature_mix.location == "pool":
            features = feature_mix(features)
        logits = self.network.head(features)
        if feature_mix is not None and feature_mix.location == "logits":
            logits = feature_mix(logits)
        return logits, features


class Objective:
    """Mix the batch, run the network with FCC's factors, apply the loss; returns loss and accuracy."""

    def __init__(self, forward: nn.Module, criterion: Loss, mixer: Mixer,
                 compression: FeatureClusterCompression | None = None, teacher: nn.Module | None = None) -> None:
        self.forward = forward  # a TrainingForward, possibly DDP-wrapped
        self.criterion = criterion
        self.mixer = mixer
        self.compression = compression
        self.teacher = TrainingForward(teacher) if teacher is not None else None

    def factors(self, batch: MixedBatch, epoch: int) -> Tensor | None:
        """Each sample's FCC factor for this batch (see the module doc), or None without FCC."""
        fcc = self.compression
        if fcc is None:
            return None
        fm = batch.feature_mix
        if batch.labels_b is None or (fm is not None and fm.stage is None):
            return fcc.factors(batch.labels_a, epoch)
        weight = batch.factor_weight_a if batch.factor_weight_a is not None else batch.weight_a
        return fcc.mixed_factors(batch.labels_a, batch.labels_b, weight, epoch)

    def teacher_logits(self, batch: MixedBatch) -> Tensor | None:
        """The frozen teacher's logits on the same (mixed) images; under manifold mixup the teacher mixes its
        own hidden activations at the same location with the same lambda and pairing. No FCC."""
        if self.teacher is None:
            return None
        with torch.no_grad():
            logits, _ = self.teacher(batch.images, None, batch.feature_mix)
        return logits.float()

    def __call__(self, images: Tensor, labels: Tensor, epoch: int, generator: torch.Generator) -> StepOutput:
        batch = self.mixer(images, labels, generator)
        logits, features = self.forward(batch.images, self.factors(batch, epoch), batch.feature_mix)
        extra = {} if self.teacher is None else {"teacher_logits": self.teacher_logits(batch)}
        a, b = batch.labels_a, batch.labels_b
        if b is None:
            loss = self.criterion(logits, a, features=features, **extra)
            return StepOutput(loss, (logits.argmax(dim=1) == a).sum())
        # L(labels_a) weighted w per sample plus L(labels_b) weighted 1 - w, before the loss's own
        # reduction, so per-sample label weights (remix) act per sample; accuracy mixed alike.
        w = batch.weight_a.float()
        loss = (self.criterion(logits, a, features=features, sample_weight=w, **extra)
                + self.criterion(logits, b, features=features, sample_weight=1 - w, **extra))
        pred = logits.argmax(dim=1)
        return StepOutput(loss, (w * (pred == a) + (1 - w) * (pred == b)).sum())
