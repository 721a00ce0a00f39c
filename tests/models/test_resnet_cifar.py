"""ResNet-32 for CIFAR: structure and parameter count against a hand count."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fcc_lt.config.load import load_config
from fcc_lt.models.network import build_network
from fcc_lt.models.resnet_cifar import ResNetCifar, ZeroPadShortcut
from fcc_lt.util.errors import ConfigError


def hand_count(blocks: int = 5, widths: tuple[int, int, int] = (16, 32, 64), classes: int = 10) -> int:
    """3x3 convs without bias, BN (2 params per channel), option-A shortcuts (no params), linear head."""
    total = 3 * widths[0] * 9 + 2 * widths[0]  # stem
    cin = widths[0]
    for w in widths:
        for _ in range(blocks):
            total += cin * w * 9 + w * w * 9 + 2 * (2 * w)
            cin = w
    return total + widths[-1] * classes + classes


def test_resnet32_parameter_count() -> None:
    net = build_network(load_config(), 10)
    assert sum(p.numel() for p in net.parameters()) == hand_count() == 464_154
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == 31  # + 1 linear layer = 32 layers


def test_shapes_shortcuts_and_init() -> None:
    torch.manual_seed(0)
    net = ResNetCifar(32)
    assert net.out_channels == 64 and len(net.stages) == 3 and all(len(s) == 5 for s in net.stages)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 64, 8, 8)
    shortcuts = [m for m in net.modules() if isinstance(m, ZeroPadShortcut)]
    assert len(shortcuts) == 2  # one per stage change, parameter-free
    x = torch.randn(1, 16, 8, 8)
    out = shortcuts[0](x)
    assert out.shape == (1, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2]) and not out[:, :8].any() and not out[:, 24:].any()
    # Kaiming normal (fan_in, gain sqrt 2): std of a 64-in 3x3 conv is sqrt(2 / 576)
    w = net.stages[2][1].conv1.weight
    assert w.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)


def test_depth_must_be_6n_plus_2() -> None:
    cfg = load_config(None, ["model.backbone=resnet_cifar", "model.backbone_params={depth: 30}"])
    with pytest.raises(ConfigError, match=r"model\.backbone_params.*6n\+2"):
        build_network(cfg, 10)
