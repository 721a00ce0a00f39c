"""FCC: factors against hand-worked values, ranking, and where/when the scaling applies."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fcc.compression import FeatureClusterCompression, class_ranks, scaling_factors
from fcc.config import load_config
from fcc.models import build_network


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


def test_scaling_per_sample_and_schedule() -> None:
    fcc = FeatureClusterCompression([30, 20, 10], gamma=0.3, start_epoch=3)  # tau 1.3, 1.2, 1.1
    feats = torch.randn(4, 2, 3, 3, dtype=torch.float64)
    labels = torch.tensor([2, 0, 1, 0])
    fcc.train()
    assert torch.equal(fcc(feats, labels, epoch=2), feats)  # before the start epoch
    out = fcc(feats, labels, epoch=3)
    expected = feats * torch.tensor([1.1, 1.3, 1.2, 1.3], dtype=torch.float64).view(4, 1, 1, 1)
    assert torch.allclose(out, expected, atol=1e-6)
    assert torch.equal(fcc(feats, None, epoch=3), feats)  # no labels: no scaling
    fcc.eval()
    assert torch.equal(fcc(feats, labels, epoch=3), feats)  # evaluation: never
    assert "class_factor" not in fcc.state_dict()  # derived, not saved


def tiny_network(fcc: bool, start: int = 1):
    cfg = load_config(None, ["model.backbone=resnet_cifar", "model.backbone_params={depth: 8, width: 4}",
                             f"fcc.enabled={str(fcc).lower()}", "fcc.gamma=0.5", f"fcc.start_epoch={start}"])
    torch.manual_seed(0)
    return build_network(cfg, [50, 30, 20, 10, 5])


def test_fcc_changes_training_loss_but_not_evaluation() -> None:
    plain, scaled = tiny_network(False), tiny_network(True, start=3)
    scaled.load_state_dict(plain.state_dict())
    x = torch.randn(6, 3, 32, 32)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    plain.train()
    scaled.train()
    loss = lambda net, epoch: F.cross_entropy(net(x, labels=y, epoch=epoch), y)  # noqa: E731
    with torch.no_grad():
        base = loss(plain, 5)
        assert torch.equal(loss(scaled, 2), base)  # nothing before the start epoch
        assert not torch.allclose(loss(scaled, 3), base)  # active from the start epoch on
        # the scaled training logits are head(tau * pooled) exactly
        logits, feats = scaled(x, labels=y, epoch=3, return_features=True)
        tau = scaled.compression.class_factor[y]
        assert torch.allclose(feats, plain.features(x) * tau[:, None], atol=1e-5)
        assert torch.allclose(logits, scaled.head(feats), atol=1e-5)
        scaled.load_state_dict(plain.state_dict())  # training forwards moved the BN running stats
        plain.eval()
        scaled.eval()
        assert torch.equal(scaled(x), plain(x))  # evaluation outputs identical
        assert torch.equal(scaled(x, labels=y, epoch=10), plain(x))  # even if labels are passed
