"""What one training step optimises: mixing, the forward pass (with FCC), and the loss.

Kept apart from the trainer so that methods which change the objective (mixing, distillation) touch
this file only, while the trainer keeps the loop, optimisation and bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fcc.losses import Loss
from fcc.mixing import MixedBatch, Mixer


@dataclass
class StepOutput:
    """The loss to back-propagate, and the (possibly fractional) number of correct predictions."""

    loss: Tensor
    correct: Tensor


class Objective:
    """Mix the batch, run the network with labels and epoch (so FCC can scale), apply the loss."""

    def __init__(self, model: nn.Module, criterion: Loss, mixer: Mixer, teacher: nn.Module | None = None) -> None:
        self.model = model
        self.criterion = criterion
        self.mixer = mixer
        self.teacher = teacher

    def teacher_logits(self, images: Tensor, batch: MixedBatch | None = None) -> Tensor | None:
        """The frozen teacher's logits for distillation losses (None without a teacher).

        The teacher sees the same (mixed) images as the student; under manifold mixup it mixes its own
        hidden activations at the same location with the same lambda and pairing.
        """
        if self.teacher is None:
            return None
        with torch.no_grad():
            if batch is not None and batch.feature_mix is not None:
                return self.teacher(images, mix=batch).float()
            return self.teacher(images).float()

    def __call__(self, images: Tensor, labels: Tensor, epoch: int, generator: torch.Generator) -> StepOutput:
        batch = self.mixer(images, labels, generator)
        if batch.labels_b is None:
            logits, features = self.model(batch.images, labels=labels, epoch=epoch, return_features=True)
            extra = {} if self.teacher is None else {"teacher_logits": self.teacher_logits(batch.images)}
            loss = self.criterion(logits, labels, features=features, **extra)
            correct = (logits.argmax(dim=1) == labels).sum()
            return StepOutput(loss, correct)
        return self.mixed_step(batch, epoch)

    def mixed_step(self, batch: MixedBatch, epoch: int) -> StepOutput:
        """L(labels_a) weighted w per sample plus L(labels_b) weighted 1 - w; accuracy mixed alike.

        The weights multiply each sample's loss before the loss's own reduction, so per-sample label
        weights (remix) act per sample rather than through their batch mean.
        """
        a, b, w = batch.labels_a, batch.labels_b, batch.weight_a
        logits, features = self.model(batch.images, labels=a, epoch=epoch, return_features=True, mix=batch)
        extra = {} if self.teacher is None else {"teacher_logits": self.teacher_logits(batch.images, batch)}
        w = w.float()
        loss = (self.criterion(logits, a, features=features, sample_weight=w, **extra)
                + self.criterion(logits, b, features=features, sample_weight=1 - w, **extra))
        pred = logits.argmax(dim=1)
        correct = (w * (pred == a) + (1 - w) * (pred == b)).sum()
        return StepOutput(loss, correct)
