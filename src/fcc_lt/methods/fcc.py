"""Feature Clusters Compression (FCC, Li et al., CVPR 2023): the method itself.

During training, each sample's final backbone feature maps are multiplied by a factor of its class,
tau_k = 1 + gamma - k * gamma / C, where k is the class's rank by training frequency (largest class
first, k = 0) and C the number of classes (``fcc_lt.data.class_stats.fcc_factors``). The classifier thus
learns on enlarged features; at test time features pass unscaled. The paper's reading is that the real
(smaller) test features then sit in denser clusters that cross the decision boundaries less often; for a
linear head the same training is also cross-entropy with a label-dependent temperature (training logits
tau_y * W f + b). `fcc analyze` measures what a trained run supports (docs/analyses.md).

The scaling is one gather and one multiply per batch; no Python loop and no host-device sync. It acts
inside the training step (``fcc_lt.engine.step``), on the pooled features, in float32; the network itself
knows nothing of labels or epochs.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from fcc_lt.config.schedule import is_active
from fcc_lt.data.class_stats import class_ranks, fcc_factors, scaling_factors

__all__ = ["FeatureClusterCompression", "build_compression", "class_ranks", "compress", "fcc_factors",
           "scaling_factors"]


class FeatureClusterCompression(nn.Module):
    """The per-sample factors of a batch, from ``start_epoch`` (1-based, inclusive; see
    config.schedule.is_active) on.

    It is not part of the network: the training objective asks it for each sample's factor and scales
    the pooled features with :func:`compress`, so evaluation (which never calls it) sees the features
    unscaled. Scaling the pooled vector equals scaling the last feature maps before global average
    pooling, as the original does, because pooling is linear; every head here acts on pooled features.

    Before ``start_epoch`` the factors are ones (not "no factors"), so the step computes the same
    graph in every epoch: a compiled step is not recompiled when FCC switches on, and x * 1.0 is exact.
    The factor table is a non-persistent buffer: it derives from the config and the class counts.
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
        self.gamma = gamma
        self.start_epoch = start_epoch
        self.register_buffer("class_factor", fcc_factors(class_counts, gamma, rank_by, decimals), persistent=False)
        self.register_buffer("inactive_factor", torch.ones(num_classes), persistent=False)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, start_epoch={self.start_epoch}"

    def is_active(self, epoch: int) -> bool:
        return is_active(epoch, self.start_epoch)

    def table(self, epoch: int) -> Tensor:
        """(C,) float32 factors in effect during ``epoch``: tau by class, or ones before the start."""
        return self.class_factor if self.is_active(epoch) else self.inactive_factor

    def factors(self, labels: Tensor, epoch: int) -> Tensor:
        """(B,) float32 factors of integer ``labels`` in ``epoch``."""
        return self.table(epoch)[labels]

    def mixed_factors(self, labels_a: Tensor, labels_b: Tensor, weight_a: Tensor, epoch: int) -> Tensor:
        """w * tau(a) + (1 - w) * tau(b) per sample: the factor of a feature that mixes two samples."""
        table = self.table(epoch)
        w = weight_a.float()
        return w * table[labels_a] + (1 - w) * table[labels_b]


def compress(features: Tensor, factors: Tensor) -> Tensor:
    """``features`` (B, ...) times per-sample ``factors`` (B,), computed in float32.

    Under bf16/fp16 autocast the features arrive in half precision; multiplying there would round tau
    to 8 (or 11) bits, collapsing 1000 distinct factors into about 14. The product is float32; the head
    that follows casts it as autocast decides.
    """
    shape = (-1,) + (1,) * (features.dim() - 1)
    return features.float() * factors.float().view(shape)


def build_compression(cfg: Any, class_counts: Sequence[int]) -> FeatureClusterCompression | None:
    """FCC as configured (``fcc.*``) for a training set with these protocol counts; None when disabled."""
    f = cfg.fcc
    if not f.enabled:
        return None
    from fcc_lt.util.registry import HEADS

    if getattr(HEADS.get(cfg.model.head), "scale_invariant", False):
        warnings.warn(f"fcc.enabled with model.head {cfg.model.head!r}: the head normalises the features, so "
                      "FCC's per-class feature scaling cannot change the logits; FCC is a no-op here", stacklevel=2)
    return FeatureClusterCompression(class_counts, gamma=f.gamma, start_epoch=f.start_epoch, rank_by=f.rank_by,
                                     decimals=f.round_decimals)
