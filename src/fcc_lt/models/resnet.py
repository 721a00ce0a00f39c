"""ImageNet-style ResNets (He et al. 2016) and ResNeXt (Xie et al. 2017) for 224-pixel inputs.

Stem: 7x7 convolution with stride 2, BN, ReLU, 3x3 max-pool with stride 2; then four stages of basic
or bottleneck blocks with widths 64/128/256/512 (x4 for bottlenecks), the first block of stages 2-4
striding by 2 (in a bottleneck the stride sits on the 3x3 convolution, "ResNet v1.5"). Shortcuts that
change shape are a strided 1x1 convolution plus BN. ``forward`` returns the last stage's maps after the
final ReLU (B, out_channels, H/32, W/32), so FCC can scale them before the network pools.

Initial weights follow the original code per backbone: ResNet-10 and ResNeXt-50 draw convolutions
from N(0, sqrt(2 / (k*k*out_channels))) (the OLTR ResNet), ResNet-50 keeps PyTorch's default layer
init (the bag-of-tricks ResNet-50); BN starts at weight 1, bias 0 in all of them.
"""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

from fcc_lt.util.registry import BACKBONES

Init = Literal["fan_out", "pytorch"]
Stride = Literal[1, 2]


def _conv_bn(in_planes: int, planes: int, kernel: int, stride: int = 1,
             groups: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(in_planes, planes, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
    return conv, nn.BatchNorm2d(planes)


def _shortcut(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """Identity when the shape is kept, else a strided 1x1 projection with BN (option B)."""
    if stride == 1 and in_planes == out_planes:
        return nn.Identity()
    return nn.Sequential(*_conv_bn(in_planes, out_planes, 1, stride))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; ``last_bn`` is the BN whose gamma zero-init residual sets to 0."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64) -> None:
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64")
        self.conv1, self.bn1 = _conv_bn(in_planes, planes, 3, stride)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_planes, planes, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, carrying the stride), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, groups: int = 1, base_width: int = 64) -> None:
        super().__init__()
        width = int(planes * base_width / 64) * groups
        self.conv1, self.bn1 = _conv_bn(in_planes, width, 1)
        self.conv2, self.bn2 = _conv_bn(width, width, 3, stride, groups)
        self.conv3, self.bn3 = _conv_bn(width, planes * self.expansion, 1)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(in_planes, planes * self.expansion, stride)

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Backbone exposing ``stem``, ``stages`` (for manifold mixup between stages) and ``out_channels``."""

    def __init__(self, block: type[BasicBlock | Bottleneck], layers: tuple[int, int, int, int], *,
                 groups: int = 1, width_per_group: int = 64, last_stride: Stride = 2, init: Init = "fan_out",
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        self.stem = nn.Sequential(
            *_conv_bn(3, 64, 7, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages = []
        in_planes = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else (last_stride if i == 3 else 2)
            stage = []
            for j in range(blocks):
                stage.append(block(in_planes, planes, stride if j == 0 else 1, groups, width_per_group))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*stage))
        self.stages = nn.ModuleList(stages)
        self.out_channels = in_planes
        self._init_weights(init, zero_init_residual)

    def _init_weights(self, init: Init, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and init == "fan_out":
                # N(0, sqrt(2 / (k*k*out))): Kaiming-normal on fan-out, as the OLTR ResNet draws it
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            # Each residual branch starts at zero, so every block starts as the identity (Goyal et al. 2017).
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn.weight)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


@BACKBONES.register("resnet10")
def resnet10(*, init: Init = "fan_out", zero_init_residual: bool = False) -> ResNet:
    """The OLTR ResNet-10 of the ImageNet-LT protocol: one basic block per stage, 512 features."""
    return ResNet(BasicBlock, (1, 1, 1, 1), init=init, zero_init_residual=zero_init_residual)


@BACKBONES.register("resnet50")
def resnet50(*, init: Init = "pytorch", last_stride: Stride = 2, zero_init_residual: bool = False) -> ResNet:
    """ResNet-50 (bottlenecks [3, 4, 6, 3], 2048 features); ``last_stride: 1`` keeps stage 4 at 1/16."""
    return ResNet(Bottleneck, (3, 4, 6, 3), init=init, last_stride=last_stride,
                  zero_init_residual=zero_init_residual)


@BACKBONES.register("resnext50_32x4d")
def resnext50_32x4d(*, init: Init = "fan_out", last_stride: Stride = 2, zero_init_residual: bool = False) -> ResNet:
    """ResNeXt-50: ResNet-50 with 32 groups of width 4 in the first stage's 3x3 convolutions."""
    return ResNet(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4, init=init, last_stride=last_stride,
                  zero_init_residual=zero_init_residual)
