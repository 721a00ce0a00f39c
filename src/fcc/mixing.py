"""Batch mixing (mixup family), chosen by name from ``MIXERS``.

A mixer turns a batch into a ``MixedBatch``: the (possibly mixed) images plus the two label sets and
the per-sample weight of the first. The trainer's objective turns that into a loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fcc.registry import MIXERS


@dataclass
class MixedBatch:
    """``images`` with labels ``labels_a`` weighted ``weight_a`` (B,) and ``labels_b`` weighted 1-weight_a.

    An unmixed batch has ``labels_b is None``.
    """

    images: Tensor
    labels_a: Tensor
    labels_b: Tensor | None = None
    weight_a: Tensor | None = None


class Mixer:
    """Base class; the identity mixer leaves the batch as it is."""

    def __init__(self, class_counts: list[int]) -> None:
        self.class_counts = class_counts

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator) -> MixedBatch:
        return MixedBatch(images, labels)


@MIXERS.register("none")
class NoMix(Mixer):
    """No mixing."""

    def __init__(self, class_counts: list[int]) -> None:
        super().__init__(class_counts)
