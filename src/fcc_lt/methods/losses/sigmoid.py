"""One-vs-all (sigmoid) losses: focal, class-balanced focal, FCC's effective class margin."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fcc_lt.config.schedule import FirstEpoch
from fcc_lt.methods.losses.base import (
    BetaParam,
    Loss,
    NonNegative,
    class_balanced_weights,
    require_reweight_for_drw,
    sigmoid_focal_terms,
)
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import LOSSES


@LOSSES.register("focal")
class Focal(Loss):
    """Sigmoid (one-vs-all) focal loss, summed over classes and divided by the batch size.

    With ``reweight`` each sample is weighted by n_min / n_y (from ``drw_start_epoch``, or from the
    start when it is null), as the original's focal loss under DRW; without it there are no weights.
    """

    def __init__(self, class_counts: Sequence[int], *, gamma: NonNegative = 2.0, reweight: bool = False,
                 drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.gamma = gamma
        self.reweight = reweight
        n = self._counts64
        self.register_buffer("class_weight", (n.min() / n).float(), persistent=False)

    @classmethod
    def validate_params(cls, params: Mapping[str, Any], where: str) -> None:
        require_reweight_for_drw(params, where, "focal")

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        per_sample = sigmoid_focal_terms(z, targets, self.gamma)
        if self.reweight and self.reweighting:
            per_sample = per_sample * self.class_weight[targets]
        return per_sample


@LOSSES.register("class_balanced_focal")
class ClassBalancedFocal(Loss):
    """Sigmoid focal loss with each sample weighted by the class-balanced weight of its class; / B."""

    def __init__(self, class_counts: Sequence[int], *, beta: BetaParam = 0.999, gamma: NonNegative = 0.5,
                 drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.beta, self.gamma = beta, gamma
        self.register_buffer("class_weight", class_balanced_weights(self._counts64, beta).float(), persistent=False)

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        per_sample = sigmoid_focal_terms(z, targets, self.gamma)
        if self.reweighting:
            per_sample = per_sample * self.class_weight[targets]
        return per_sample


@LOSSES.register("ecm")
class EffectiveClassMargin(Loss):
    """FCC's effective class-margin loss: one-vs-all sigmoid with per-class margins and weights.

    With n_c the class count and m_c = N - n_c: p_c = sigmoid(2 z_c + pos_c - neg_c), pos_c =
    ln((n^1/4 + m^1/4) / m^1/4), neg_c = ln((n^1/4 + m^1/4) / n^1/4); each class's BCE term is weighted
    by a_c ln((1 + a_c) / a_c), a_c = m_c / n_c; summed and divided by B. Before ``drw_start_epoch`` the
    margins are 0 and the weights 1.
    """

    def __init__(self, class_counts: Sequence[int], *, drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        if self.num_classes < 2:
            raise ConfigError("loss.name: 'ecm' needs at least two classes")
        n = self._counts64
        m = n.sum() - n
        q = n.pow(0.25) + m.pow(0.25)
        pos, neg = (q / m.pow(0.25)).log(), (q / n.pow(0.25)).log()
        a = m / n
        self.register_buffer("shift", (pos - neg).float(), persistent=False)
        self.register_buffer("class_weight", (a * torch.log1p(1.0 / a)).float(), persistent=False)

    def per_sample(self, z: Tensor, targets: Tensor, features: Tensor | None) -> Tensor:
        x = 2.0 * z
        if self.reweighting:
            x = x + self.shift
        sign = F.one_hot(targets, self.num_classes).to(z.dtype) * 2.0 - 1.0
        terms = -F.logsigmoid(x * sign)
        if self.reweighting:
            terms = terms * self.class_weight
        return terms.sum(dim=1)
