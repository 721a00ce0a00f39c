"""Every loss behind one signature, chosen by name from ``LOSSES``.

A loss is constructed from the training class counts (index = class id) plus its own keyword
parameters, and called as ``loss(logits, targets, features=None)`` returning a scalar; distillation
losses (``needs_teacher = True``) also receive ``teacher_logits``. The trainer calls
``set_epoch(epoch)`` at the start of every epoch; losses with scheduled class weights (deferred
re-weighting) switch there. Losses compute in float32 whatever the autocast dtype of the logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcc.registry import LOSSES

__all__ = ["LOSSES", "CrossEntropy", "Loss"]


class Loss(nn.Module):
    """Base class: holds the class counts as a float64-derived float32 buffer and the current epoch."""

    def __init__(self, class_counts: Sequence[int]) -> None:
        super().__init__()
        counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
        if counts.dim() != 1 or counts.numel() == 0 or bool((counts < 0).any()):
            raise ValueError("class_counts must be a non-empty list of non-negative counts")
        self.num_classes = int(counts.numel())
        self.register_buffer("class_counts", counts.float(), persistent=False)
        self.epoch = 1

    needs_teacher = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None) -> Tensor:
        raise NotImplementedError


@LOSSES.register("ce")
class CrossEntropy(Loss):
    """Plain softmax cross-entropy, averaged over the batch."""

    def __init__(self, class_counts: Sequence[int]) -> None:
        super().__init__(class_counts)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None) -> Tensor:
        return F.cross_entropy(logits.float(), targets)
