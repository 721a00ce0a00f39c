"""What one training step optimises: mixing, the forward pass (with FCC), and the loss.

Kept apart from the trainer so that methods which change the objective (mixing, distillation) touch
this file only, while the trainer keeps the loop, optimisation and bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fcc.losses import Loss
from fcc.mixing import Mixer


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

    def teacher_logits(self, images: Tensor) -> Tensor | None:
        """The frozen teacher's logits for distillation losses (None without a teacher)."""
        if self.teacher is None:
            return None
        with torch.no_grad():
            return self.teacher(images).float()

    def __call__(self, images: Tensor, labels: Tensor, epoch: int, generator: torch.Generator) -> StepOutput:
        batch = self.mixer(images, labels, generator)
        if batch.labels_b is not None:
            raise NotImplementedError("mixed batches need a mixing-aware objective")
        logits, features = self.model(batch.images, labels=labels, epoch=epoch, return_features=True)
        extra = {} if self.teacher is None else {"teacher_logits": self.teacher_logits(batch.images)}
        loss = self.criterion(logits, labels, features=features, **extra)
        correct = (logits.argmax(dim=1) == labels).sum()
        return StepOutput(loss, correct)
