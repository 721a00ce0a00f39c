"""Dataset containers shared by every data source.

``ArrayDataset`` holds a whole (small) dataset as one uint8 tensor, which is what lets the DeviceLoader
keep it resident on the training device. ``DataSplits`` is what a dataset builder returns: the splits
plus the class statistics (``fcc_lt.data.class_stats.ClassStats``) every method receives explicitly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from fcc_lt.data.class_stats import ClassStats
from fcc_lt.util.errors import DataError


class LabelledDataset(Protocol):
    """Anything with integer labels: in-memory arrays or image files."""

    labels: Tensor

    def __len__(self) -> int: ...


@dataclass
class ArrayDataset:
    """A whole dataset in memory: uint8 images (N, 3, H, W) and int64 labels (N,)."""

    images: Tensor
    labels: Tensor
    source: str = ""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise DataError(f"{self.source}: expected uint8 images (N, 3, H, W), got "
                            f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DataError(f"{self.source}: {self.images.shape[0]} images but labels of shape "
                            f"{tuple(self.labels.shape)}")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return int(self.labels.numel())


def class_counts(labels: Tensor, num_classes: int) -> list[int]:
    return torch.bincount(labels.long(), minlength=num_classes).tolist()


@dataclass
class DataSplits:
    """Train/val/test splits of one dataset with its class statistics and normalisation."""

    name: str
    num_classes: int
    train: LabelledDataset
    test: LabelledDataset
    val: LabelledDataset | None = None
    class_names: list[str] = field(default_factory=list)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    # the protocol's training counts when ``train`` holds more than the protocol's images (extra images
    # appended after them, see fcc_lt.data.extra); None when train is exactly the protocol's training set
    protocol_counts: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.class_names:
            self.class_names = [str(c) for c in range(self.num_classes)]
        for split in ("train", "val", "test"):
            ds = getattr(self, split)
            if ds is not None and len(ds) and (int(ds.labels.min()) < 0 or int(ds.labels.max()) >= self.num_classes):
                raise DataError(f"{self.name} ({getattr(ds, 'source', '') or split}): labels must lie in "
                                f"[0, {self.num_classes - 1}], found [{int(ds.labels.min())}, {int(ds.labels.max())}]")
        counts = class_counts(self.train.labels, self.num_classes)
        empty = [c for c, n in enumerate(counts) if n == 0]
        if empty:
            shown = ", ".join(f"{c} ({self.class_names[c]})" for c in empty[:10])
            source = getattr(self.train, "source", "")
            raise DataError(f"{self.name}{f' ({source})' if source else ''}: {len(empty)} of "
                            f"{self.num_classes} classes have no training "
                            f"images: {shown}{' ...' if len(empty) > 10 else ''}")

    @property
    def stats(self) -> ClassStats:
        """The protocol's training counts and, apart, the counts of what the training loader samples."""
        sampled = class_counts(self.train.labels, self.num_classes)
        return ClassStats.of(self.protocol_counts if self.protocol_counts is not None else sampled, sampled)

    @property
    def protocol_size(self) -> int:
        """How many leading training items are the protocol's own (the rest are extra images)."""
        return sum(self.stats.train_counts)

    def split(self, name: str) -> LabelledDataset:
        ds = {"train": self.train, "val": self.val, "test": self.test}.get(name)
        if ds is None:
            hint = " (set data.val_per_class > 0 to hold one out)" if name == "val" else ""
            raise DataError(f"{self.name}: there is no {name!r} split{hint}")
        return ds
