"""FCC: factors against hand-worked values, ranking, and where/when the scaling applies."""

from __future__ import annotations

import pytest
import torch

from fcc_lt.config.load import load_config
from fcc_lt.engine.step import TrainingForward
from fcc_lt.methods.fcc import FeatureClusterCompression, build_compression, class_ranks, compress, scaling_factors
from fcc_lt.models.network import build_network


def test_factors_cifar10_gamma_half() -> None:
    # tau_k = 1 + 0.5 - k * 0.05
    expected = [1.50, 1.45, 1.40, 1.35, 1.30, 1.25, 1.20, 1.15, 1.10, 1.05]
    assert scaling_factors(10, 0.5).tolist() == pytest.approx(expected, abs=1e-6)


def test_factors_cifar100_gamma_one_ends() -> None:
    tau = scaling_factors(100, 1.0)
    assert tau[0].item() == pytest.approx(2.0) and tau[1].item() == pytest.approx(1.99)
    assert tau[-1].item() == pytest.approx(1.01)
    assert bool((tau[:-1] > tau[1:]).all())  # strictly decreasing


def test_rounding_collapses_levels_like_the_original() -> None:
    # C = 1000, gamma = 0.1: tau_k = 1.1 - k/10000 rounds to 11 levels 1.10 .. 1.00
    tau = scaling_factors(1000, 0.1, decimals=2)
    assert sorted({round(v, 2) for v in tau.tolist()}) == [round(1.0 + i / 100, 2) for i in range(11)]
    # the last classes get exactly 1.00: 1.1 - k/10000 < 1.005  <=>  k > 950
    assert (tau == 1.0).sum().item() == 49
    unrounded = scaling_factors(1000, 0.1)
    assert unrounded.min().item() == pytest.approx(1.0001)
    # C = 100, gamma = 0.5: the last class is exactly 1.00 after rounding (1.005 -> 1.0)
    assert scaling_factors(100, 0.5, decimals=2)[-1].item() == pytest.approx(1.0)


def original_factors(num_classes: int, gamma: float) -> list[float]:
    """The original code's expression, verbatim in meaning: Python floats, gamma / C divided first."""
    return [round((1 + gamma - k * (gamma / num_classes)), 2) for k in range(num_classes)]


@pytest.mark.parametrize("num_classes", [10, 100, 1000, 8142])
@pytest.mark.parametrize("gamma", [0.1, 0.25, 0.3, 0.5, 1.0, 2.0])
def test_rounded_factors_equal_the_original_expression(num_classes: int, gamma: float) -> None:
    tau = scaling_factors(num_classes, gamma, decimals=2)
    assert tau.dtype == torch.float32 and tau.shape == (num_classes,)
    # the original turned the Python floats into a float32 tensor (torch.tensor of floats)
    assert torch.equal(tau, torch.tensor(original_factors(num_classes, gamma), dtype=torch.float32))


def test_rounding_ties_follow_the_original_operation_order() -> None:
    # C = 100, gamma 0.5: 1.5 - k * 0.005 lands on a 5 in the third decimal for odd k; which way it rounds
    # depends on the binary value of the original's expression. Rounding the float64 tensor 1.5 - k*0.5/100
    # with torch instead disagrees with the original for 20 of the 100 classes, e.g. k = 3 and k = 29.
    tau = scaling_factors(100, 0.5, decimals=2).tolist()
    assert tau[3] == pytest.approx(1.49, abs=1e-7) and tau[29] == pytest.approx(1.35, abs=1e-7)
    k = torch.arange(100, dtype=torch.float64)
    other_order = torch.round(1.0 + 0.5 - k * 0.5 / 100, decimals=2).float()
    assert int((other_order != torch.tensor(tau)).sum()) == 20
    assert other_order[3].item() == pytest.approx(1.48, abs=1e-7)
    # the hand-counted levels: 51 distinct values 1.50 .. 1.00 for the 100 classes
    assert sorted({round(v, 2) for v in tau}) == [round(1 + i / 100, 2) for i in range(51)]


def test_rounding_leaves_the_last_inat_classes_at_one() -> None:
    # C = 8142, gamma 0.1: 1.1 - k * 0.1 / 8142 < 1.005 for k > 7735.1, i.e. the last 8142 - 7736 = 406 or
    # 407 indices depending on the tie at the boundary; the original's expression gives 407 (behaviour.md)
    tau = scaling_factors(8142, 0.1, decimals=2)
    assert int((tau == 1.0).sum()) == 407
    assert tau.unique().numel() == 11


def test_unrounded_factors_are_the_formula() -> None:
    tau = scaling_factors(1000, 0.1)
    k = torch.arange(1000, dtype=torch.float64)
    assert torch.equal(tau, (1.1 - k * 0.1 / 1000).float())


def test_gamma_zero_is_identity_factors() -> None:
    assert scaling_factors(7, 0.0).tolist() == [1.0] * 7


def test_class_ranks_by_frequency_with_ties() -> None:
    counts = [5, 50, 20, 50, 1]
    # order by count desc, ties by index: class1 (50), class3 (50), class2 (20), class0 (5), class4 (1)
    assert class_ranks(counts).tolist() == [3, 0, 2, 1, 4]


def test_module_uses_rank_or_index() -> None:
    counts = [5, 50, 20]
    tau = scaling_factors(3, 0.6)  # 1.6, 1.4, 1.2
    by_freq = FeatureClusterCompression(counts, gamma=0.6)
    assert by_freq.class_factor.tolist() == pytest.approx(tau[[2, 0, 1]].tolist())
    by_index = FeatureClusterCompression(counts, gamma=0.6, rank_by="index")
    assert by_index.class_factor.tolist() == pytest.approx(tau.tolist())


def test_factors_per_sample_and_schedule() -> None:
    fcc = FeatureClusterCompression([30, 20, 10], gamma=0.3, start_epoch=3)  # tau 1.3, 1.2, 1.1
    labels = torch.tensor([2, 0, 1, 0])
    assert fcc.factors(labels, 2).tolist() == [1.0] * 4  # before the start epoch: ones, the same graph
    assert fcc.factors(labels, 3).tolist() == pytest.approx([1.1, 1.3, 1.2, 1.3])
    assert fcc.factors(labels, 200).tolist() == pytest.approx([1.1, 1.3, 1.2, 1.3])
    # mixed samples: w * tau(a) + (1 - w) * tau(b)
    mixed = fcc.mixed_factors(labels, torch.tensor([0, 0, 2, 1]), torch.tensor([0.25, 1.0, 0.5, 0.0]), 3)
    assert mixed.tolist() == pytest.approx([0.25 * 1.1 + 0.75 * 1.3, 1.3, 0.5 * 1.2 + 0.5 * 1.1, 1.2])
    feats = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    out = compress(feats, fcc.factors(labels, 3))
    expected = feats * torch.tensor([1.1, 1.3, 1.2, 1.3], dtype=torch.float64).view(4, 1, 1, 1)
    assert out.dtype == torch.float32 and torch.allclose(out.double(), expected, atol=1e-6)
    assert "class_factor" not in fcc.state_dict()  # derived, not saved


def test_bf16_features_keep_every_factor_of_1000_classes() -> None:
    """tau for ImageNet-LT (C = 1000, gamma 0.1) spans [1.0001, 1.1]; in bf16 (8 significant bits) those
    1000 values collapse to about 14, which is what scaling in the features' dtype used to do."""
    fcc = FeatureClusterCompression(list(range(1000, 0, -1)), gamma=0.1)
    labels = torch.arange(1000)
    features = torch.ones(1000, 4, dtype=torch.bfloat16)
    scaled = compress(features, fcc.factors(labels, 1))
    assert scaled.dtype == torch.float32
    assert scaled[:, 0].unique().numel() == 1000  # every class keeps its own factor
    expected = 1.1 - torch.arange(1000, dtype=torch.float64) * 0.1 / 1000
    torch.testing.assert_close(scaled[:, 0].double(), expected, rtol=0, atol=1e-7)
    assert (features * fcc.factors(labels, 1).to(torch.bfloat16)[:, None])[:, 0].unique().numel() <= 16


def test_build_compression_ranks_as_configured() -> None:
    """From a config: fcc.rank_by frequency ranks by the counts, index by the class id (class 0 smallest)."""
    counts = [5, 50, 20]  # class 0 is the SMALLEST: by frequency it gets the smallest factor
    cfg = load_config(None, ["fcc.enabled=true", "fcc.gamma=0.6"])
    assert build_compression(cfg, counts).class_factor.tolist() == pytest.approx([1.2, 1.6, 1.4])
    by_index = load_config(None, ["fcc.enabled=true", "fcc.gamma=0.6", "fcc.rank_by=index"])
    assert build_compression(by_index, counts).class_factor.tolist() == pytest.approx([1.6, 1.4, 1.2])
    assert build_compression(load_config(None, []), counts) is None


def tiny_network():
    cfg = load_config(None, ["model.backbone=resnet_cifar", "model.backbone_params={depth: 8, width: 4}"])
    torch.manual_seed(0)
    return build_network(cfg, 5)


def test_fcc_changes_training_logits_but_not_evaluation() -> None:
    """The network is pure: TrainingForward scales its pooled features by the factors, evaluation never does."""
    net = tiny_network().train()
    fcc = FeatureClusterCompression([50, 30, 20, 10, 5], gamma=0.5, start_epoch=3)
    forward = TrainingForward(net)
    x = torch.randn(6, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    with torch.no_grad():
        plain_logits, plain_feats = forward(x)
        before, _ = forward(x, fcc.factors(y, 2))
        assert torch.equal(before, plain_logits)  # x * 1.0 is exact before the start epoch
        logits, feats = forward(x, fcc.factors(y, 3))
        tau = torch.tensor([1.5, 1.4, 1.3, 1.2, 1.1, 1.5])
        torch.testing.assert_close(feats, plain_feats * tau[:, None], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(logits, net.head(plain_feats * tau[:, None]), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(logits, plain_logits)
        net.eval()
        assert torch.equal(net(x), net.head(net.features(x)))  # evaluation: the plain network
