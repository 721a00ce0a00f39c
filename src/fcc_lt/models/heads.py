"""Classifier heads: pooled features (B, D) -> logits (B, C); and tau-normalisation of a linear head.

Heads that hold a linear layer keep it under the name ``fc``, so a stage-1 ``linear`` head's weights
(``head.fc.weight``, ``head.fc.bias``) load into a stage-2 ``lws`` head unchanged; only the LWS
scales are new (``model.init_exclude: [head.scales]``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import HEADS


@HEADS.register("linear")
class LinearHead(nn.Module):
    """A plain fully connected layer with PyTorch's default init, as the original FC classifier."""

    scale_invariant = False

    def __init__(self, in_features: int, num_classes: int, *, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes, bias=bias)

    @property
    def weight(self) -> Tensor:
        return self.fc.weight

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(features)

    def class_weights(self) -> Tensor:
        """(C, D): logit_c = class_weights[c] . f + bias_c (what a class activation map projects on)."""
        return self.fc.weight.detach()

    def affine(self) -> tuple[Tensor, Tensor]:
        """(W (C, D), b (C,)) with logits = f W^T + b, detached (b is zeros without a bias): the form the
        analyses of a trained run need (margins to pairwise boundaries, feature scaling with and without b)."""
        w = self.fc.weight.detach()
        b = self.fc.bias.detach() if self.fc.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype,
                                                                               device=w.device)
        return w, b

    def tau_normalized(self, tau: float) -> LinearHead:
        """A copy whose class weights are W_c / ||W_c||^tau (bias kept): Kang et al.'s tau-normalisation.

        tau = 0 leaves the head as it is, tau = 1 gives every class weight unit norm, removing the norm
        bias towards frequent classes that plain training leaves in the classifier.
        """
        if tau < 0:
            raise ConfigError(f"eval.tau_norm: expected a non-negative number, got {tau}")
        w = self.fc.weight.detach()
        norms = w.norm(dim=1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)
        head = LinearHead(self.fc.in_features, self.fc.out_features, bias=self.fc.bias is not None)
        head.to(device=w.device, dtype=w.dtype)
        with torch.no_grad():
            head.fc.weight.copy_(w / norms.pow(tau))
            if self.fc.bias is not None:
                head.fc.bias.copy_(self.fc.bias)
        return head.eval()


@HEADS.register("cosine")
class CosineHead(nn.Module):
    """Cosine classifier (the original FCNorm): logits = scale * <f/||f||, w_c/||w_c||>, no bias.

    ``scale`` is 1 as in the original, where the LDAM loss applies its own scale s = 30. Because the
    features are normalised, any per-sample scaling of them, FCC included, leaves the logits unchanged
    (``scale_invariant``).
    """

    scale_invariant = True

    def __init__(self, in_features: int, num_classes: int, *, scale: float = 1.0,
                 init_norm: Literal["class", "feature"] = "class") -> None:
        super().__init__()
        if scale <= 0:
            raise ConfigError(f"model.head_params.scale: expected a positive number, got {scale}")
        self.scale = scale
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        # LDAM-DRW's NormedLinear, where this init comes from: uniform in [-1, 1], then every CLASS vector
        # scaled to unit norm (its weight is (D, C) and renorm_(2, 1, ...) acts per class column). The
        # bag-of-tricks FCNorm stores the weight as (C, D) but kept renorm_(2, 1, ...), which normalises
        # each FEATURE column instead and so skews the initial class directions; init_norm: feature
        # reproduces that (docs/differences.md).
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 0 if init_norm == "class" else 1, 1e-5).mul_(1e5)

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[1]}, num_classes={self.weight.shape[0]}, scale={self.scale}"

    def forward(self, features: Tensor) -> Tensor:
        logits = F.linear(F.normalize(features, dim=1), F.normalize(self.weight, dim=1))
        return logits * self.scale if self.scale != 1.0 else logits

    def class_weights(self) -> Tensor:
        """(C, D) unit class directions: logit_c is proportional to class_weights[c] . f for each sample."""
        return F.normalize(self.weight.detach(), dim=1) * self.scale


@HEADS.register("lws")
class LWSHead(nn.Module):
    """Learnable weight scaling (Kang et al.): a frozen linear layer times learnable per-class scales.

    logits_c = s_c * (w_c . f + b_c), s initialised to 1. The linear layer is meant to be the stage-1
    classifier (same ``fc`` keys as ``linear``); only ``scales`` receives gradients.
    """

    scale_invariant = False

    def __init__(self, in_features: int, num_classes: int, *, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes, bias=bias)
        self.fc.requires_grad_(False)
        self.scales = nn.Parameter(torch.ones(num_classes))

    @property
    def weight(self) -> Tensor:
        return self.fc.weight

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(features) * self.scales

    def class_weights(self) -> Tensor:
        """(C, D): s_c w_c, so that logit_c = class_weights[c] . f + s_c b_c."""
        return (self.fc.weight * self.scales[:, None]).detach()

    def affine(self) -> tuple[Tensor, Tensor]:
        """(W, b) with logits = f W^T + b: W = s_c w_c, b = s_c b_c (zeros without a bias), detached."""
        scales = self.scales.detach()
        w = self.fc.weight.detach() * scales[:, None]
        b = self.fc.bias.detach() * scales if self.fc.bias is not None else torch.zeros_like(scales)
        return w, b


def tau_normalize(head: nn.Module, tau: float) -> nn.Module:
    """The tau-normalised copy of ``head``; only heads with a plain linear classifier support it."""
    method = getattr(head, "tau_normalized", None)
    if method is None:
        raise ConfigError(f"eval.tau_norm: the {type(head).__name__} head cannot be tau-normalised; "
                          "tau-normalisation rescales the rows of a linear classifier (model.head: linear)")
    return method(tau)
