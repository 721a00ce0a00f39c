"""Classifier heads: pooled features (B, D) -> logits (B, C)."""

from __future__ import annotations

from torch import Tensor, nn

from fcc.registry import HEADS


@HEADS.register("linear")
class LinearHead(nn.Module):
    """A plain fully connected layer with PyTorch's default init, as the original FC classifier."""

    def __init__(self, in_features: int, num_classes: int, *, bias: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, num_classes, bias=bias)

    @property
    def weight(self) -> Tensor:
        return self.fc.weight

    def forward(self, features: Tensor) -> Tensor:
        return self.fc(features)
