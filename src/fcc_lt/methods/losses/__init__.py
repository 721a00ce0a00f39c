"""Every loss behind one signature, chosen by name from ``LOSSES``.

A loss is constructed from the training class counts (index = class id) plus its own keyword
parameters, and called as ``loss(logits, targets, *, features=None, teacher_logits=None,
sample_weight=None)`` returning a scalar. ``sample_weight`` (a scalar or one value per sample)
multiplies each sample's term before the loss's own reduction, whose normaliser does not change, so a
mixed batch is ``loss(z, y_a, sample_weight=lam) + loss(z, y_b, sample_weight=1 - lam)``.

The base class (``base.Loss``) owns that call: the shape checks, the float32 cast, the sample weights and
the reduction; a loss is its per-sample formula (``per_sample``) and, for PyTorch's weighted-CE
reduction, its class weights (``reduction_weight``). The families: ``softmax.py`` (cross-entropy and its
re-weighted, smoothed, margin and logit-adjusted forms), ``sigmoid.py`` (one-vs-all losses: focal, ECM),
``distillation.py`` (DiVE, which adds two reduced terms).

Deferred re-weighting (DRW): every loss with class weights or class-dependent adjustments takes
``drw_start_epoch``. ``None`` applies them from the start; an integer S gives the loss's plain form
before epoch S and the weighted form from epoch S on (epochs count from 1). The trainer calls
``set_epoch(epoch)`` at the start of every epoch.

Numerics: every loss computes in float32 whatever the autocast dtype of the logits, works in log space
(log-sum-exp, log-sigmoid), and never reads a value back to the host, so a training step stays
asynchronous. Formulas that divide by, or take the log of, a class count treat a class absent from the
training set as if it had the smallest non-zero count (its samples never appear as training targets).

Parameters are checked by the registry (``LOSSES.check_params``: types and ``Range``s of the signature,
then a loss's ``validate_params``), the one validation path for config time and construction alike.
"""

from __future__ import annotations

from fcc_lt.methods.losses.base import Loss, class_balanced_weights
from fcc_lt.methods.losses.distillation import DiVE
from fcc_lt.methods.losses.sigmoid import ClassBalancedFocal, EffectiveClassMargin, Focal
from fcc_lt.methods.losses.softmax import (
    LDAM,
    BalancedSoftmax,
    ClassBalancedCrossEntropy,
    ClassDependentTemperature,
    CostSensitiveCrossEntropy,
    CrossEntropy,
    InfluenceBalanced,
    LabelAwareSmoothing,
    LabelSmoothing,
    LogitAdjusted,
    SoftmaxEqualization,
)
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
