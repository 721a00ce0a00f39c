"""The template every loss follows: ``Loss.forward`` checks shapes, casts the logits to float32, applies the
sample weights and reduces; a loss supplies its per-sample formula and, where it uses PyTorch's weighted
cross-entropy reduction, its class weights. Also the class counts, the epoch and the DRW switch, and the
parameter ranges the losses share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcc_lt.config.schedule import is_active
from fcc_lt.util.errors import require
from fcc_lt.util.typecheck import Range

SampleWeight = Tensor | float | None

NonNegative = Annotated[float, Range("a non-negative number", low=0)]
Positive = Annotated[float, Range("a positive number", low=0, low_open=True)]
UnitInterval = Annotated[float, Range("a number in [0, 1]", low=0, high=1)]
BetaParam = Annotated[float, Range("a number in [0, 1)", low=0, high=1, high_open=True)]


def class_balanced_weights(counts: Tensor, beta: float) -> Tensor:
    """Cui et al. (2019): w_c = (1 - beta) / (1 - beta^n_c), rescaled so that the weights sum to C.

    ``counts`` must be positive (float64 for accuracy: 1 - 0.9999^5000 loses digits in float32).
    """
    raw = (1.0 - beta) / (1.0 - torch.pow(torch.as_tensor(beta, dtype=counts.dtype), counts))
    return raw / raw.sum() * counts.numel()


def _checked_sample_weight(sample_weight: SampleWeight, batch: int) -> SampleWeight:
    """A scalar, or a tensor of shape () or (batch,) in float32 (the dtype every loss computes in)."""
    if not isinstance(sample_weight, Tensor):
        return sample_weight
    if sample_weight.dim() > 1 or (sample_weight.dim() == 1 and sample_weight.shape[0] != batch):
        raise ValueError(f"sample_weight must be a scalar or have shape ({batch},), got {tuple(sample_weight.shape)}")
    return sample_weight.to(torch.float32)


def _weighted(per_sample: Tensor, sample_weight: SampleWeight) -> Tensor:
    return per_sample if sample_weight is None else per_sample * sample_weight


def batch_mean(per_sample: Tensor, sample_weight: SampleWeight) -> Tensor:
    """sum_i s_i * l_i / B: the plain mean when no sample weights are given."""
    return _weighted(per_sample, sample_weight).sum() / per_sample.shape[0]


def class_weighted_mean(per_sample: Tensor, targets: Tensor, class_weight: Tensor,
                        sample_weight: SampleWeight) -> Tensor:
    """PyTorch's weighted cross-entropy reduction: sum_i s_i w_{y_i} l_i / sum_i w_{y_i}."""
    w = class_weight[targets]
    return _weighted(per_sample * w, sample_weight).sum() / w.sum()


def sigmoid_focal_terms(logits: Tensor, targets: Tensor, gamma: float) -> Tensor:
    """Per-sample sum over classes of BCE(z_c, y_c) * |y_c - sigmoid(z_c)|^gamma, in log space.

    With s = z (2y - 1): BCE = -log sigmoid(s) and |y - sigmoid(z)| = sigmoid(-s).
    """
    sign = F.one_hot(targets, logits.shape[1]).to(logits.dtype) * 2.0 - 1.0
    s = logits * sign
    terms = -F.logsigmoid(s)
    if gamma != 0.0:
        terms = terms * torch.exp(gamma * F.logsigmoid(-s))
    return terms.sum(dim=1)


def require_reweight_for_drw(params: Mapping[str, Any], where: str, loss: str) -> None:
    """Focal and LDAM defer only their optional class weights: a DRW epoch without them does nothing."""
    require(params["reweight"] or params["drw_start_epoch"] is None, f"{where}.drw_start_epoch",
            f"null unless loss.params.reweight is true ({loss} has no class weights to defer otherwise)",
            params["drw_start_epoch"])


class Loss(nn.Module):
    """Base class: the class counts, the current epoch, the deferred re-weighting switch, and the call.

    ``class_counts`` is kept as a float32 buffer (raw counts); ``_counts64`` holds the float64 counts
    used to derive weights, with absent classes raised to the smallest non-zero count. Subclasses define
    ``per_sample`` (and ``reduction_weight`` for the weighted-CE reduction); DiVE, whose loss is a sum of
    two reduced terms, overrides ``reduce``.
    """

    needs_teacher: ClassVar[bool] = False

    def __init__(self, class_counts: Sequence[int], drw_start_epoch: int | None = None) -> None:
        super().__init__()
        counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
        if counts.dim() != 1 or counts.numel() == 0 or bool((counts < 0).any()) or not bool((counts > 0).any()):
            raise ValueError("class_counts must be a non-empty list of non-negative counts with a positive total")
        self.num_classes = int(counts.numel())
        self.register_buffer("class_counts", counts.float(), persistent=False)
        self._counts64 = counts.clamp(min=float(counts[counts > 0].min()))
        self._total64 = float(counts.sum())
        self.epoch = 1
        self.drw_start_epoch = drw_start_epoch

    @property
    def reweighting(self) -> bool:
        """Whether the class weights/adjustments apply in the current epoch (always without DRW)."""
        return is_active(self.epoch, self.drw_start_epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def forward(self, logits: Tensor, targets: Tensor, *, features: Tensor | None = None,
                teacher_logits: Tensor | None = None, sample_weight: SampleWeight = None) -> Tensor:
        """The batch's loss: shapes checked (metadata only), logits in float32, each sample's term times its
        ``sample_weight``, reduced."""
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(f"{type(self).__name__}: expected logits of shape (batch, {self.num_classes}), "
                             f"got {tuple(logits.shape)}")
        if targets.shape != logits.shape[:1]:
            raise ValueError(f"{type(self).__name__}: expected targets of shape ({logits.shape[0]},), "
                             f"got {tuple(targets.shape)}")
        weight = _checked_sample_weight(sample_weight, logits.shape[0])
        return self.reduce(logits.float(), targets, weight, features=features, teacher_logits=teacher_logits)

    def reduce(self, z: Tensor, targets: Tensor, sample_weight: SampleWeight, *, features: Tensor | None,
               teacher_logits: Tensor | None) -> Tensor:
        """The batch mean of the per-sample terms, or PyTorch's weighted-CE reduction while
        ``reduction_weight`` gives class weights."""
        per_sample = self.per_sample(z, targets, features)
        class_weight = self.reduction_weight()
        if class_weight is None:
            return batch_mean(per_sample, sample_weight)
        return class_weighted_mean(per_sample, targets, class_weight, sample_weight)

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        """Each sample's term (B,), from float32 logits ``z``: the loss's formula."""
        raise NotImplementedError

    def reduction_weight(self) -> Tensor | None:
        """Class weights w for the reduction sum_i s_i w_{y_i} l_i / sum_i w_{y_i}; None: the batch mean."""
        return None
