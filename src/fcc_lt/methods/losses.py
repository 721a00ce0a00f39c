"""Every loss behind one signature, chosen by name from ``LOSSES``.

A loss is constructed from the training class counts (index = class id) plus its own keyword
parameters, and called as ``loss(logits, targets, *, features=None, teacher_logits=None,
sample_weight=None)`` returning a scalar. ``sample_weight`` (a scalar or one value per sample)
multiplies each sample's term before the loss's own reduction, whose normaliser does not change, so a
mixed batch is ``loss(z, y_a, sample_weight=lam) + loss(z, y_b, sample_weight=1 - lam)``.

Deferred re-weighting (DRW): every loss with class weights or class-dependent adjustments takes
``drw_start_epoch``. ``None`` applies them from the start; an integer S gives the loss's plain form
before epoch S and the weighted form from epoch S on (epochs count from 1). The trainer calls
``set_epoch(epoch)`` at the start of every epoch.

Numerics: every loss computes in float32 whatever the autocast dtype of the logits, works in log space
(log-sum-exp, log-sigmoid), and never reads a value back to the host, so a training step stays
asynchronous. Formulas that divide by, or take the log of, a class count treat a class absent from the
training set as if it had the smallest non-zero count (its samples never appear as training targets).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcc_lt.config.schedule import is_active
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import LOSSES

__all__ = [
    "LDAM",
    "LOSSES",
    "BalancedSoftmax",
    "ClassBalancedCrossEntropy",
    "ClassBalancedFocal",
    "ClassDependentTemperature",
    "CostSensitiveCrossEntropy",
    "CrossEntropy",
    "DiVE",
    "EffectiveClassMargin",
    "Focal",
    "InfluenceBalanced",
    "LabelAwareSmoothing",
    "LabelSmoothing",
    "LogitAdjusted",
    "Loss",
    "SoftmaxEqualization",
    "class_balanced_weights",
]

SampleWeight = Tensor | float | None


def _require(ok: bool, key: str, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"loss.params.{key}: expected {expected}, got {value!r}")


def class_balanced_weights(counts: Tensor, beta: float) -> Tensor:
    """Cui et al. (2019): w_c = (1 - beta) / (1 - beta^n_c), rescaled so that the weights sum to C.

    ``counts`` must be positive (float64 for accuracy: 1 - 0.9999^5000 loses digits in float32).
    """
    raw = (1.0 - beta) / (1.0 - torch.pow(torch.as_tensor(beta, dtype=counts.dtype), counts))
    return raw / raw.sum() * counts.numel()


def _apply_sample_weight(per_sample: Tensor, sample_weight: SampleWeight) -> Tensor:
    if sample_weight is None:
        return per_sample
    if isinstance(sample_weight, Tensor):
        if sample_weight.dim() > 1 or (sample_weight.dim() == 1 and sample_weight.shape[0] != per_sample.shape[0]):
            raise ValueError(f"sample_weight must be a scalar or have shape ({per_sample.shape[0]},), "
                             f"got {tuple(sample_weight.shape)}")
        sample_weight = sample_weight.to(per_sample.dtype)
    return per_sample * sample_weight


def _batch_mean(per_sample: Tensor, sample_weight: SampleWeight) -> Tensor:
    """sum_i s_i * l_i / B: the plain mean when no sample weights are given."""
    return _apply_sample_weight(per_sample, sample_weight).sum() / per_sample.shape[0]


def _class_weighted_mean(per_sample: Tensor, targets: Tensor, class_weight: Tensor | None,
                         sample_weight: SampleWeight) -> Tensor:
    """PyTorch's weighted cross-entropy reduction: sum_i s_i w_{y_i} l_i / sum_i w_{y_i}."""
    if class_weight is None:
        return _batch_mean(per_sample, sample_weight)
    w = class_weight[targets]
    return _apply_sample_weight(per_sample * w, sample_weight).sum() / w.sum()


def _sigmoid_focal_terms(logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """Per-sample sum over classes of BCE(z_c, y_c) * |y_c - sigmoid(z_c)|^gamma, in log space.

    With s = z (2y - 1): BCE = -log sigmoid(s) and |y - sigmoid(z)| = sigmoid(-s).
    """
    sign = F.one_hot(targets, logits.shape[1]).to(logits.dtype) * 2.0 - 1.0
    s = logits * sign
    terms = -F.logsigmoid(s)
    if gamma != 0.0:
        terms = terms * torch.exp(gamma * F.logsigmoid(-s))
    return terms.sum(dim=1)


class Loss(nn.Module):
    """Base class: the class counts, the current epoch and the deferred re-weighting switch.

    ``class_counts`` is kept as a float32 buffer (raw counts); ``_counts64`` holds the float64 counts
    used to derive weights, with absent classes raised to the smallest non-zero count.
    """

    needs_teacher: ClassVar[bool] = False

    def __init__(self, class_counts: Sequence[int]) -> None:
        super().__init__()
        counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
        if counts.dim() != 1 or counts.numel() == 0 or bool((counts < 0).any()) or not bool((counts > 0).any()):
            raise ValueError("class_counts must be a non-empty list of non-negative counts with a positive total")
        self.num_classes = int(counts.numel())
        self.register_buffer("class_counts", counts.float(), persistent=False)
        self._counts64 = counts.clamp(min=float(counts[counts > 0].min()))
        self._total64 = float(counts.sum())
        self.epoch = 1
        self.drw_start_epoch: int | None = None

    def _init_drw(self, drw_start_epoch: int | None) -> None:
        _require(drw_start_epoch is None or drw_start_epoch >= 1, "drw_start_epoch",
                 "null or the first re-weighted epoch (>= 1)", drw_start_epoch)
        self.drw_start_epoch = drw_start_epoch

    @property
    def reweighting(self) -> bool:
        """Whether the class weights/adjustments apply in the current epoch (always without DRW)."""
        return is_active(self.epoch, self.drw_start_epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    @classmethod
    def check_epochs(cls, params: Mapping[str, Any], epochs: int, where: str) -> None:
        """Config-time check (called by ``fcc_lt.config.validate``) that the DRW switch falls inside the run."""
        start = params.get("drw_start_epoch")
        if start is not None and not 1 <= start <= epochs:
            raise ConfigError(f"{where}.drw_start_epoch: expected null or the first re-weighted epoch, "
                              f"in [1, train.epochs={epochs}], got {start!r}")

    def _logits(self, logits: Tensor, targets: Tensor) -> Tensor:
        """The logits in float32, after checking shapes against the class count (metadata only)."""
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"{type(self).__name__}: expected logits of shape (batch, {self.num_classes}), "
                             f"got {tuple(logits.shape)}")
        if targets.shape != logits.shape[:1]:
            raise ValueError(f"{type(self).__name__}: expected targets of shape ({logits.shape[0]},), "
                             f"got {tuple(targets.shape)}")
        return logits.float()

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        raise NotImplementedError


@LOSSES.register("ce")
class CrossEntropy(Loss):
    """Plain softmax cross-entropy, averaged over the batch."""

    def __init__(self, class_counts: Sequence[int]) -> None:
        super().__init__(class_counts)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        z = self._logits(logits, targets)
        return _batch_mean(F.cross_entropy(z, targets, reduction="none"), sample_weight)


class _ClassWeightedCE(Loss):
    """Cross-entropy with per-class weights ``self.class_weight`` while re-weighting, plain CE before.

    The weighted form divides by sum_i w_{y_i} (as ``F.cross_entropy(weight=...)``), not by B.
    """

    def _set_class_weight(self, weight: Tensor) -> None:
        self.register_buffer("class_weight", weight.float(), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        z = self._logits(logits, targets)
        per_sample = F.cross_entropy(z, targets, reduction="none")
        weight = self.class_weight if self.reweighting else None
        return _class_weighted_mean(per_sample, targets, weight, sample_weight)


@LOSSES.register("cost_sensitive_ce")
class CostSensitiveCrossEntropy(_ClassWeightedCE):
    """Weighted CE with w_c = (n_min / n_c)^gamma: gamma 1 is inverse frequency, 0.5 its square root."""

    def __init__(self, class_counts: Sequence[int], *, gamma: float = 1.0, drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        _require(gamma >= 0, "gamma", "a non-negative number", gamma)
        self._init_drw(drw_start_epoch)
        self.gamma = gamma
        n = self._counts64
        self._set_class_weight((n.min() / n) ** gamma)


@LOSSES.register("class_balanced_ce")
class ClassBalancedCrossEntropy(_ClassWeightedCE):
    """Weighted CE with the effective-number weights of Cui et al. (2019), normalised to sum C."""

    def __init__(self, class_counts: Sequence[int], *, beta: float = 0.999, drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        _require(0 <= beta < 1, "beta", "a number in [0, 1)", beta)
        self._init_drw(drw_start_epoch)
        self.beta = beta
        self._set_class_weight(class_balanced_weights(self._counts64, beta))


@LOSSES.register("focal")
class Focal(Loss):
    """Sigmoid (one-vs-all) focal loss, summed over classes and divided by the batch size.

    With ``reweight`` each sample is weighted by n_min / n_y (from ``drw_start_epoch``, or from the
    start when it is null), as the original's focal loss under DRW; without it there are no weights.
    """

    def __init__(self, class_counts: Sequence[int], *, gamma: float = 2.0, reweight: bool = False,
                 drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        _require(gamma >= 0, "gamma", "a non-negative number", gamma)
        _require(reweight or drw_start_epoch is None, "drw_start_epoch",
                 "null unless loss.params.reweight is true (focal has no class weights to defer otherwise)",
                 drw_start_epoch)
        self._init_drw(drw_start_epoch)
        self.gamma = gamma
        self.reweight = reweight
        n = self._counts64
        self.register_buffer("class_weight", (n.min() / n).float(), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        z = self._logits(logits, targets)
        per_sample = _sigmoid_focal_terms(z, targets, self.gamma)
        if self.reweight and self.reweighting:
            per_sample = per_sample * self.class_weight[targets]
        return _batch_mean(per_sample, sample_weight)


@LOSSES.register("class_balanced_focal")
class ClassBalancedFocal(Loss):
    """Sigmoid focal loss with each sample weighted by the class-balanced weight of its class; / B."""

    def __init__(self, class_counts: Sequence[int], *, beta: float = 0.999, gamma: float = 0.5,
                 drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        _require(0 <= beta < 1, "beta", "a number in [0, 1)", beta)
        _require(gamma >= 0, "gamma", "a non-negative number", gamma)
        self._init_drw(drw_start_epoch)
        self.beta, self.gamma = beta, gamma
        self.register_buffer("class_weight", class_balanced_weights(self._counts64, beta).float(), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        z = self._logits(logits, targets)
        per_sample = _sigmoid_focal_terms(z, targets, self.gamma)
        if self.reweighting:
            per_sample = per_sample * self.class_weight[targets]
        return _batch_mean(per_sample, sample_weight)


def _smoothed_ce(logits: Tensor, targets: Tensor, epsilon: Tensor | float) -> Tensor:
    """Per-sample (1 - eps) * NLL + eps * mean_k(-log p_k): CE against (1 - eps) onehot + eps / C."""
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, targets[:, None]).squeeze(1)
    return (1.0 - epsilon) * nll - epsilon * logp.mean(dim=1)


@LOSSES.register("label_smoothing")
class LabelSmoothing(Loss):
    """Cross-entropy against the smoothed target (1 - epsilon) * onehot + epsilon / C."""

    def __init__(self, class_counts: Sequence[int], *, epsilon: float = 0.1) -> None:
        super().__init__(class_counts)
        _require(0 <= epsilon <= 1, "epsilon", "a number in [0, 1]", epsilon)
        self.epsilon = epsilon

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        z = self._logits(logits, targets)
        return _batch_mean(_smoothed_ce(z, targets, self.epsilon), sample_weight)


@LOSSES.register("label_aware_smoothing")
class LabelAwareSmoothing(Loss):
    """Label smoothing whose epsilon depends on the class size (Zhong et al. 2021, MiSLAS).

    With r = (n_y - n_min) / (n_max - n_min) (0 when all counts are equal): concave
    eps = tail + (head - tail) sin(r pi/2); linear tail + (head - tail) r; convex
    head + (head - tail) sin(3pi/2 + r pi/2). Before ``drw_start_epoch`` every class uses ``tail``,
    i.e. uniform label smoothing with the tail (smallest) epsilon.
    """

    def __init__(self, class_counts: Sequence[int], *, head: float = 0.4, tail: float = 0.1,
                 shape: Literal["concave", "linear", "convex"] = "concave",
                 drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        _require(0 <= head <= 1, "head", "a number in [0, 1]", head)
        _require(0 <= tail <= 1, "tail", "a number in [0, 1]", tail)
        _require(shape in ("concave", "linear", "convex"), "shape", "concave, linear or convex", shape)
        self._init_drw(drw_start_epoch)
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

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        z = self._logits(logits, targets)
        epsilon: Tensor | float = self.class_epsilon[targets] if self.reweighting else self.tail
        return _batch_mean(_smoothed_ce(z, targets, epsilon), sample_weight)


@LOSSES.register("ldam")
class LDAM(Loss):
    """Label-distribution-aware margin loss (Cao et al. 2019), meant for the cosine head.

    CE(scale * (z - m_y onehot)) with m_c proportional to n_c^(-1/4) and max_margin the largest.
    With ``reweight`` it is weighted by class-balanced weights (``beta``) from ``drw_start_epoch``
    (LDAM-DRW); without it, and before the switch, it is unweighted.
    """

    def __init__(self, class_counts: Sequence[int], *, max_margin: float = 0.5, scale: float = 30.0,
                 reweight: bool = False, beta: float = 0.9999, drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        _require(max_margin >= 0, "max_margin", "a non-negative number", max_margin)
        _require(scale > 0, "scale", "a positive number", scale)
        _require(0 <= beta < 1, "beta", "a number in [0, 1)", beta)
        _require(reweight or drw_start_epoch is None, "drw_start_epoch",
                 "null unless loss.params.reweight is true (LDAM has no class weights to defer otherwise)",
                 drw_start_epoch)
        self._init_drw(drw_start_epoch)
        self.max_margin, self.scale, self.reweight, self.beta = max_margin, scale, reweight, beta
        m = self._counts64 ** -0.25
        self.register_buffer("margins", (m * (max_margin / m.max())).float(), persistent=False)
        self.register_buffer("class_weight", class_balanced_weights(self._counts64, beta).float(), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        z = self._logits(logits, targets)
        onehot = F.one_hot(targets, self.num_classes).to(z.dtype)
        z = self.scale * (z - onehot * self.margins[targets][:, None])
        per_sample = F.cross_entropy(z, targets, reduction="none")
        weight = self.class_weight if self.reweight and self.reweighting else None
        return _class_weighted_mean(per_sample, targets, weight, sample_weight)


@LOSSES.register("seql")
class SoftmaxEqualization(Loss):
    """Softmax equalization loss (Tan et al. 2020), stabilised with log-sum-exp.

    -log(e^{z_y} / sum_k w_k e^{z_k}) with w_k = 1 - beta_k T_k (1 - y_k): T_k = 1 for tail classes
    (share n_k / N below ``tail_ratio``, the original's lambda) and beta_k ~ Bernoulli(gamma) drawn per
    sample and class, so a tail class is dropped from a non-target sample's denominator with
    probability gamma. The draws use torch's default generator, which the trainer seeds per step.
    Before ``drw_start_epoch`` it is plain cross-entropy.
    """

    def __init__(self, class_counts: Sequence[int], *, gamma: float = 0.9, tail_ratio: float = 0.005,
                 drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        _require(0 <= gamma <= 1, "gamma", "a probability in [0, 1]", gamma)
        _require(0 <= tail_ratio <= 1, "tail_ratio", "a class share in [0, 1]", tail_ratio)
        self._init_drw(drw_start_epoch)
        self.gamma, self.tail_ratio = gamma, tail_ratio
        self.register_buffer("tail", self._counts64 / self._total64 < tail_ratio, persistent=False)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        z = self._logits(logits, targets)
        if self.reweighting:
            drop = torch.rand(z.shape, device=z.device) < self.gamma
            drop = drop & self.tail[None, :]
            drop = drop & (F.one_hot(targets, self.num_classes) == 0)
            z_den = z.masked_fill(drop, float("-inf"))
            per_sample = torch.logsumexp(z_den, dim=1) - z.gather(1, targets[:, None]).squeeze(1)
        else:
            per_sample = F.cross_entropy(z, targets, reduction="none")
        return _batch_mean(per_sample, sample_weight)


class _AdjustedLogitsCE(Loss):
    """Cross-entropy on class-adjusted logits ``_adjust(z)`` while re-weighting, plain CE before."""

    def _adjust(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        z = self._logits(logits, targets)
        if self.reweighting:
            z = self._adjust(z)
        return _batch_mean(F.cross_entropy(z, targets, reduction="none"), sample_weight)


@LOSSES.register("cdt")
class ClassDependentTemperature(_AdjustedLogitsCE):
    """Class-dependent temperatures (Ye et al. 2020): CE(z_c / (n_max / n_c)^gamma); divisor 1 before DRW."""

    def __init__(self, class_counts: Sequence[int], *, gamma: float = 0.2, drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        _require(gamma >= 0, "gamma", "a non-negative number", gamma)
        self._init_drw(drw_start_epoch)
        self.gamma = gamma
        n = self._counts64
        self.register_buffer("temperature", ((n.max() / n) ** gamma).float(), persistent=False)

    def _adjust(self, z: Tensor) -> Tensor:
        return z / self.temperature


@LOSSES.register("balanced_softmax")
class BalancedSoftmax(_AdjustedLogitsCE):
    """Balanced softmax (Ren et al. 2020): CE(z + log n_c); log 1 (plain CE) before DRW."""

    def __init__(self, class_counts: Sequence[int], *, drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        self._init_drw(drw_start_epoch)
        self.register_buffer("log_counts", self._counts64.log().float(), persistent=False)

    def _adjust(self, z: Tensor) -> Tensor:
        return z + self.log_counts


@LOSSES.register("logit_adjusted")
class LogitAdjusted(_AdjustedLogitsCE):
    """Logit-adjusted CE (Menon et al. 2021): CE(z + tau log pi_c) with pi the training class prior."""

    def __init__(self, class_counts: Sequence[int], *, tau: float = 1.0, drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        self._init_drw(drw_start_epoch)
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

    def __init__(self, class_counts: Sequence[int], *, alpha: float = 1000.0,
                 drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        _require(alpha > 0, "alpha", "a positive number", alpha)
        self._init_drw(drw_start_epoch)
        self.alpha = alpha
        inv = 1.0 / self._counts64
        self.register_buffer("class_weight", (inv / inv.sum() * self.num_classes).float(), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        if features is None:
            raise ConfigError("loss.name: 'influence_balanced' needs the network's pooled features, "
                              "but the loss was called without them")
        z = self._logits(logits, targets)
        ce = F.cross_entropy(z, targets, reduction="none")
        if not self.reweighting:
            return _batch_mean(ce, sample_weight)
        onehot = F.one_hot(targets, self.num_classes).to(z.dtype)
        grad_norm = (z.softmax(dim=1) - onehot).abs().sum(dim=1)
        feat_norm = features.float().flatten(1).abs().sum(dim=1)
        influence = self.alpha / (grad_norm * feat_norm + 1e-3)
        return _batch_mean(ce * self.class_weight[targets] * influence, sample_weight)


@LOSSES.register("ecm")
class EffectiveClassMargin(Loss):
    """FCC's effective class-margin loss: one-vs-all sigmoid with per-class margins and weights.

    With n_c the class count and m_c = N - n_c: p_c = sigmoid(2 z_c + pos_c - neg_c), pos_c =
    ln((n^1/4 + m^1/4) / m^1/4), neg_c = ln((n^1/4 + m^1/4) / n^1/4); each class's BCE term is weighted
    by a_c ln((1 + a_c) / a_c), a_c = m_c / n_c; summed and divided by B. Before ``drw_start_epoch`` the
    margins are 0 and the weights 1.
    """

    def __init__(self, class_counts: Sequence[int], *, drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        if self.num_classes < 2:
            raise ConfigError("loss.name: 'ecm' needs at least two classes")
        self._init_drw(drw_start_epoch)
        n = self._counts64
        m = n.sum() - n
        q = n.pow(0.25) + m.pow(0.25)
        pos, neg = (q / m.pow(0.25)).log(), (q / n.pow(0.25)).log()
        a = m / n
        self.register_buffer("shift", (pos - neg).float(), persistent=False)
        self.register_buffer("class_weight", (a * torch.log1p(1.0 / a)).float(), persistent=False)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        z = self._logits(logits, targets)
        x = 2.0 * z
        if self.reweighting:
            x = x + self.shift
        sign = F.one_hot(targets, self.num_classes).to(z.dtype) * 2.0 - 1.0
        terms = -F.logsigmoid(x * sign)
        if self.reweighting:
            terms = terms * self.class_weight
        return _batch_mean(terms.sum(dim=1), sample_weight)


@LOSSES.register("dive")
class DiVE(Loss):
    """DiVE distillation (He et al. 2021): alpha T^2 KL(q_t || softmax(z_s / T)) + (1 - alpha) base.

    q_t = softmax(z_t / T), raised to ``power`` and renormalised when ``power_norm`` (which equals
    softmax(power z_t / T)); the KL term is averaged over the batch. ``base`` is any non-distilling
    loss of ``LOSSES`` built with ``base_params``; ``drw_start_epoch`` is passed to it.
    """

    needs_teacher = True

    def __init__(self, class_counts: Sequence[int], *, temperature: float = 3.0, alpha: float = 0.5,
                 power_norm: bool = False, power: float = 0.5, base: str = "balanced_softmax",
                 base_params: dict[str, Any] | None = None, drw_start_epoch: int | None = None) -> None:
        super().__init__(class_counts)
        _require(temperature > 0, "temperature", "a positive number", temperature)
        _require(0 <= alpha <= 1, "alpha", "a number in [0, 1]", alpha)
        _require(power > 0, "power", "a positive number", power)
        self.temperature, self.alpha, self.power_norm, self.power = temperature, alpha, power_norm, power
        self._init_drw(drw_start_epoch)
        params = self._base_params(base, base_params, drw_start_epoch, "loss.params")
        self.base: Loss = LOSSES.build(base, params, "loss.params.base_params", list(class_counts))

    @staticmethod
    def _base_params(base: str, base_params: Mapping[str, Any] | None, drw_start_epoch: int | None,
                     where: str) -> dict[str, Any]:
        ctor = LOSSES.get(base, f"{where}.base")
        if getattr(ctor, "needs_teacher", False):
            raise ConfigError(f"{where}.base: the base loss cannot itself distil; got {base!r}")
        params = dict(base_params or {})
        if "drw_start_epoch" in params:
            raise ConfigError(f"{where}.base_params.drw_start_epoch: set {where}.drw_start_epoch instead "
                              "(it is passed to the base loss and rescaled with the schedule)")
        if drw_start_epoch is not None:
            if "drw_start_epoch" not in {p.name for p in LOSSES.params(base)}:
                raise ConfigError(f"{where}.drw_start_epoch: the base loss {base!r} has no deferred re-weighting")
            params["drw_start_epoch"] = drw_start_epoch
        return params

    @classmethod
    def check_epochs(cls, params: Mapping[str, Any], epochs: int, where: str) -> None:
        """Also validates ``base``/``base_params`` at config time, before any data is loaded."""
        super().check_epochs(params, epochs, where)
        base = params.get("base", "balanced_softmax")
        merged = cls._base_params(base, params.get("base_params"), params.get("drw_start_epoch"), where)
        LOSSES.check_params(base, merged, f"{where}.base_params")

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.base.set_epoch(epoch)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        if teacher_logits is None:
            raise ConfigError("loss.name: 'dive' distils from a teacher; set distill.teacher "
                              "(the loss was called without teacher logits)")
        z = self._logits(logits, targets)
        if teacher_logits.shape != z.shape:
            raise ValueError(f"DiVE: teacher logits have shape {tuple(teacher_logits.shape)}, "
                             f"the student's {tuple(z.shape)}")
        t = self.temperature
        power = self.power if self.power_norm else 1.0
        log_q = F.log_softmax(teacher_logits.detach().float() * (power / t), dim=1)
        log_p = F.log_softmax(z / t, dim=1)
        kl = (log_q.exp() * (log_q - log_p)).sum(dim=1)
        distill = _batch_mean(kl, sample_weight) * (t * t)
        base = self.base(logits, targets, features=features, sample_weight=sample_weight)
        return self.alpha * distill + (1.0 - self.alpha) * base
