"""The network every run trains: backbone -> [FCC] -> global average pool -> head."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch import Tensor, nn

from fcc.compression import FeatureClusterCompression
from fcc.config import Config
from fcc.registry import BACKBONES, HEADS


class Network(nn.Module):
    """Composes the parts; FCC sits between the last backbone stage and the pooling.

    ``forward(x, labels, epoch)`` is the training path (FCC scales when active); evaluation calls it
    without labels, so features pass unscaled. With ``return_features`` it also returns the pooled
    (and, in training, scaled) features, which losses such as influence-balanced need.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module,
                 compression: FeatureClusterCompression | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.compression = compression
        self.head = head

    def pool(self, maps: Tensor) -> Tensor:
        return maps.mean(dim=(-2, -1)) if maps.dim() == 4 else maps

    def forward(self, x: Tensor, labels: Tensor | None = None, epoch: int | None = None, *,
                return_features: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        maps = self.backbone(x)
        if self.compression is not None:
            maps = self.compression(maps, labels, epoch)
        features = self.pool(maps)
        logits = self.head(features)
        return (logits, features) if return_features else logits

    def features(self, x: Tensor) -> Tensor:
        """Pooled features without FCC scaling (for analysis and feature statistics)."""
        return self.pool(self.backbone(x))


def build_network(cfg: Config, class_counts: Sequence[int]) -> Network:
    """Build the configured network for a training set with these per-class counts."""
    m = cfg.model
    backbone = BACKBONES.build(m.backbone, m.backbone_params, "model.backbone_params")
    head = HEADS.build(m.head, m.head_params, "model.head_params", backbone.out_channels, len(class_counts))
    compression = None
    if cfg.fcc.enabled and getattr(head, "scale_invariant", False):
        warnings.warn(f"fcc.enabled with model.head {m.head!r}: the head normalises the features, so FCC's "
                      "per-class feature scaling cannot change the logits; FCC is a no-op here", stacklevel=2)
    if cfg.fcc.enabled:
        compression = FeatureClusterCompression(
            class_counts,
            gamma=cfg.fcc.gamma,
            start_epoch=cfg.fcc.start_epoch,
            rank_by=cfg.fcc.rank_by,
            decimals=cfg.fcc.round_decimals,
        )
    return Network(backbone, head, compression)
