"""ImageNet-style backbones: structure, parameter counts, init, shapes, gradients, config integration."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fcc_lt.config.load import load_config
from fcc_lt.engine.step import TrainingForward
from fcc_lt.methods.fcc import build_compression
from fcc_lt.models.network import build_network
from fcc_lt.models.resnet import BasicBlock, Bottleneck, ResNet
from fcc_lt.util.errors import ConfigError
from fcc_lt.util.registry import BACKBONES


def conv_bn(cin: int, cout: int, k: int, groups: int = 1) -> int:
    return cin // groups * cout * k * k + 2 * cout


def basic_count(cin: int, planes: int) -> int:
    n = conv_bn(cin, planes, 3) + conv_bn(planes, planes, 3)
    return n + (conv_bn(cin, planes, 1) if cin != planes else 0)


def bottleneck_count(cin: int, planes: int, stride: int, groups: int = 1, base_width: int = 64) -> int:
    width = planes * base_width // 64 * groups
    n = conv_bn(cin, width, 1) + conv_bn(width, width, 3, groups) + conv_bn(width, 4 * planes, 1)
    return n + (conv_bn(cin, 4 * planes, 1) if stride != 1 or cin != 4 * planes else 0)


def expected_count(kind: str, layers: tuple[int, ...], groups: int = 1, base_width: int = 64) -> int:
    """Parameters of the feature extractor (no classifier), from the layer shapes alone."""
    total = conv_bn(3, 64, 7)
    cin = 64
    for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
        for j in range(blocks):
            if kind == "basic":
                total += basic_count(cin, planes)
                cin = planes
            else:
                total += bottleneck_count(cin, planes, 2 if (i > 0 and j == 0) else 1, groups, base_width)
                cin = 4 * planes
    return total


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "literal", "formula"), [
    ("resnet10", 4_905_792, expected_count("basic", (1, 1, 1, 1))),
    # torchvision-equivalent totals minus the 2048x1000 fc: 25,557,032 - 2,049,000 and 25,028,904 - 2,049,000
    ("resnet50", 23_508_032, expected_count("bottleneck", (3, 4, 6, 3))),
    ("resnext50_32x4d", 22_979_904, expected_count("bottleneck", (3, 4, 6, 3), groups=32, base_width=4)),
])
def test_parameter_counts(name: str, literal: int, formula: int) -> None:
    assert formula == literal
    assert n_params(BACKBONES.build(name, {}, "model.backbone_params")) == literal


def test_structure_of_stem_and_stages() -> None:
    net = BACKBONES.build("resnet50", {}, "p")
    conv, bn, relu, pool = net.stem
    assert (conv.kernel_size, conv.stride, conv.padding, conv.out_channels) == ((7, 7), (2, 2), (3, 3), 64)
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)
    assert isinstance(net.stages, nn.ModuleList) and [len(s) for s in net.stages] == [3, 4, 6, 3]
    assert net.out_channels == 2048
    for i, stage in enumerate(net.stages):
        first = stage[0]
        assert isinstance(first, Bottleneck)
        # stride on the 3x3 convolution (v1.5), never on the 1x1 reduction
        assert first.conv1.stride == (1, 1)
        assert first.conv2.stride == ((1, 1) if i == 0 else (2, 2))
        assert isinstance(first.shortcut, nn.Sequential)  # projection in every stage's first block
        assert all(isinstance(b.shortcut, nn.Identity) for b in stage[1:])
    r10 = BACKBONES.build("resnet10", {}, "p")
    assert all(isinstance(s[0], BasicBlock) and len(s) == 1 for s in r10.stages) and r10.out_channels == 512
    assert isinstance(r10.stages[0][0].shortcut, nn.Identity)  # 64 -> 64 with stride 1


def test_resnext_groups_and_widths() -> None:
    net = BACKBONES.build("resnext50_32x4d", {}, "p")
    widths = [stage[0].conv2.in_channels for stage in net.stages]
    assert widths == [128, 256, 512, 1024]  # 32 groups x 4, doubling per stage
    assert all(b.conv2.groups == 32 for stage in net.stages for b in stage)
    assert net.out_channels == 2048


@pytest.mark.parametrize(("name", "size", "params", "spatial"), [
    ("resnet10", 64, {}, 2),
    ("resnet10", 33, {}, 2),  # odd sizes round up at each stride-2 step: 33 -> 17 -> 9 -> 5 -> 3 -> 2
    ("resnet50", 32, {"last_stride": 1}, 2),  # stage 4 keeps stage 3's 1/16 resolution
])
def test_output_shapes(name: str, size: int, params: dict, spatial: int) -> None:
    net = BACKBONES.build(name, params, "p").eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, net.out_channels, spatial, spatial)
    assert bool((out >= 0).all())  # maps after the final ReLU, before any pooling


@pytest.mark.parametrize("name", ["resnet10", "resnet50", "resnext50_32x4d"])
def test_every_parameter_gets_a_finite_gradient(name: str) -> None:
    torch.manual_seed(0)
    net = BACKBONES.build(name, {}, "p")
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, net.out_channels, 1, 1)
    assert bool(torch.isfinite(out).all())
    (out.mean(dim=(2, 3)) * torch.randn(2, net.out_channels)).sum().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, pname
        assert bool(torch.isfinite(p.grad).all()), pname
        assert bool(p.grad.abs().sum() > 0), pname


def test_forward_is_stem_then_stages() -> None:
    """The manifold-mixup helper runs stem and stages itself; that must equal forward()."""
    torch.manual_seed(1)
    net = BACKBONES.build("resnet10", {}, "p").eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        h = net.stem(x)
        for stage in net.stages:
            h = stage(h)
        assert torch.equal(h, net(x))


@torch.no_grad()
def test_oltr_init_of_resnet10() -> None:
    torch.manual_seed(2)
    net = BACKBONES.build("resnet10", {}, "p")
    conv = net.stages[3][0].conv2  # 512x512x3x3: 2.4M draws, so the sample std is within ~0.1%
    expected = math.sqrt(2.0 / (3 * 3 * 512))
    assert float(conv.weight.std()) == pytest.approx(expected, rel=0.01)
    assert abs(float(conv.weight.mean())) < expected * 0.01
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert bool((m.weight == 1).all()) and bool((m.bias == 0).all())


@torch.no_grad()
def test_resnet50_keeps_pytorch_default_init() -> None:
    torch.manual_seed(3)
    net = BACKBONES.build("resnet50", {}, "p")
    conv = net.stages[3][1].conv2  # 512x512x3x3, fan_in 4608
    bound = 1.0 / math.sqrt(512 * 9)  # kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert float(conv.weight.abs().max()) <= bound
    assert float(conv.weight.std()) == pytest.approx(bound / math.sqrt(3), rel=0.01)
    other = BACKBONES.build("resnet50", {"init": "fan_out"}, "p").stages[3][1].conv2
    assert float(other.weight.std()) == pytest.approx(math.sqrt(2.0 / 4608), rel=0.01)


def test_zero_init_residual_makes_blocks_identities() -> None:
    torch.manual_seed(4)
    net = BACKBONES.build("resnet50", {"zero_init_residual": True}, "p").eval()
    block = net.stages[0][1]  # identity shortcut
    assert bool((block.last_bn.weight == 0).all())
    x = torch.rand(2, 256, 8, 8)  # non-negative, like the ReLU output feeding it
    with torch.no_grad():
        assert torch.equal(block(x), x)
    default = BACKBONES.build("resnet50", {}, "p")
    assert bool((default.stages[0][1].last_bn.weight == 1).all())  # off by default, as the original


def test_channels_last_matches_contiguous() -> None:
    torch.manual_seed(5)
    net = BACKBONES.build("resnet10", {}, "p").eval()
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        ref = net(x)
        net.to(memory_format=torch.channels_last)
        out = net(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_bad_params_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"model\.backbone_params\.last_stride"):
        load_config(None, ["model.backbone=resnet50", "model.backbone_params={last_stride: 3}"])
    with pytest.raises(ConfigError, match="has no parameter 'last_stride'"):
        load_config(None, ["model.backbone=resnet10", "model.backbone_params={last_stride: 1}"])
    with pytest.raises(ValueError, match="groups"):
        ResNet(BasicBlock, (1, 1, 1, 1), groups=32, width_per_group=4)


def test_network_with_resnet10_scales_maps_by_fcc_factors() -> None:
    cfg = load_config(None, ["model.backbone=resnet10", "fcc.enabled=true", "fcc.gamma=0.1"])
    counts = [30, 20, 10, 5, 2]  # sorted, so rank = index and tau = 1.1, 1.08, 1.06, 1.04, 1.02
    net = build_network(cfg, len(counts)).train()
    fcc = build_compression(cfg, counts)
    torch.manual_seed(6)
    x, labels = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 4])
    logits, feats = TrainingForward(net)(x, fcc.factors(labels, 10))
    assert logits.shape == (3, 5) and feats.shape == (3, 512)
    plain = net.backbone(x).mean(dim=(2, 3))  # same batch in train mode: same BN batch statistics
    tau = torch.tensor([1.1, 1.08, 1.02])
    torch.testing.assert_close(feats, plain * tau[:, None], rtol=1e-5, atol=1e-6)
