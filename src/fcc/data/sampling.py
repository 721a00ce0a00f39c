"""Class-aware index samplers: each draws one epoch's global order of training indices on the device.

Every rank draws the same global order from the run's seed and the epoch (see fcc.rng) and the loader
hands each rank its own share, so samplers need no distributed logic of their own.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fcc.registry import SAMPLERS


class Sampler:
    """Base class: subclasses implement ``epoch_indices``; ``num_samples`` is the epoch length."""

    def __init__(self, labels: Tensor, num_classes: int) -> None:
        self.labels = labels
        self.num_classes = num_classes
        self.class_counts = torch.bincount(labels, minlength=num_classes)

    def num_samples(self, epoch: int) -> int:
        return int(self.labels.numel())

    def epoch_indices(self, epoch: int, generator: torch.Generator) -> Tensor:
        raise NotImplementedError


@SAMPLERS.register("instance")
class InstanceSampler(Sampler):
    """Every training image once per epoch, in a random order (plain shuffling)."""

    def epoch_indices(self, epoch: int, generator: torch.Generator) -> Tensor:
        return torch.randperm(self.labels.numel(), generator=generator, device=self.labels.device)
