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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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

    @property
    def has_extra(self) -> bool:
        """Whether the loader samples images beyond the protocol's training set."""
        return self.sampled_counts != self.train_counts

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
