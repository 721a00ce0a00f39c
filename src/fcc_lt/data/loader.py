"""Loaders yielding (images, labels) batches already on the training device.

``DeviceLoader`` keeps a whole small dataset (CIFAR) resident on the device as uint8, draws one index
tensor per epoch, and augments and normalises whole batches there: no worker processes, no per-sample
Python and no host-device synchronisation in a step.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import Tensor

from fcc_lt.data.augment import Normalize
from fcc_lt.data.datasets import ArrayDataset
from fcc_lt.util.rng import StreamGenerators

Batch = tuple[Tensor, Tensor]


class Sampler(Protocol):
    """Where a training loader's order comes from: one epoch's global order of training indices, drawn
    the same on every rank (the samplers of fcc_lt.methods.samplers)."""

    def num_samples(self, epoch: int) -> int: ...

    def epoch_indices(self, epoch: int, generator: torch.Generator) -> Tensor: ...


class TrainLoader(Protocol):
    """What the trainer iterates: the batches of one rank for one epoch, from any step on."""

    def steps_per_epoch(self, epoch: int) -> int: ...

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]: ...


class EvalLoader(Protocol):
    """Un-augmented batches of this rank's share of a split, in a fixed order."""

    def __iter__(self) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...


def per_rank(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise ValueError(f"the global batch size {global_batch} is not divisible by the "
                         f"{world_size} processes")
    return global_batch // world_size


class GlobalBatchLoader:
    """What every training loader shares: one epoch's order cut into global batches, shared by rank.

    ``batch_size`` is the global batch (all ranks together). Each step takes the next ``batch_size``
    indices of the sampler's order for the epoch (stream "sampler" of the run seed), and rank r keeps the
    positions ``r::world_size``; batched augmentation parameters are drawn for the whole global batch
    (stream "augment", keyed by epoch and step) and sliced the same way. Hence the batches depend neither
    on the number of processes nor on where a resumed run starts.
    """

    def __init__(self, batch_size: int, device: torch.device, *, sampler: Sampler, normalize: Normalize,
                 augment: Any = None, seed: int = 0, drop_last: bool = True, rank: int = 0, world_size: int = 1,
                 channels_last: bool = False) -> None:
        per_rank(batch_size, world_size)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.sampler = sampler
        self.augment = augment.to(self.device) if hasattr(augment, "to") else augment
        self.normalize = normalize.to(self.device)
        self.generators = StreamGenerators(seed)
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def steps_per_epoch(self, epoch: int) -> int:
        """Full global batches, plus the last partial one unless ``drop_last`` or it would leave a rank
        without samples (fewer than ``world_size`` left)."""
        full, rest = divmod(self.sampler.num_samples(epoch), self.batch_size)
        return full + (1 if not self.drop_last and rest >= self.world_size else 0)

    def epoch_order(self, epoch: int) -> Tensor:
        """The epoch's global order, drawn on a CPU generator and then moved to the device.

        Every rank must draw the very same order; CPU generators give the same numbers on every machine,
        whereas GPU models may lay out their generators' output differently (ranks on a mixed cluster
        would then train on overlapping samples). One permutation per epoch costs nothing on the CPU.
        """
        order = self.sampler.epoch_indices(epoch, self.generators.get("sampler", "cpu", epoch))
        return order.to(self.device, non_blocking=True)

    def augment_params(self, n_global: int, generator: torch.Generator) -> Any:
        """This rank's share of augmentation parameters drawn for a global batch of ``n_global``."""
        return self.augment.draw(n_global, generator, self.device)[self.rank::self.world_size]

    def finish(self, images: Tensor) -> Tensor:
        return self.normalize(images).contiguous(memory_format=self.memory_format)


class DeviceLoader(GlobalBatchLoader):
    """Training batches from a device-resident uint8 dataset (see GlobalBatchLoader for the batching)."""

    def __init__(self, dataset: ArrayDataset, batch_size: int, device: torch.device, **kwargs: Any) -> None:
        super().__init__(batch_size, device, **kwargs)
        self.images = dataset.images.to(self.device, non_blocking=True)
        self.labels = dataset.labels.to(self.device, non_blocking=True)

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        order = self.epoch_order(epoch)
        for step in range(start_step, self.steps_per_epoch(epoch)):
            index = order[step * self.batch_size:(step + 1) * self.batch_size]
            gen = self.generators.get("augment", self.device, epoch, step) if self.augment is not None else None
            yield self._batch(index, gen)

    def draw(self, index: Tensor, generator: torch.Generator, offset: int | None = None,
             stride: int | None = None) -> Batch:
        """Positions ``offset::stride`` (by default this rank's, rank::world_size) of the images at global
        ``index``, augmented with ``generator``'s draws for the whole of ``index``.

        An extra batch source for mixers that pair the batch with a second stream (bilateral mix).
        """
        return self._batch(index, generator if self.augment is not None else None, offset, stride)

    def _batch(self, index: Tensor, augment_generator: torch.Generator | None, offset: int | None = None,
               stride: int | None = None) -> Batch:
        """Positions offset::stride (rank::world_size) of a global batch; augmentation is drawn for the whole
        batch."""
        offset = self.rank if offset is None else offset
        stride = self.world_size if stride is None else stride
        local = index[offset::stride]
        images = self.images[local]
        if self.augment is not None and augment_generator is not None:
            params = self.augment.draw(index.numel(), augment_generator, self.device)[offset::stride]
            images = self.augment(images, params)
        return self.finish(images), self.labels[local]


class DeviceEvalLoader:
    """Sequential un-augmented batches of a device-resident dataset; rank r takes r::world_size."""

    def __init__(self, dataset: ArrayDataset, batch_size: int, device: torch.device, *,
                 normalize: Normalize, rank: int = 0, world_size: int = 1,
                 channels_last: bool = False) -> None:
        index = torch.arange(len(dataset))[rank::world_size]
        self.images = dataset.images[index].to(device)
        self.labels = dataset.labels[index].to(device)
        self.batch_size = batch_size
        self.normalize = normalize.to(torch.device(device))
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __len__(self) -> int:
        return -(-self.labels.numel() // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, self.labels.numel(), self.batch_size):
            x = self.normalize(self.images[start:start + self.batch_size])
            yield x.contiguous(memory_format=self.memory_format), self.labels[start:start + self.batch_size]
