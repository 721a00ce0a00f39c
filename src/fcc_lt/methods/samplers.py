"""Class-aware index samplers: each draws one epoch's global order of training indices on the device.

Every rank draws the same global order from the run's seed and the epoch (see fcc_lt.util.rng) and the loader
hands each rank its own share, so samplers need no distributed logic of their own.

Re-samplers draw ``num_samples`` indices with replacement: first a class from a per-class distribution
p (inverse CDF of one uniform draw per sample), then a uniform instance of that class (an offset into
the indices sorted by class). That is two random tensors and a few gathers per epoch, whatever the
number of classes. Deferred re-sampling (DRS): with ``drs_start_epoch=S`` a re-sampler shuffles every
image once per epoch (instance sampling) before epoch S and re-samples from epoch S on.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fcc_lt.config.schedule import FirstEpoch, is_active
from fcc_lt.util.registry import SAMPLERS


class Sampler:
    """Base class: subclasses implement ``epoch_indices``; ``num_samples`` is the epoch length.

    ``epochs`` (the run's length, ``train.epochs``) is supplied by the framework for samplers whose
    distribution changes over the run.
    """

    def __init__(self, labels: Tensor, num_classes: int, epochs: int | None = None) -> None:
        self.labels = labels
        self.num_classes = num_classes
        self.epochs = epochs
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


class ClassDraw:
    """Draws instances by class: a class from a distribution p, then a uniform instance of it.

    Set up once in O(N log N) (indices sorted by class); every draw is vectorised over the samples.
    Also used by the bilateral mixer for its reverse-sampled second batch.
    """

    def __init__(self, labels: Tensor, num_classes: int) -> None:
        self.counts = torch.bincount(labels, minlength=num_classes)
        self.by_class = torch.sort(labels, stable=True).indices
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.present = self.counts > 0

    def draw(self, probs: Tensor, n: int, generator: torch.Generator) -> Tensor:
        """``n`` training indices; ``probs`` (C,) float64 on the labels' device, zero for empty classes."""
        device = self.by_class.device
        cdf = torch.cumsum(probs.to(device=device, dtype=torch.float64), 0)
        cdf = cdf / cdf[-1]
        u = torch.rand(2, n, generator=generator, device=device, dtype=torch.float64)
        # cdf[c-1] <= u < cdf[c] picks class c; classes with p=0 have an empty interval.
        classes = torch.searchsorted(cdf, u[0], right=True).clamp_(max=len(cdf) - 1)
        counts = self.counts[classes]
        within = (u[1] * counts).long().clamp_(max=counts - 1)
        return self.by_class[self.offsets[classes] + within]


class ReSampler(Sampler):
    """A sampler with replacement over a per-class distribution, with optional deferral (DRS).

    Subclasses define ``class_probs(epoch)``: unnormalised float64 weights (C,), zero for classes with no
    training image.
    """

    def __init__(self, labels: Tensor, num_classes: int, epochs: int | None = None, *,
                 drs_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(labels, num_classes, epochs)
        self.drs_start_epoch = drs_start_epoch
        self.draw = ClassDraw(labels, num_classes)
        self.counts64 = self.draw.counts.double()
        self.present = self.draw.present

    def resampling(self, epoch: int) -> bool:
        """Whether ``epoch`` (1-based) is re-sampled (False: instance sampling before the DRS switch)."""
        return is_active(epoch, self.drs_start_epoch)

    def class_probs(self, epoch: int) -> Tensor:
        raise NotImplementedError

    def epoch_indices(self, epoch: int, generator: torch.Generator) -> Tensor:
        if not self.resampling(epoch):
            return torch.randperm(self.labels.numel(), generator=generator, device=self.labels.device)
        return self.draw.draw(self.class_probs(epoch), self.num_samples(epoch), generator)


@SAMPLERS.register("class_balanced")
class ClassBalancedSampler(ReSampler):
    """Uniform over classes, then uniform over the class's images (p_c = 1/C)."""

    def class_probs(self, epoch: int) -> Tensor:
        return self.present.double()


@SAMPLERS.register("square_root")
class SquareRootSampler(ReSampler):
    """p_c proportional to sqrt(n_c): between instance (n_c) and class-balanced (1) sampling."""

    def class_probs(self, epoch: int) -> Tensor:
        return self.counts64.sqrt()


@SAMPLERS.register("progressive")
class ProgressiveSampler(ReSampler):
    """p_c = t / C + (1 - t) * n_c / N with t = e / E: from instance towards class-balanced over the run.

    e is the epoch (1-based) and E the run's length, so the last epoch is fully class-balanced. Under DRS
    e stays the run's epoch, as in the original: switching at epoch S starts at t = S / E, not at 0.
    C counts the classes that have training images.
    """

    def __init__(self, labels: Tensor, num_classes: int, epochs: int | None = None, *,
                 drs_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(labels, num_classes, epochs, drs_start_epoch=drs_start_epoch)
        if epochs is None or epochs < 1:
            raise ValueError("the progressive sampler needs the run's number of epochs (train.epochs)")

    def progress(self, epoch: int) -> float:
        return min(max(epoch / self.epochs, 0.0), 1.0)

    def class_probs(self, epoch: int) -> Tensor:
        t = self.progress(epoch)
        present = self.present.double()
        return t * present / present.sum() + (1.0 - t) * self.counts64 / self.counts64.sum()


@SAMPLERS.register("reverse")
class ReverseSampler(ReSampler):
    """p_c proportional to n_max / n_c (BBN's reversed sampler): the rarer the class, the more often."""

    def class_probs(self, epoch: int) -> Tensor:
        return reverse_probs(self.counts64)


def reverse_probs(counts: Tensor) -> Tensor:
    """n_max / n_c for classes with images, 0 for empty classes (float64)."""
    counts = counts.double()
    return torch.where(counts > 0, counts.max() / counts.clamp(min=1), torch.zeros_like(counts))
