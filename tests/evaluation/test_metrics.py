"""Metrics: counts, top-k, per-class and shot groups against hand-worked values."""

from __future__ import annotations

import pytest
import torch

from fcc_lt.evaluation.metrics import ClassificationTally, shot_groups, summarize
from fcc_lt.util.distributed import DistContext


def test_shot_groups_thresholds() -> None:
    counts = [500, 101, 100, 20, 19, 1]
    assert shot_groups(counts) == {"many": [0, 1], "medium": [2, 3], "few": [4, 5]}


def test_summary_by_hand() -> None:
    # 3 classes; logits rank classes so that predictions are: true 0 -> [0, 0, 1], true 1 -> [1, 2], true 2 -> [0]
    labels = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 0, 1, 1, 2, 0])
    logits = torch.full((6, 3), -1.0)
    logits[torch.arange(6), preds] = 1.0
    tally = ClassificationTally(3, torch.device("cpu"))
    tally.update(logits[:4], labels[:4])  # two batches
    tally.update(logits[4:], labels[4:])
    tally.all_reduce(DistContext())
    out = summarize(tally, train_counts=[200, 50, 10])
    assert out["top1"] == pytest.approx(100 * 3 / 6)
    assert out["top5"] is None  # 3 classes: every class is among the top five, a 100 that says nothing
    assert out["per_class"] == pytest.approx([200 / 3, 50.0, 0.0])
    assert (out["many"], out["medium"], out["few"]) == (pytest.approx(200 / 3), 50.0, 0.0)
    assert out["mean_class"] == pytest.approx((200 / 3 + 50) / 3)
    assert tally.confusion_matrix().tolist() == [[2, 1, 0], [0, 1, 1], [1, 0, 0]]


def test_top5_and_empty_groups() -> None:
    torch.manual_seed(0)
    logits = torch.randn(50, 10)
    labels = torch.randint(0, 10, (50,))
    tally = ClassificationTally(10, torch.device("cpu"))
    tally.update(logits, labels)
    out = summarize(tally, train_counts=[1000] * 10)
    rank = (logits > logits.gather(1, labels[:, None])).sum(1)  # how many classes beat the true one
    assert out["top5"] == pytest.approx(100 * (rank < 5).double().mean().item())
    assert out["few"] is None and out["medium"] is None and out["many"] == pytest.approx(out["mean_class"])


def test_top5_only_with_more_than_five_classes() -> None:
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    for classes, expected in ((5, None), (6, 100 * 5 / 6)):
        logits = torch.zeros(6, classes)
        logits[torch.arange(6), labels] = 1.0  # the true class second ...
        logits[torch.arange(6), (labels + 1) % classes] = 5.0  # ... never first
        logits[5, labels[5]] = -1.0  # the last sample's true class ranks last: outside the top 5 of 6
        tally = ClassificationTally(classes, torch.device("cpu"))
        tally.update(logits, labels)
        out = summarize(tally, train_counts=[10] * classes)
        assert out["top5"] == (pytest.approx(expected) if expected is not None else None)
        assert out["top1"] == 0.0


def test_class_without_test_samples_is_none() -> None:
    tally = ClassificationTally(3, torch.device("cpu"))
    tally.update(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0]))
    out = summarize(tally, [5, 5, 5])
    assert out["per_class"] == [100.0, None, None] and out["few"] == 100.0


def test_feature_summary_against_numpy() -> None:
    import numpy as np

    from fcc_lt.evaluation.metrics import FeatureTally, feature_summary

    rng = np.random.default_rng(0)
    labels = np.array([0] * 5 + [1] * 3 + [3] * 4)  # class 2 has no samples
    feats = rng.normal(size=(12, 6)) + labels[:, None]
    tally = FeatureTally(4, 6, torch.device("cpu"))
    tally.update(torch.tensor(feats[:7], dtype=torch.float32), torch.tensor(labels[:7]))  # two batches
    tally.update(torch.tensor(feats[7:], dtype=torch.float32), torch.tensor(labels[7:]))
    out = feature_summary(tally, train_counts=[500, 50, 30, 5])
    f32 = feats.astype(np.float32).astype(np.float64)
    centroids = {c: f32[labels == c].mean(0) for c in (0, 1, 3)}
    spreads = {c: np.sqrt(((f32[labels == c] - centroids[c]) ** 2).sum(1).mean()) for c in centroids}
    middle = np.mean([centroids[c] for c in (0, 1, 3)], axis=0)
    separation = {c: np.linalg.norm(centroids[c] - middle) for c in centroids}
    spread = out["per_class"]["spread"]
    assert spread[2] is None and out["per_class"]["separation"][2] is None
    assert [spread[c] for c in (0, 1, 3)] == pytest.approx([spreads[c] for c in (0, 1, 3)], rel=1e-9)
    assert out["per_class"]["count"] == [5, 3, 0, 4]
    assert out["per_class"]["mean_norm"][1] == pytest.approx(np.linalg.norm(f32[labels == 1], axis=1).mean())
    assert out["within_class_spread"] == pytest.approx(np.mean(list(spreads.values())))
    assert out["compactness"] == pytest.approx(np.mean(list(spreads.values())) / np.mean(list(separation.values())))
    assert out["mean_norm"] == pytest.approx(np.linalg.norm(f32, axis=1).mean())
    assert out["spread_by_group"] == {"many": pytest.approx(spreads[0]), "medium": pytest.approx(spreads[1]),
                                      "few": pytest.approx(spreads[3])}


def test_feature_summary_nearest_centre_and_spread_ratio() -> None:
    import numpy as np

    from fcc_lt.evaluation.metrics import FeatureTally, feature_summary

    rng = np.random.default_rng(1)
    labels = np.array([0] * 6 + [1] * 4 + [3] * 5 + [4] * 3)  # class 2 has no samples
    feats = rng.normal(size=(18, 5)) * 0.5 + 3.0 * np.eye(5)[labels]
    tally = FeatureTally(5, 5, torch.device("cpu"))
    tally.update(torch.tensor(feats, dtype=torch.float32), torch.tensor(labels))
    out = feature_summary(tally, train_counts=[500, 120, 60, 30, 10])  # many 0,1; medium 2,3; few 4
    f32 = feats.astype(np.float32).astype(np.float64)
    present = (0, 1, 3, 4)
    centre = {c: f32[labels == c].mean(0) for c in present}
    spread = {c: np.sqrt(((f32[labels == c] - centre[c]) ** 2).sum(1).mean()) for c in present}
    nearest = {c: min(np.linalg.norm(centre[c] - centre[o]) for o in present if o != c) for c in present}
    ratio = {c: spread[c] / nearest[c] for c in present}
    per_class = out["per_class"]
    assert per_class["nearest_distance"][2] is None and per_class["spread_ratio"][2] is None
    assert [per_class["nearest_distance"][c] for c in present] == pytest.approx([nearest[c] for c in present])
    assert [per_class["spread_ratio"][c] for c in present] == pytest.approx([ratio[c] for c in present])
    assert out["mean_spread_ratio"] == pytest.approx(np.mean(list(ratio.values())))
    assert out["mean_nearest_distance"] == pytest.approx(np.mean(list(nearest.values())))
    assert out["spread_ratio_by_group"] == {"many": pytest.approx((ratio[0] + ratio[1]) / 2),
                                            "medium": pytest.approx(ratio[3]), "few": pytest.approx(ratio[4])}
    assert out["nearest_distance_by_group"]["few"] == pytest.approx(nearest[4])
    norms = {c: np.linalg.norm(f32[labels == c], axis=1).mean() for c in present}
    assert out["norm_by_group"]["many"] == pytest.approx((norms[0] + norms[1]) / 2)
    assert out["train_counts"] == [500, 120, 60, 30, 10]
    # the existing keys stay
    assert {"mean_norm", "within_class_spread", "centroid_separation", "compactness", "spread_by_group"} <= set(out)


def test_feature_summary_nearest_centre_in_chunks_and_alone() -> None:
    from fcc_lt.evaluation.metrics import FeatureTally, feature_summary, nearest_centre_distance

    centres = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [10.0, 0.0]], dtype=torch.float64)
    present = torch.tensor([True, True, True, True])
    # by hand: 0 -> 2 (1), 1 -> 2 (sqrt(9 + 9)), 2 -> 0 (1), 3 -> 1 (sqrt(49 + 16))
    expected = [1.0, 18 ** 0.5, 1.0, 65 ** 0.5]
    assert nearest_centre_distance(centres, present, chunk=3).tolist() == pytest.approx(expected)
    assert nearest_centre_distance(centres, present, chunk=1).tolist() == pytest.approx(expected)
    # one class with samples: no neighbour, so no distance and no ratio
    tally = FeatureTally(2, 3, torch.device("cpu"))
    tally.update(torch.randn(4, 3), torch.zeros(4, dtype=torch.long))
    out = feature_summary(tally, train_counts=[200, 5])
    assert out["per_class"]["nearest_distance"] == [None, None] and out["mean_spread_ratio"] is None
