"""The analyses of evaluation/analyses.py on hand-built features and heads whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fcc_lt.config.load import load_config
from fcc_lt.engine.step import TrainingForward
from fcc_lt.evaluation import analyses as A
from fcc_lt.evaluation.analyze_run import head_factors, last_trained_epoch
from fcc_lt.evaluation.metrics import shot_groups
from fcc_lt.methods.fcc import FeatureClusterCompression
from fcc_lt.models.heads import CosineHead, LinearHead, LWSHead
from fcc_lt.models.network import Network


def linear_head(weight: list[list[float]], bias: list[float]) -> LinearHead:
    head = LinearHead(len(weight[0]), len(weight))
    with torch.no_grad():
        head.fc.weight.copy_(torch.tensor(weight))
        head.fc.bias.copy_(torch.tensor(bias))
    return head


# W rows: class 0 (1, 0), class 1 (0, 1), class 2 (-1, -1); biases 0.5, 0, -0.5
HAND_HEAD = linear_head([[1, 0], [0, 1], [-1, -1]], [0.5, 0.0, -0.5])
HAND_FEATURES = torch.tensor([[2.0, 1.0], [0.0, 1.0], [-1.0, -1.0], [1.0, 3.0]])
HAND_LABELS = torch.tensor([0, 0, 2, 1])
# logits: [2.5, 1, -3.5], [0.5, 1, -1.5], [-0.5, -1, 1.5], [1.5, 3, -4.5]
HAND_LOGIT_MARGINS = [1.5, -0.5, 2.0, 1.5]  # rivals: 1, 1, 0, 0
HAND_GEOMETRIC = [1.5 / math.sqrt(2), -0.5 / math.sqrt(2), 2.0 / math.sqrt(5), 1.5 / math.sqrt(2)]


def test_margins_by_hand() -> None:
    logit, geometric = A.margins(A.AnalysisHead(HAND_HEAD), HAND_FEATURES, HAND_LABELS)
    assert logit.tolist() == pytest.approx(HAND_LOGIT_MARGINS, abs=1e-6)
    assert geometric is not None and geometric.tolist() == pytest.approx(HAND_GEOMETRIC, abs=1e-6)


def test_margin_summary_against_numpy_percentiles() -> None:
    values = torch.tensor(HAND_LOGIT_MARGINS, dtype=torch.float64)
    groups = {"many": [0], "medium": [1], "few": [2]}
    s = A.margin_summary(values, HAND_LABELS, groups, 3)
    assert s["all"]["median"] == pytest.approx(np.percentile(HAND_LOGIT_MARGINS, 50))
    assert s["all"]["p10"] == pytest.approx(np.percentile(HAND_LOGIT_MARGINS, 10))  # -0.5 + 0.3 * 2 = 0.1
    assert s["all"]["p10"] == pytest.approx(0.1)
    assert s["all"]["pct_negative"] == pytest.approx(25.0)
    assert s["many"] == {"n": 2, "median": pytest.approx(0.5), "p10": pytest.approx(-0.3), "pct_negative": 50.0}
    assert s["few"]["median"] == pytest.approx(2.0) and s["medium"]["median"] == pytest.approx(1.5)
    assert s["per_class"]["pct_negative"] == [50.0, 0.0, 0.0]
    rng = np.random.default_rng(0)
    many = rng.normal(size=1001)
    summary = A.margin_summary(torch.tensor(many), torch.zeros(1001, dtype=torch.long), groups, 3)
    expected = np.percentile(many, A.PERCENTILES)
    assert summary["percentiles"]["all"] == pytest.approx(expected.tolist(), abs=1e-12)
    assert summary["medium"]["n"] == 0 and summary["medium"]["median"] is None


def test_geometric_margin_is_the_distance_to_the_pairwise_boundary() -> None:
    torch.manual_seed(0)
    head = A.AnalysisHead(linear_head(torch.randn(5, 3).tolist(), torch.randn(5).tolist()))
    f = torch.randn(50, 3, dtype=torch.float64)
    y = torch.randint(0, 5, (50,))
    logit, geometric = A.margins(head, f, y)
    assert head.weight is not None and head.bias is not None
    w, b = head.weight.numpy(), head.bias.numpy()
    for i in range(50):
        z = f[i].numpy() @ w.T + b
        yi = int(y[i])
        rival = max((c for c in range(5) if c != yi), key=lambda c: z[c])
        normal = w[yi] - w[rival]
        # the point on the boundary {x: (w_y - w_c) x + b_y - b_c = 0} nearest to f, and f's signed distance to it
        offset = (normal @ f[i].numpy() + b[yi] - b[rival]) / (normal @ normal)
        foot = f[i].numpy() - offset * normal
        assert normal @ foot + b[yi] - b[rival] == pytest.approx(0.0, abs=1e-9)
        distance = np.linalg.norm(f[i].numpy() - foot) * np.sign(offset)
        assert geometric[i].item() == pytest.approx(distance, abs=1e-9)
        assert logit[i].item() == pytest.approx(z[yi] - z[rival], abs=1e-9)


def test_scale_sweep_by_hand_and_zero_bias_invariance() -> None:
    # two classes, W = I, b = (1, 0): a class-1 feature (0, 1.5) is right only when 1.5 s > 1, i.e. s > 2/3
    head = A.AnalysisHead(linear_head([[1, 0], [0, 1]], [1.0, 0.0]))
    f = torch.tensor([[0.0, 1.5], [3.0, 0.0]])
    y = torch.tensor([1, 0])
    groups = {"many": [0], "medium": [1], "few": []}
    sweep = A.scale_sweep(head, f, y, groups, 2)
    assert sweep["scales"] == pytest.approx([0.5 + 0.1 * i for i in range(16)])
    expected = [50.0 if s < 2 / 3 else 100.0 for s in sweep["scales"]]
    assert sweep["with_bias"]["top1"] == expected
    assert sweep["with_bias"]["medium"] == [0.0 if s < 2 / 3 else 100.0 for s in sweep["scales"]]
    assert sweep["zero_bias"]["top1"] == [100.0] * 16
    assert sweep["zero_bias_invariant"] is True
    assert sweep["best_scale"] == 1.0  # the first scale with the best top-1 nearest to 1
    assert sweep["bias_norm"] == pytest.approx(1.0)


def test_zero_bias_sweep_is_flat_on_random_heads_and_features() -> None:
    torch.manual_seed(1)
    head = A.AnalysisHead(linear_head(torch.randn(7, 4).tolist(), (3 * torch.randn(7)).tolist()))
    f, y = torch.randn(300, 4), torch.randint(0, 7, (300,))
    sweep = A.scale_sweep(head, f, y, shot_groups([100, 90, 80, 50, 30, 10, 5]), 7)
    assert len(set(sweep["zero_bias"]["top1"])) == 1
    assert len(set(sweep["with_bias"]["top1"])) > 1  # the bias makes the scale matter
    # each point of the biased curve is the accuracy of W (s f) + b, computed here in numpy
    w, b = head.weight.numpy(), head.bias.numpy()  # type: ignore[union-attr]
    for s, top1 in zip(sweep["scales"], sweep["with_bias"]["top1"]):
        pred = ((s * f.double().numpy()) @ w.T + b).argmax(1)
        assert top1 == pytest.approx(100.0 * (pred == y.numpy()).mean())


def test_scale_sweep_of_lws_and_cosine_heads() -> None:
    lws = LWSHead(3, 4)
    with torch.no_grad():
        lws.scales.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0]))
    f = torch.randn(20, 3)
    head = A.AnalysisHead(lws)
    assert torch.allclose(head.logits(f), lws(f).double(), atol=1e-5)
    assert torch.allclose(head.logits(f, 1.7), lws(1.7 * f).double(), atol=1e-5)
    cosine = A.AnalysisHead(CosineHead(3, 4))
    assert not cosine.is_affine
    assert "normalises the features" in A.scale_sweep(cosine, f, torch.zeros(20, dtype=torch.long),
                                                      shot_groups([5, 5, 5, 5]), 4)["skipped"]
    logit, geometric = A.margins(cosine, f, torch.zeros(20, dtype=torch.long))
    assert geometric is None and logit.shape == (20,)


def test_oracle_factor_equals_the_training_time_scaling() -> None:
    torch.manual_seed(2)
    counts = [5, 50, 20, 50]  # ranks 3, 0, 2, 1 (ties by index): rank and index differ
    network = Network(torch.nn.Flatten(), LinearHead(6, 4)).eval()
    with torch.no_grad():
        network.head.fc.bias.copy_(torch.tensor([0.8, -0.3, 0.1, 0.4]))
    images = torch.randn(400, 6)
    labels = torch.randint(0, 4, (400,))
    fcc = FeatureClusterCompression(counts, gamma=0.9, start_epoch=3)
    with torch.no_grad():
        trained_logits, _ = TrainingForward(network)(images, factors=fcc.factors(labels, epoch=3))
    pred = trained_logits.argmax(1)
    groups = shot_groups(counts, many_min=30, few_max=10)
    cfg = load_config(None, ["fcc.enabled=true", "fcc.gamma=0.9", "fcc.start_epoch=3", "train.epochs=4",
                                "train.warmup_epochs=0", "train.milestones=[]"])
    tau, info = head_factors(cfg, counts, epoch=4)
    assert info["active"] and tau.tolist() == pytest.approx([1 + 0.9 - 3 * 0.9 / 4, 1.9, 1 + 0.9 - 2 * 0.9 / 4,
                                                             1 + 0.9 - 0.9 / 4])
    result = A.oracle_factor(A.AnalysisHead(network.head), network.features(images), labels, tau, groups, 4)
    hits = (pred == labels).numpy()
    per_class = [100.0 * hits[labels.numpy() == c].mean() for c in range(4)]
    assert result["oracle"]["per_class"] == pytest.approx(per_class)
    assert result["oracle"]["top1"] == pytest.approx(100.0 * hits.mean())
    plain = (network(images).argmax(1) == labels).numpy()
    assert result["unscaled"]["top1"] == pytest.approx(100.0 * plain.mean())
    assert result["difference"]["top1"] == pytest.approx(100.0 * (hits.mean() - plain.mean()))
    assert result["oracle"]["top1"] != result["unscaled"]["top1"]  # the factor matters on this head


def test_logit_adjustment_by_hand() -> None:
    # W = I, b = 0: the logits are the features. log prior = (log 0.9, log 0.1).
    # val: a class-1 sample (1, 0) is right when t (log 0.9 - log 0.1) > 1, t > 0.455; a class-0 sample
    # (1.5, 0) stays right while t < 1.5 / log 9 = 0.683: both right for t = 0.5 and 0.6, the first is chosen
    head = A.AnalysisHead(linear_head([[1, 0], [0, 1]], [0.0, 0.0]))
    val_f, val_y = torch.tensor([[1.0, 0.0], [1.5, 0.0]]), torch.tensor([1, 0])
    test_f, test_y = torch.tensor([[1.0, 0.1], [0.2, 0.0], [2.0, 0.0]]), torch.tensor([1, 1, 0])
    groups = {"many": [0], "medium": [], "few": [1]}
    la = A.logit_adjustment(head, val_f, val_y, test_f, test_y, [90, 10], groups)
    expected_val = []
    for t in A.ADJUSTMENTS:
        right = [t * math.log(9) > 1, t * math.log(9) < 1.5]
        expected_val.append(50.0 * sum(right))
    assert la["val_top1"] == pytest.approx(expected_val)
    assert la["best_t"] == 0.5
    # test at t = 0.5: shift of class 1 over class 0 = 0.5 * log 9 = 1.0986: (1.0, 0.1) -> class 1 (right),
    # (0.2, 0) -> class 1 (right), (2.0, 0) -> class 0 (right); unadjusted: only the last
    assert la["test"]["top1"] == pytest.approx(100.0)
    assert la["test_unadjusted"]["top1"] == pytest.approx(100.0 / 3)
    assert la["difference"]["few"] == pytest.approx(100.0)


def test_norm_ratio_by_hand() -> None:
    train_f = torch.tensor([[3.0, 0.0], [0.0, 5.0], [1.0, 0.0]])  # class 0 norms 3, 5 (mean 4); class 1: 1
    train_y = torch.tensor([0, 0, 1])
    test_f = torch.tensor([[2.0, 0.0], [0.0, 0.5], [0.0, 1.5]])  # class 0: 2; class 1: 0.5, 1.5 (mean 1)
    test_y = torch.tensor([0, 1, 1])
    groups = {"many": [0], "medium": [], "few": [1]}
    r = A.norm_ratio(train_f, train_y, test_f, test_y, torch.tensor([1.5, 1.25]), groups)
    assert r["per_class"] == pytest.approx([1.5 * 4 / 2, 1.25 * 1 / 1])
    assert r["mean"] == pytest.approx((3.0 + 1.25) / 2)
    assert r["by_group"] == {"many": pytest.approx(3.0), "medium": None, "few": pytest.approx(1.25)}
    assert r["train_norm"] == pytest.approx([4.0, 1.0]) and r["test_norm"] == pytest.approx([2.0, 1.0])


def test_a_run_whose_fcc_never_started_has_tau_one() -> None:
    cfg = load_config(None, ["fcc.enabled=true", "fcc.start_epoch=51", "train.epochs=200"])
    tau, info = head_factors(cfg, [50, 30, 10], epoch=20)
    assert tau.tolist() == [1.0, 1.0, 1.0] and info["active"] is False
    assert "fcc.start_epoch 51 was never reached" in info["note"]
    tau, info = head_factors(cfg, [50, 30, 10], epoch="51 (stopped after step 3)")
    assert info["active"] and tau[0].item() == pytest.approx(1.5)
    tau, info = head_factors(load_config(None, []), [50, 30, 10], epoch=200)
    assert tau.tolist() == [1.0, 1.0, 1.0] and info == {"enabled": False, "active": False, "note": info["note"]}
    assert last_trained_epoch(None, 200) == 200


def test_tau_ranks_by_frequency_unless_asked_by_index() -> None:
    counts = [10, 40, 20]
    by_rank, _ = head_factors(load_config(None, ["fcc.enabled=true", "fcc.gamma=0.6"]), counts, 200)
    assert by_rank.tolist() == pytest.approx([1.2, 1.6, 1.4])
    by_index, _ = head_factors(load_config(None, ["fcc.enabled=true", "fcc.gamma=0.6", "fcc.rank_by=index"]),
                               counts, 200)
    assert by_index.tolist() == pytest.approx([1.6, 1.4, 1.2])
    rounded, _ = head_factors(load_config(None, ["fcc.enabled=true", "fcc.gamma=0.5", "fcc.round_decimals=1"]),
                              [3, 2, 1], 200)
    assert rounded.tolist() == pytest.approx([1.5, 1.3, 1.2])  # 1.5, 1.333.., 1.1666.. to one decimal
