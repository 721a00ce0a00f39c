"""Batch mixing (mixup family), chosen by name from ``MIXERS``.

A mixer turns a batch into a ``MixedBatch``: the (possibly mixed) images, the two label sets and the
per-sample weight ``weight_a`` of the first; the objective's loss is
``L(labels_a, weight_a) + L(labels_b, 1 - weight_a)``. Manifold mixup leaves the images alone and
carries a ``FeatureMix`` that the network applies at a hidden location.

Every random number (lambda, the pairing permutation, cutmix boxes, the bilateral mix's second batch)
comes from the generators the trainer passes in, which are seeded from (run seed, epoch, step), so a
resumed run mixes exactly as an uninterrupted one. ``generator`` is the micro-batch's own (keyed by its
global micro-batch index); ``share`` says where the micro-batch sits in the step's global batch and
carries a generator without rank or micro-batch, for what is drawn for the whole global batch (the
bilateral mix's second batch), of which each micro-batch then takes its positions. Nothing here
synchronises with the host: lambda stays a device tensor and per-sample rules are ``torch.where``
selections.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol

import torch
from torch import Tensor, nn

from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import MIXERS
from fcc_lt.util.typecheck import Range

Location = Literal["stage1", "stage2", "stage3", "stage4", "pool", "logits"]

# Marsaglia-Tsang accepts a candidate with probability >= 0.95 for shape >= 1; 16 candidates per draw
# leave a failure chance below 1e-20 without a data-dependent loop.
_GAMMA_CANDIDATES = 16


def log_gamma_sample(shape: float, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``n`` draws of log(X), X ~ Gamma(shape, 1), float64, from ``generator`` alone.

    torch's own Gamma/Beta samplers take no generator, so this is Marsaglia and Tsang's (2000) method,
    vectorised over a fixed number of candidates (the first accepted one is kept). Shapes below 1 use
    X = Y * U^(1/shape) with Y ~ Gamma(shape + 1), kept in log space so tiny shapes do not underflow.
    """
    if not shape > 0:
        raise ValueError(f"the Gamma shape must be > 0, got {shape}")
    boost = shape < 1
    a = shape + 1.0 if boost else shape
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    x = torch.randn(n, _GAMMA_CANDIDATES, generator=generator, device=device, dtype=torch.float64)
    u = torch.rand(n, _GAMMA_CANDIDATES, generator=generator, device=device, dtype=torch.float64)
    v = (1.0 + c * x) ** 3
    log_v = torch.log(v.clamp(min=1e-300))
    accept = (v > 0) & (torch.log(u) < 0.5 * x * x + d - d * v + d * log_v)
    first = accept.to(torch.uint8).argmax(dim=1, keepdim=True)  # the first accepted candidate
    log_x = math.log(d) + log_v.gather(1, first).squeeze(1)
    log_x = torch.where(accept.any(dim=1), log_x, torch.full_like(log_x, math.log(d)))
    if boost:
        w = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
        log_x = log_x + torch.log(w.clamp(min=1e-300)) / shape
    return log_x


def beta_sample(a: float, b: float, n: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """``n`` draws of Beta(a, b) in float64: X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b)."""
    return torch.sigmoid(log_gamma_sample(a, n, generator, device) - log_gamma_sample(b, n, generator, device))


@dataclass
class FeatureMix:
    """Mix hidden activations inside the network: h <- lam * h + (1 - lam) * h[perm] at ``location``.

    ``location`` is ``stageK`` (after backbone stage K, before FCC), ``pool`` (the pooled features,
    after FCC) or ``logits``.
    """

    location: str
    lam: Tensor
    perm: Tensor

    @property
    def stage(self) -> int | None:
        """The backbone stage (1-based) after which to mix, or None for pool/logits."""
        return int(self.location[5:]) if self.location.startswith("stage") else None

    def __call__(self, h: Tensor) -> Tensor:
        lam = self.lam.to(h.dtype)
        return h * lam + h[self.perm] * (1 - lam)


@dataclass
class MixedBatch:
    """``images`` with labels ``labels_a`` weighted ``weight_a`` (B,) and ``labels_b`` weighted 1-weight_a.

    An unmixed batch has ``labels_b is None``. ``feature_mix`` asks the network to mix hidden
    activations (manifold mixup); the images are then unmixed.
    """

    images: Tensor
    labels_a: Tensor
    labels_b: Tensor | None = None
    weight_a: Tensor | None = None
    feature_mix: FeatureMix | None = None
    # per-sample weight of labels_a's FCC factor, None means weight_a (see fcc_lt.engine.step)
    factor_weight_a: Tensor | None = None


@dataclass(frozen=True)
class BatchShare:
    """Where a micro-batch sits in its step's global batch of ``size`` samples: positions ``offset``,
    ``offset + stride``, ... (offset = rank + world * i for micro-batch i, stride = world * k), and a
    ``generator`` seeded for the step alone, the same on every rank and micro-batch."""

    offset: int
    stride: int
    size: int
    generator: torch.Generator


class BatchSource(Protocol):
    """A training loader that can produce extra batches (the bilateral mix's second stream)."""

    labels: Tensor
    rank: int
    world_size: int

    def draw(self, index: Tensor, generator: torch.Generator, offset: int | None = None,
             stride: int | None = None) -> tuple[Tensor, Tensor]: ...


class Mixer:
    """Base class; the identity mixer leaves the batch as it is.

    ``bind(model=..., loader=..., teacher=...)`` is called once by the trainer after the network, the
    training loader and the optional DiVE teacher exist, for mixers that need them (manifold mixup checks its
    location against the student's and the teacher's backbone; the bilateral mix draws its second batch from
    the loader).
    """

    def __init__(self, class_counts: Sequence[int]) -> None:
        self.class_counts = list(class_counts)

    def bind(self, *, model: nn.Module | None = None, loader: Any = None, teacher: nn.Module | None = None) -> None:
        return None

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator,
                 share: BatchShare | None = None) -> MixedBatch:
        return MixedBatch(images, labels)


# The parameters' ranges, checked by the registry with their types (MIXERS.check_params).
Alpha = Annotated[float, Range("a finite number > 0 (the Beta(alpha, alpha) parameter)", low=0, low_open=True)]
Kappa = Annotated[float, Range("a count ratio > 0", low=0, low_open=True)]
PixelShare = Annotated[float, Range("a pixel share in [0, 1]", low=0, high=1)]


def _draw_lambda(alpha: float, generator: torch.Generator, device: torch.device) -> Tensor:
    """One lambda ~ Beta(alpha, alpha) per batch, as a float32 device scalar."""
    return beta_sample(alpha, alpha, 1, generator, device)[0].float()


def _pair(labels: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randperm(labels.numel(), generator=generator, device=labels.device)


def _mix_images(images: Tensor, perm: Tensor, lam: Tensor) -> Tensor:
    lam = lam.to(images.dtype)
    return images * lam + images[perm] * (1 - lam)


class BetaMixer(Mixer):
    """A mixer with one lambda ~ Beta(alpha, alpha) per batch (every mixer but the identity)."""

    def __init__(self, class_counts: Sequence[int], *, alpha: Alpha = 1.0) -> None:
        super().__init__(class_counts)
        self.alpha = alpha

    def draw_pairing(self, labels: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """This batch's lambda (a device scalar) and the permutation that pairs sample i with perm[i]."""
        lam = _draw_lambda(self.alpha, generator, labels.device)
        return lam, _pair(labels, generator)


@MIXERS.register("none")
class NoMix(Mixer):
    """No mixing."""


@MIXERS.register("mixup")
class MixUp(BetaMixer):
    """Input mixup (Zhang et al. 2018): x = lam * x + (1 - lam) * x[perm], lam ~ Beta(alpha, alpha) per batch."""

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator,
                 share: BatchShare | None = None) -> MixedBatch:
        lam, perm = self.draw_pairing(labels, generator)
        weight = lam.expand(labels.numel())
        return MixedBatch(_mix_images(images, perm, lam), labels, labels[perm], weight)


@MIXERS.register("manifold_mixup")
class ManifoldMixup(BetaMixer):
    """Manifold mixup (Verma et al. 2019): mix hidden activations at ``location`` instead of the pixels.

    ``stage1``..``stage3`` (``stage4`` on four-stage backbones) mix after that backbone stage, before FCC;
    ``pool`` mixes the pooled (FCC-scaled) features, ``logits`` the head's output.
    """

    def __init__(self, class_counts: Sequence[int], *, alpha: Alpha = 1.0, location: Location = "pool") -> None:
        super().__init__(class_counts, alpha=alpha)
        self.location = location

    def bind(self, *, model: nn.Module | None = None, loader: Any = None, teacher: nn.Module | None = None) -> None:
        """Check the location against the student's backbone and, since the teacher mixes its own activations
        at the same place (engine.step), against the teacher's: both before the first step."""
        if not self.location.startswith("stage"):
            return
        for network, whose in ((model, "the backbone"), (teacher, "the teacher's backbone (distill.teacher)")):
            if network is None:
                continue
            stages = getattr(getattr(network, "backbone", None), "stages", None)
            if stages is None or not hasattr(network.backbone, "stem"):
                raise ConfigError(f"mix.params.location: {self.location!r} needs a backbone with `stem` and "
                                  f"`stages`; {whose} ({type(getattr(network, 'backbone', network)).__name__}) has "
                                  "none")
            if int(self.location[5:]) > len(stages):
                raise ConfigError(f"mix.params.location: {self.location!r}, but {whose} has {len(stages)} stages "
                                  f"(use stage1..stage{len(stages)}, pool or logits)")

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator,
                 share: BatchShare | None = None) -> MixedBatch:
        lam, perm = self.draw_pairing(labels, generator)
        weight = lam.expand(labels.numel())
        return MixedBatch(images, labels, labels[perm], weight, FeatureMix(self.location, lam, perm))


def remix_weights(lam: Tensor, counts_a: Tensor, counts_b: Tensor, kappa: float, tau: float) -> Tensor:
    """Remix's per-sample label weight of the first label (Chou et al. 2020).

    lam_i = 0 if lam < tau and n_a / n_b >= kappa (the minority b gets the whole label although it holds
    less than tau of the pixels); lam_i = 1 if 1 - lam < tau and n_a * kappa / n_b <= 1 (the mirror
    case); otherwise lam. The second rule wins when both apply (only possible for kappa <= 1).
    """
    lam = lam.to(torch.float64)
    n_a = counts_a.to(torch.float64)
    n_b = counts_b.to(torch.float64)
    weight = lam.expand(n_a.shape)
    weight = torch.where((lam < tau) & (n_a / n_b >= kappa), torch.zeros_like(weight), weight)
    weight = torch.where((1 - lam < tau) & (n_a * kappa / n_b <= 1), torch.ones_like(weight), weight)
    return weight.float()


@MIXERS.register("remix")
class Remix(BetaMixer):
    """Remix: mixup images, but labels favour the minority class; the weights are used per sample.

    ``reproduce_original`` gives the original code's remix exactly, bugs included, so that its published
    numbers (the FCC table's remix row) can be reproduced: its criterion returned a batch mean, so the
    per-sample weights collapsed to their batch mean (every sample's label a weighted mean(lam_i)), and
    its remix+FCC scaled every sample by label a's FCC factor whatever the weights
    (``factor_weight_a`` all ones). By default each sample keeps its own weight, which also weights the
    two labels' FCC factors.
    """

    def __init__(self, class_counts: Sequence[int], *, alpha: Alpha = 1.0, kappa: Kappa = 3.0,
                 tau: PixelShare = 0.5, reproduce_original: bool = False) -> None:
        super().__init__(class_counts, alpha=alpha)
        self.kappa, self.tau = kappa, tau
        self.reproduce_original = reproduce_original
        self._counts = torch.as_tensor(self.class_counts, dtype=torch.float64)

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator,
                 share: BatchShare | None = None) -> MixedBatch:
        if self._counts.device != labels.device:
            self._counts = self._counts.to(labels.device)
        lam, perm = self.draw_pairing(labels, generator)
        labels_b = labels[perm]
        weight = remix_weights(lam, self._counts[labels], self._counts[labels_b], self.kappa, self.tau)
        mixed = _mix_images(images, perm, lam)
        if not self.reproduce_original:
            return MixedBatch(mixed, labels, labels_b, weight)
        batch_mean = weight.mean().expand(labels.numel())
        return MixedBatch(mixed, labels, labels_b, batch_mean, factor_weight_a=torch.ones_like(weight))


def cutmix_box(lam: Tensor, height: int, width: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A box mask (H, W) of about (1 - lam) of the image at a uniform centre, and the kept share.

    The box is floor(H * r) x floor(W * r) with r = sqrt(1 - lam), clipped at the borders; the returned
    weight 1 - area / (H * W) is lambda corrected to the box actually pasted.
    """
    device = lam.device
    r = torch.sqrt(1 - lam.to(torch.float64))
    cut_h = torch.floor(height * r).long()
    cut_w = torch.floor(width * r).long()
    centre = torch.rand(2, generator=generator, device=device, dtype=torch.float64)
    cy = (centre[0] * height).long()
    cx = (centre[1] * width).long()
    y1 = (cy - cut_h // 2).clamp(0, height)
    y2 = (cy - cut_h // 2 + cut_h).clamp(0, height)
    x1 = (cx - cut_w // 2).clamp(0, width)
    x2 = (cx - cut_w // 2 + cut_w).clamp(0, width)
    rows = torch.arange(height, device=device)
    cols = torch.arange(width, device=device)
    mask = ((rows >= y1) & (rows < y2))[:, None] & ((cols >= x1) & (cols < x2))[None, :]
    kept = 1 - ((y2 - y1) * (x2 - x1)).to(torch.float64) / (height * width)
    return mask, kept.float()


@MIXERS.register("cutmix")
class CutMix(BetaMixer):
    """CutMix (Yun et al. 2019): paste a box of x[perm] covering about 1 - lam of the image, lam ~ Beta."""

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator,
                 share: BatchShare | None = None) -> MixedBatch:
        lam, perm = self.draw_pairing(labels, generator)
        mask, kept = cutmix_box(lam, images.shape[-2], images.shape[-1], generator)
        mixed = torch.where(mask, images[perm], images)
        return MixedBatch(mixed, labels, labels[perm], kept.expand(labels.numel()))


@MIXERS.register("bilateral")
class BilateralMix(BetaMixer):
    """BBN-style bilateral mix: each image of the batch (the instance stream) is mixed with an image drawn
    by the reverse sampler (p_c proportional to n_max / n_c), lam ~ Beta(alpha, alpha) per batch.

    The second batch comes from the training loader (``bind``), augmented and normalised as the loader's
    own batches. It is drawn for the whole global batch from the step's shared generator (``share``), the
    same on every rank, and each micro-batch keeps its positions of it, as of the main stream: the reverse
    batch of a step does not depend on the number of processes or micro-batches. Called without a share
    (one process, the whole batch) it draws from ``generator`` and keeps this rank's positions.
    """

    def __init__(self, class_counts: Sequence[int], *, alpha: Alpha = 1.0) -> None:
        super().__init__(class_counts, alpha=alpha)
        self.source: BatchSource | None = None

    def bind(self, *, model: nn.Module | None = None, loader: Any = None, teacher: nn.Module | None = None) -> None:
        if loader is None:
            return
        if not callable(getattr(loader, "draw", None)):
            raise ConfigError(f"mix.name: 'bilateral' draws its second batch from the training loader, and "
                              f"{type(loader).__name__} cannot draw extra batches")
        from fcc_lt.methods.samplers import ClassDraw, reverse_probs

        self.source = loader
        self._draw = ClassDraw(loader.labels, len(self.class_counts))
        self._probs = reverse_probs(self._draw.counts)

    def __call__(self, images: Tensor, labels: Tensor, generator: torch.Generator,
                 share: BatchShare | None = None) -> MixedBatch:
        if self.source is None:
            raise RuntimeError("the bilateral mixer needs bind(loader=...) before use")
        if share is None:
            world = self.source.world_size
            share = BatchShare(self.source.rank, world, labels.numel() * world, generator)
        index = self._draw.draw(self._probs, share.size, share.generator)
        images_b, labels_b = self.source.draw(index, share.generator, share.offset, share.stride)
        lam = _draw_lambda(self.alpha, generator, images.device)
        mixed = images * lam.to(images.dtype) + images_b.to(images.dtype) * (1 - lam.to(images.dtype))
        return MixedBatch(mixed, labels, labels_b, lam.expand(labels.numel()))
