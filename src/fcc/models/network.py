"""The network every run trains: backbone -> [FCC] -> global average pool -> head."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

from torch import Tensor, nn

from fcc.compression import FeatureClusterCompression
from fcc.config import Config
from fcc.registry import BACKBONES, HEADS

if TYPE_CHECKING:
    from fcc.mixing import MixedBatch


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
                return_features: bool = False, mix: MixedBatch | None = None) -> Tensor | tuple[Tensor, Tensor]:
        if mix is not None and mix.labels_b is not None:
            return self._forward_mixed(x, epoch, mix, return_features)
        maps = self.backbone(x)
        if self.compression is not None:
            maps = self.compression(maps, labels, epoch)
        features = self.pool(maps)
        logits = self.head(features)
        return (logits, features) if return_features else logits

    def _forward_mixed(self, x: Tensor, epoch: int | None, mix: MixedBatch,
                       return_features: bool) -> Tensor | tuple[Tensor, Tensor]:
        """The training path for a mixed batch (``x`` already mixed, or mixed inside at ``mix.feature_mix``).

        FCC factors: where the features FCC scales are mixtures (input mixing, or manifold mixing at a
        backbone stage), each sample gets w * tau(a) + (1 - w) * tau(b) with its label weight w; mixing at
        pool or logits happens after FCC, which then scales every (still unmixed) sample by its own class.
        """
        fm = mix.feature_mix
        stage = fm.stage if fm is not None else None
        if stage is None:
            maps = self.backbone(x)
        else:
            stages = self.backbone.stages
            if stage > len(stages):
                raise ValueError(f"manifold mixing after stage {stage}, but the backbone has {len(stages)} stages")
            maps = self.backbone.stem(x)
            for i, block in enumerate(stages, start=1):
                maps = block(maps)
                if i == stage:
                    maps = fm(maps)
        if self.compression is not None and self.compression.is_active(epoch):
            factors = None
            if fm is None or stage is not None:
                w = mix.weight_a.float()
                factors = (w * self.compression.factors(mix.labels_a)
                           + (1 - w) * self.compression.factors(mix.labels_b))
            maps = self.compression(maps, mix.labels_a, epoch, factors=factors)
        features = self.pool(maps)
        if fm is not None and fm.location == "pool":
            features = fm(features)
        logits = self.head(features)
        if fm is not None and fm.location == "logits":
            logits = fm(logits)
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
