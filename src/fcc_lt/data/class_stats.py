"""The class statistics of a training set, with each kind of count named for what it means.

Two different counts exist and parts must not confuse them:

- ``train_counts``: the training set as the long-tail protocol defines it (CIFAR-LT's exponential
  subset, ImageNet-LT's train list, a JSON train file). The protocol's shot groups (many / medium /
  few), FCC's class ranks and every class-count loss (balanced softmax, LDAM margins, class-balanced
  weights, ...) and remix's count ratios are defined on these counts.
- ``sampled_counts``: what the training loader actually draws from. It differs when extra images are
  added (``data.extra_train_json``, e.g. CAM-generated images for a second stage): the samplers see
  those images, but they do not make a tail class a head class.

Checkpoints store both (``class_stats``), so a run's model, its eval and its report agree on the
counts without rebuilding the dataset.

FCC's factor of a class (``fcc_factors``) is a function of these counts alone, so it lives here: training
(``fcc_lt.methods.fcc``) and the analyses of a trained run (``fcc_lt.evaluation``) compute it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from fcc_lt.util.errors import CheckpointError


@dataclass(frozen=True)
class ClassStats:
    train_counts: tuple[int, ...]
    sampled_counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.train_counts) != len(self.sampled_counts) or not self.train_counts:
            raise ValueError(f"class statistics: {len(self.train_counts)} protocol counts but "
                             f"{len(self.sampled_counts)} sampled counts")

    @classmethod
    def of(cls, train_counts: Sequence[int], sampled_counts: Sequence[int] | None = None) -> ClassStats:
        """Statistics of a training set; without extra images both counts are the same."""
        train = tuple(int(n) for n in train_counts)
        return cls(train, train if sampled_counts is None else tuple(int(n) for n in sampled_counts))

    @property
    def num_classes(self) -> int:
        return len(self.train_counts)

    def to_dict(self) -> dict[str, list[int]]:
        return {"train_counts": list(self.train_counts), "sampled_counts": list(self.sampled_counts)}

    @classmethod
    def from_checkpoint(cls, state: Mapping[str, Any], source: str) -> ClassStats | None:
        """The statistics saved in a checkpoint (``class_stats``, or the older ``class_counts``); None if absent."""
        saved = state.get("class_stats")
        if saved is None:
            counts = state.get("class_counts")
            if counts is None:
                return None
            saved = {"train_counts": counts, "sampled_counts": counts}
        if not isinstance(saved, Mapping):
            raise CheckpointError(f"{source}: 'class_stats' is not a mapping")
        try:
            train, sampled = saved["train_counts"], saved["sampled_counts"]
            if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in [*train, *sampled]):
                raise TypeError("counts must be non-negative integers")
            return cls(tuple(train), tuple(sampled))
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{source}: unusable class statistics ({err})") from None


def class_ranks(class_counts: Sequence[int]) -> Tensor:
    """rank[c] = position of class c when ordered by count, largest first; ties keep index order."""
    counts = torch.as_tensor(list(class_counts), dtype=torch.long)
    order = torch.sort(-counts, stable=True).indices
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(len(order))
    return ranks


def scaling_factors(num_classes: int, gamma: float, decimals: int | None = None) -> Tensor:
    """FCC's tau_k = 1 + gamma - k * gamma / num_classes for ranks k = 0..num_classes-1 (float32).

    ``decimals`` reproduces the original code's factors exactly: it computed
    ``round(1 + gamma - k * (gamma / C), decimals)`` with Python floats, and that operation order and
    Python's correctly rounded ``round`` decide the ties: at C = 100, gamma 0.5, twenty factors differ
    by 0.01 from rounding the same formula in another order. Rounding collapses the factors into few
    levels when gamma / C has more decimals than kept (CIFAR-100's 100 classes share 51 levels at gamma
    0.5; 1,000 or 8,142 classes share 11 at gamma 0.1).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if decimals is not None:
        g = float(gamma)
        step = g / num_classes  # the original divided first: 1 + gamma - k * (gamma / C)
        return torch.tensor([round(1 + g - k * step, decimals) for k in range(num_classes)], dtype=torch.float32)
    k = torch.arange(num_classes, dtype=torch.float64)
    tau = 1.0 + gamma - k * gamma / num_classes
    return tau.float()


def fcc_factors(class_counts: Sequence[int], gamma: float, rank_by: str = "frequency",
                decimals: int | None = None) -> Tensor:
    """(C,) float32: FCC's factor of each class, tau at the class's rank (by training count, or by index)."""
    tau = scaling_factors(len(class_counts), gamma, decimals)
    if rank_by == "frequency":
        return tau[class_ranks(class_counts)]
    if rank_by == "index":
        return tau
    raise ValueError(f"rank_by must be 'frequency' or 'index', got {rank_by!r}")
