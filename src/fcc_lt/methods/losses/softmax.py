"""Softmax losses: cross-entropy and its re-weighted, smoothed, margin, equalised and logit-adjusted forms."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from fcc_lt.config.schedule import FirstEpoch
from fcc_lt.methods.losses.base import (
    BetaParam,
    Loss,
    NonNegative,
    Positive,
    UnitInterval,
    class_balanced_weights,
    require_reweight_for_drw,
)
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import LOSSES
from fcc_lt.util.typecheck import Range


def _ce(z: Tensor, targets: Tensor) -> Tensor:
    return F.cross_entropy(z, targets, reduction="none")


@LOSSES.register("ce")
class CrossEntropy(Loss):
    """Plain softmax cross-entropy, averaged over the batch."""

    def __init__(self, class_counts: Sequence[int]) -> None:
        super().__init__(class_counts)

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        return _ce(z, targets)


class _ClassWeightedCE(Loss):
    """Cross-entropy with per-class weights ``self.class_weight`` while re-weighting, plain CE before.

    The weighted form divides by sum_i w_{y_i} (as ``F.cross_entropy(weight=...)``), not by B.
    """

    def _set_class_weight(self, weight: Tensor) -> None:
        self.register_buffer("class_weight", weight.float(), persistent=False)

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        return _ce(z, targets)

    def reduction_weight(self) -> Tensor | None:
        return self.class_weight if self.reweighting else None


@LOSSES.register("cost_sensitive_ce")
class CostSensitiveCrossEntropy(_ClassWeightedCE):
    """Weighted CE with w_c = (n_min / n_c)^gamma: gamma 1 is inverse frequency, 0.5 its square root."""

    def __init__(self, class_counts: Sequence[int], *, gamma: NonNegative = 1.0,
                 drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.gamma = gamma
        n = self._counts64
        self._set_class_weight((n.min() / n) ** gamma)


@LOSSES.register("class_balanced_ce")
class ClassBalancedCrossEntropy(_ClassWeightedCE):
    """Weighted CE with the effective-number weights of Cui et al. (2019), normalised to sum C."""

    def __init__(self, class_counts: Sequence[int], *, beta: BetaParam = 0.999,
                 drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.beta = beta
        self._set_class_weight(class_balanced_weights(self._counts64, beta))


def _smoothed_ce(logits: Tensor, targets: Tensor, epsilon: Tensor | float) -> Tensor:
    """Per-sample (1 - eps) * NLL + eps * mean_k(-log p_k): CE against (1 - eps) onehot + eps / C."""
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    return (1.0 - epsilon) * nll - epsilon * logp.mean(dim=1)


@LOSSES.register("label_smoothing")
class LabelSmoothing(Loss):
    """Cross-entropy against the smoothed target (1 - epsilon) * onehot + epsilon / C."""

    def __init__(self, class_counts: Sequence[int], *, epsilon: UnitInterval = 0.1) -> None:
        super().__init__(class_counts)
        self.epsilon = epsilon

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        return _smoothed_ce(z, targets, self.epsilon)


@LOSSES.register("label_aware_smoothing")
class LabelAwareSmoothing(Loss):
    """Label smoothing whose epsilon depends on the class size (Zhong et al. 2021, MiSLAS).

    With r = (n_y - n_min) / (n_max - n_min) (0 when all counts are equal): concave
    eps = tail + (head - tail) sin(r pi/2); linear tail + (head - tail) r; convex
    head + (head - tail) sin(3pi/2 + r pi/2). Before ``drw_start_epoch`` every class uses ``tail``,
    i.e. uniform label smoothing with the tail (smallest) epsilon.
    """

    def __init__(self, class_counts: Sequence[int], *, head: UnitInterval = 0.4, tail: UnitInterval = 0.1,
                 shape: Literal["concave", "linear", "convex"] = "concave",
                 drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.head, self.tail, self.shape = head, tail, shape
        n = self._counts64
        spread = n.max() - n.min()
        r = (n - n.min()) / spread if spread > 0 else torch.zeros_like(n)
        if shape == "concave":
            eps = tail + (head - tail) * torch.sin(r * math.pi / 2)
        elif shape == "linear":
            eps = tail + (head - tail) * r
        else:
            eps = head + (head - tail) * torch.sin(1.5 * math.pi + r * math.pi / 2)
        self.register_buffer("class_epsilon", eps.float(), persistent=False)

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        epsilon: Tensor | float = self.class_epsilon[targets] if self.reweighting else self.tail
        return _smoothed_ce(z, targets, epsilon)


@LOSSES.register("ldam")
class LDAM(Loss):
    """Label-distribution-aware margin loss (Cao et al. 2019), meant for the cosine head.

    CE(scale * (z - m_y onehot)) with m_c proportional to n_c^(-1/4) and max_margin the largest.
    With ``reweight`` it is weighted by class-balanced weights (``beta``) from ``drw_start_epoch``
    (LDAM-DRW); without it, and before the switch, it is unweighted.
    """

    def __init__(self, class_counts: Sequence[int], *, max_margin: NonNegative = 0.5, scale: Positive = 30.0,
                 reweight: bool = False, beta: BetaParam = 0.9999, drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.max_margin, self.scale, self.reweight, self.beta = max_margin, scale, reweight, beta
        m = self._counts64 ** -0.25
        self.register_buffer("margins", (m * (max_margin / m.max())).float(), persistent=False)
        self.register_buffer("class_weight", class_balanced_weights(self._counts64, beta).float(), persistent=False)

    @classmethod
    def validate_params(cls, params: Mapping[str, Any], where: str) -> None:
        require_reweight_for_drw(params, where, "LDAM")

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        onehot = F.one_hot(targets, self.num_classes).to(z.dtype)
        return _ce(self.scale * (z - onehot * self.margins[targets][:, None]), targets)

    def reduction_weight(self) -> Tensor | None:
        return self.class_weight if self.reweight and self.reweighting else None


@LOSSES.register("seql")
class SoftmaxEqualization(Loss):
    """Softmax equalization loss (Tan et al. 2020), stabilised with log-sum-exp.

    -log(e^{z_y} / sum_k w_k e^{z_k}) with w_k = 1 - beta_k T_k (1 - y_k): T_k = 1 for tail classes
    (share n_k / N below ``tail_ratio``, the original's lambda) and beta_k ~ Bernoulli(gamma) drawn per
    sample and class, so a tail class is dropped from a non-target sample's denominator with
    probability gamma. The draws use torch's default generator, which the trainer seeds per step.
    Before ``drw_start_epoch`` it is plain cross-entropy.
    """

    def __init__(self, class_counts: Sequence[int], *,
                 gamma: Annotated[float, Range("a probability in [0, 1]", low=0, high=1)] = 0.9,
                 tail_ratio: Annotated[float, Range("a class share in [0, 1]", low=0, high=1)] = 0.005,
                 drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.gamma, self.tail_ratio = gamma, tail_ratio
        self.register_buffer("tail", self._counts64 / self._total64 < tail_ratio, persistent=False)

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        if not self.reweighting:
            return _ce(z, targets)
        drop = torch.rand(z.shape, device=z.device) < self.gamma
        drop = drop & self.tail[None, :]
        drop = drop & (F.one_hot(targets, self.num_classes) == 0)
        z_den = z.masked_fill(drop, float("-inf"))
        return torch.logsumexp(z_den, dim=1) - z.gather(1, targets[:, None]).squeeze(1)


class _AdjustedLogitsCE(Loss):
    """Cross-entropy on class-adjusted logits ``_adjust(z)`` while re-weighting, plain CE before."""

    def _adjust(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        return _ce(self._adjust(z) if self.reweighting else z, targets)


@LOSSES.register("cdt")
class ClassDependentTemperature(_AdjustedLogitsCE):
    """Class-dependent temperatures (Ye et al. 2020): CE(z_c / (n_max / n_c)^gamma); divisor 1 before DRW."""

    def __init__(self, class_counts: Sequence[int], *, gamma: NonNegative = 0.2,
                 drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.gamma = gamma
        n = self._counts64
        self.register_buffer("temperature", ((n.max() / n) ** gamma).float(), persistent=False)

    def _adjust(self, z: Tensor) -> Tensor:
        return z / self.temperature


@LOSSES.register("balanced_softmax")
class BalancedSoftmax(_AdjustedLogitsCE):
    """Balanced softmax (Ren et al. 2020): CE(z + log n_c); log 1 (plain CE) before DRW."""

    def __init__(self, class_counts: Sequence[int], *, drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.register_buffer("log_counts", self._counts64.log().float(), persistent=False)

    def _adjust(self, z: Tensor) -> Tensor:
        return z + self.log_counts


@LOSSES.register("logit_adjusted")
class LogitAdjusted(_AdjustedLogitsCE):
    """Logit-adjusted CE (Menon et al. 2021): CE(z + tau log pi_c) with pi the training class prior."""

    def __init__(self, class_counts: Sequence[int], *, tau: float = 1.0,
                 drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.tau = tau
        prior = self._counts64 / self._counts64.sum()
        self.register_buffer("adjustment", (tau * prior.log()).float(), persistent=False)

    def _adjust(self, z: Tensor) -> Tensor:
        return z + self.adjustment


@LOSSES.register("influence_balanced")
class InfluenceBalanced(Loss):
    """Influence-balanced loss (Park et al. 2021); needs the pooled features.

    mean_i(CE_i * w_{y_i} * alpha / (||softmax_i - onehot_i||_1 * ||f_i||_1 + 1e-3)) with w proportional
    to 1/n_c and summing to C. Gradients flow through the influence factor, as in the original. Before
    ``drw_start_epoch`` (the original's configs use it) it is plain cross-entropy.
    """

    def __init__(self, class_counts: Sequence[int], *, alpha: Positive = 1000.0,
                 drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.alpha = alpha
        inv = 1.0 / self._counts64
        self.register_buffer("class_weight", (inv / inv.sum() * self.num_classes).float(), persistent=False)

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        if features is None:
            raise ConfigError("loss.name: 'influence_balanced' needs the network's pooled features, "
                              "but the loss was called without them")
        ce = _ce(z, targets)
        if not self.reweighting:
            return ce
        onehot = F.one_hot(targets, self.num_classes).to(z.dtype)
        grad_norm = (z.softmax(dim=1) - onehot).abs().sum(dim=1)
        feat_norm = features.float().flatten(1).abs().sum(dim=1)
        influence = self.alpha / (grad_norm * feat_norm + 1e-3)
        return ce * self.class_weight[targets] * influence
