"""DiVE distillation: a KL term towards the teacher plus a base loss, each reduced on its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from fcc_lt.config.schedule import FirstEpoch
from fcc_lt.methods.losses.base import Loss, Positive, SampleWeight, UnitInterval, batch_mean
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import LOSSES


@LOSSES.register("dive")
class DiVE(Loss):
    """DiVE distillation (He et al. 2021): alpha T^2 KL(q_t || softmax(z_s / T)) + (1 - alpha) base.

    q_t = softmax(z_t / T), raised to ``power`` and renormalised when ``power_norm`` (which equals
    softmax(power z_t / T)); the KL term is averaged over the batch. ``base`` is any non-distilling
    loss of ``LOSSES`` built with ``base_params``; ``drw_start_epoch`` is passed to it.
    """

    needs_teacher = True

    def __init__(self, class_counts: Sequence[int], *, temperature: Positive = 3.0, alpha: UnitInterval = 0.5,
                 power_norm: bool = False, power: Positive = 0.5, base: str = "balanced_softmax",
                 base_params: dict[str, Any] | None = None, drw_start_epoch: FirstEpoch | None = None) -> None:
        super().__init__(class_counts, drw_start_epoch)
        self.temperature, self.alpha, self.power_norm, self.power = temperature, alpha, power_norm, power
        params = self._base_params(base, base_params, drw_start_epoch, "loss.params")
        self.base: Loss = LOSSES.build(base, params, "loss.params.base_params", list(class_counts))

    @staticmethod
    def _base_params(base: str, base_params: Mapping[str, Any] | None, drw_start_epoch: int | None,
                     where: str) -> dict[str, Any]:
        """The base loss's parameters, with DiVE's ``drw_start_epoch`` passed on."""
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
    def validate_params(cls, params: Mapping[str, Any], where: str) -> None:
        """The base loss and its parameters, checked with DiVE's, before any data is loaded."""
        merged = cls._base_params(params["base"], params["base_params"], params["drw_start_epoch"], where)
        LOSSES.check_params(params["base"], merged, f"{where}.base_params")

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.base.set_epoch(epoch)

    def reduce(self, z: Tensor, targets: Tensor, sample_weight: SampleWeight, *, features: Tensor | None,
               teacher_logits: Tensor | None) -> Tensor:
        if teacher_logits is None:
            raise ConfigError("loss.name: 'dive' distils from a teacher; set distill.teacher "
                              "(the loss was called without teacher logits)")
        if teacher_logits.shape != z.shape:
            raise ValueError(f"DiVE: teacher logits have shape {tuple(teacher_logits.shape)}, "
                             f"the student's {tuple(z.shape)}")
        t = self.temperature
        power = self.power if self.power_norm else 1.0
        log_q = F.log_softmax(teacher_logits.detach().float() * (power / t), dim=1)
        log_p = F.log_softmax(z / t, dim=1)
        kl = (log_q.exp() * (log_q - log_p)).sum(dim=1)
        distill = batch_mean(kl, sample_weight) * (t * t)
        base = self.base(z, targets, features=features, sample_weight=sample_weight)
        return self.alpha * distill + (1.0 - self.alpha) * base
