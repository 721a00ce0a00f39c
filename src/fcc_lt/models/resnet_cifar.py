"""ResNets for 32x32 inputs (He et al. 2016, section 4.2): 3 stages of n basic blocks, widths 16/32/64.

Shortcuts are the parameter-free "option A" (subsample, then zero-pad the new channels), convolutions
and linear layers use Kaiming-normal init, as in the LDAM-DRW / bag-of-tricks ResNet-32.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from fcc_lt.util.registry import BACKBONES


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: stride-2 subsampling and zero channels split evenly on both sides."""

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = planes - in_planes
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = ZeroPadShortcut(in_planes, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetCifar(nn.Module):
    """Backbone returning the last stage's feature maps (B, out_channels, 8, 8) after the final ReLU."""

    def __init__(self, depth: int = 32, widths: tuple[int, int, int] = (16, 32, 64)) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        if min(widths) < 1:
            raise ValueError(f"CIFAR ResNet widths must be >= 1, got {widths}")
        blocks = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_planes = widths[0]
        for i, planes in enumerate(widths):
            layers = []
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.out_channels = in_planes
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


@BACKBONES.register("resnet_cifar")
def resnet_cifar(*, depth: int = 32, width: int = 16) -> ResNetCifar:
    """Any 6n+2 depth; ``width`` is the first stage's channels (doubled per stage)."""
    return ResNetCifar(depth, (width, 2 * width, 4 * width))


@BACKBONES.register("resnet20")
def resnet20() -> ResNetCifar:
    return ResNetCifar(20)


@BACKBONES.register("resnet32")
def resnet32() -> ResNetCifar:
    return ResNetCifar(32)


@BACKBONES.register("resnet56")
def resnet56() -> ResNetCifar:
    return ResNetCifar(56)


@BACKBONES.register("resnet110")
def resnet110() -> ResNetCifar:
    return ResNetCifar(110)
