"""Feature Clusters Compression (FCC, Li et al., CVPR 2023): the method itself.

During training, each sample's final backbone feature maps are multiplied by a factor of its class,
tau_k = 1 + gamma - k * gamma / C, where k is the class's rank by training frequency (largest class
first, k = 0) and C the number of classes. The classifier thus learns on enlarged features; at test time
features pass unscaled, so the real (smaller) test features sit in denser clusters that cross the
decision boundaries less often.

The scaling is one gather and one multiply per batch; no Python loop and no host-device sync.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def scaling_factors(num_classes: int, gamma: float, decimals: int | None = None) -> Tensor:
    """tau_k = 1 + gamma - k * gamma / num_classes for ranks k = 0..num_classes-1 (float32).

    ``decimals=2`` rounds as the original code did; that only matters when gamma/C has more than two
    decimals (ImageNet-LT, iNat18), where it collapses the factors into a few levels.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    k = torch.arange(num_classes, dtype=torch.float64)
    tau = 1.0 + gamma - k * gamma / num_classes
    if decimals is not None:
        tau = torch.round(tau, decimals=decimals)
    return tau.float()


def class_ranks(class_counts: Sequence[int]) -> Tensor:
    """rank[c] = position of class c when ordered by count, largest first; ties keep index order."""
    counts = torch.as_tensor(list(class_counts), dtype=torch.long)
    order = torch.sort(-counts, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(order))
    return ranks


class FeatureClusterCompression(nn.Module):
    """Scales training features by their class's tau from ``start_epoch`` (1-based, inclusive) on.

    Identity in eval mode, when no labels are given, and before ``start_epoch``. The per-class factors
    are a non-persistent buffer: they derive from the config and the class counts, so checkpoints of
    networks with and without FCC stay interchangeable (needed for two-stage training).
    """

    def __init__(
        self,
        class_counts: Sequence[int],
        gamma: float,
        start_epoch: int = 1,
        rank_by: str = "frequency",
        decimals: int | None = None,
    ) -> None:
        super().__init__()
        num_classes = len(class_counts)
        tau = scaling_factors(num_classes, gamma, decimals)
        if rank_by == "frequency":
            ranks = class_ranks(class_counts)
        elif rank_by == "index":
            ranks = torch.arange(num_classes)
        else:
            raise ValueError(f"rank_by must be 'frequency' or 'index', got {rank_by!r}")
        self.gamma = gamma
        self.start_epoch = start_epoch
        self.register_buffer("class_factor", tau[ranks], persistent=False)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, start_epoch={self.start_epoch}"

    def is_active(self, epoch: int | None) -> bool:
        return self.training and epoch is not None and epoch >= self.start_epoch

    def factors(self, labels: Tensor) -> Tensor:
        """Per-sample factors (B,) for integer labels."""
        return self.class_factor[labels]

    def forward(self, features: Tensor, labels: Tensor | None, epoch: int | None,
                factors: Tensor | None = None) -> Tensor:
        """Scale ``features`` (B, ...) per sample; ``factors`` (B,) overrides the label lookup."""
        if not self.is_active(epoch):
            return features
        if factors is None:
            if labels is None:
                return features
            factors = self.class_factor[labels]
        shape = (-1,) + (1,) * (features.dim() - 1)
        return features * factors.to(features.dtype).view(shape)
