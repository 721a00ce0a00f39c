"""The network every run trains: backbone -> global average pool -> head. Pure: images in, logits out.

It takes no labels, epochs or mixing state, so it is the same module in training and evaluation,
``torch.compile`` compiles it as is, and checkpoints of runs with and without FCC are interchangeable.
What a training step does around it (FCC's feature scaling, manifold mixing) is the training
step's business (``fcc_lt.engine.step``), which uses ``features`` and ``head`` separately.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fcc_lt.config.schema import Config
from fcc_lt.util.registry import BACKBONES, HEADS


class Network(nn.Module):
    """``head(pool(backbone(x)))``; ``features(x)`` is the pooled (B, D) vector the head sees."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    @staticmethod
    def pool(maps: Tensor) -> Tensor:
        """Global average pooling of (B, D, H, W) maps; (B, D) inputs pass through."""
        return maps.mean(dim=(-2, -1)) if maps.dim() == 4 else maps

    def features(self, x: Tensor) -> Tensor:
        return self.pool(self.backbone(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def build_network(cfg: Config, num_classes: int) -> Network:
    """The configured backbone and head for ``num_classes`` classes (weights at their initialisation)."""
    m = cfg.model
    backbone = BACKBONES.build(m.backbone, m.backbone_params, "model.backbone_params")
    head = HEADS.build(m.head, m.head_params, "model.head_params", backbone.out_channels, num_classes)
    return Network(backbone, head)


def unwrap_ddp(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (the model itself when it is not wrapped)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def model_memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last when the model's first spatial convolution weight is stored NHWC, else contiguous.

    (1x1 kernels are both at once, so the first weight with a kernel larger than 1x1 decides.)
    """
    for p in model.parameters():
        if p.dim() == 4 and p.shape[-1] * p.shape[-2] > 1 and p.shape[1] > 1:
            nhwc = p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
            return torch.channels_last if nhwc else torch.contiguous_format
    return torch.contiguous_format
