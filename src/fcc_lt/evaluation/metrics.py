"""Classification metrics for long-tailed data: top-k, per-class, many/medium/few-shot, confusion.

Counts accumulate on the device with scatter-adds (no host sync per batch) and are summed across ranks
once; every summary number derives from those counts. Accuracies are percentages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from fcc_lt.util.distributed import DistContext, all_reduce_sum
from fcc_lt.util.errors import CheckpointError

# A dense confusion matrix for 8,142 classes would take half a gigabyte; above this it is not kept.
MAX_CONFUSION_CLASSES = 1000


class ClassificationTally:
    """Per-class totals, top-1 and top-5 hits, and (for up to 1000 classes) the confusion matrix."""

    def __init__(self, num_classes: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self.total = torch.zeros(num_classes, dtype=torch.long, device=device)
        self.top1 = torch.zeros(num_classes, dtype=torch.long, device=device)
        self.top5 = torch.zeros(num_classes, dtype=torch.long, device=device)
        self.confusion: Tensor | None = None
        if num_classes <= MAX_CONFUSION_CLASSES:
            self.confusion = torch.zeros(num_classes * num_classes, dtype=torch.long, device=device)
        self.nonfinite = torch.zeros((), dtype=torch.long, device=device)  # samples with a NaN or inf logit

    def update(self, logits: Tensor, labels: Tensor) -> None:
        self.nonfinite += (~torch.isfinite(logits)).any(dim=1).sum()  # stays on the device: read once at the end
        k = min(5, self.num_classes)
        topk = logits.topk(k, dim=1).indices
        pred = topk[:, 0]
        ones = torch.ones_like(labels)
        self.total.scatter_add_(0, labels, ones)
        self.top1.scatter_add_(0, labels, (pred == labels).long())
        self.top5.scatter_add_(0, labels, (topk == labels[:, None]).any(dim=1).long())
        if self.confusion is not None:
            self.confusion.scatter_add_(0, labels * self.num_classes + pred, ones)

    def all_reduce(self, ctx: DistContext) -> ClassificationTally:
        for t in (self.total, self.top1, self.top5, self.confusion, self.nonfinite):
            if t is not None:
                all_reduce_sum(t, ctx)
        return self

    def check_finite(self, hint: str = "") -> None:
        """Raise if any sample had a NaN or infinite logit: its 'prediction' (topk of NaN) is meaningless and
        every number derived from the tally with it. One host read, after the pass."""
        bad = int(self.nonfinite)
        if bad:
            raise NonFiniteOutputs(f"{bad} of {int(self.total.sum())} images gave non-finite logits (NaN or inf), "
                                   f"so no accuracy is reported{hint}")

    def confusion_matrix(self) -> Tensor | None:
        """(C, C) counts, rows = true class, columns = predicted class."""
        if self.confusion is None:
            return None
        return self.confusion.view(self.num_classes, self.num_classes).cpu()


def _pct(num: float, den: float) -> float | None:
    return 100.0 * num / den if den else None


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def shot_groups(train_counts: Sequence[int], many_min: int = 101, few_max: int = 19) -> dict[str, list[int]]:
    """Classes by training images: many (>= many_min, i.e. > 100), few (<= few_max, i.e. < 20), medium."""
    groups: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for c, n in enumerate(train_counts):
        key = "many" if n >= many_min else "few" if n <= few_max else "medium"
        groups[key].append(c)
    return groups


def summarize(tally: ClassificationTally, train_counts: Sequence[int], many_min: int = 101,
              few_max: int = 19) -> dict[str, Any]:
    """top1/top5 over samples, per-class accuracy, and the mean per-class accuracy of each shot group.

    A group with no classes (e.g. 'few' on CIFAR-10-LT) is reported as None rather than 0, and so is top-5
    with fewer than 6 classes.
    """
    total = tally.total.cpu().tolist()
    top1 = tally.top1.cpu().tolist()
    top5 = tally.top5.cpu().tolist()
    per_class = [_pct(h, n) for h, n in zip(top1, total)]
    groups = shot_groups(train_counts, many_min, few_max)
    out: dict[str, Any] = {
        "top1": _pct(sum(top1), sum(total)),
        # with 5 classes or fewer every class is among the top five: a top-5 of 100 says nothing
        "top5": _pct(sum(top5), sum(total)) if tally.num_classes > 5 else None,
        "mean_class": _mean(per_class),
        "many": _mean([per_class[c] for c in groups["many"]]),
        "medium": _mean([per_class[c] for c in groups["medium"]]),
        "few": _mean([per_class[c] for c in groups["few"]]),
        "per_class": per_class,
        "num_samples": sum(total),
        "group_sizes": {k: len(v) for k, v in groups.items()},
    }
    for key, value in list(out.items()):
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = None
    return out


class NonFiniteOutputs(CheckpointError):
    """A network whose outputs (logits, features) are not finite: its numbers would be meaningless."""


class FeatureTally:
    """Per-class sums of pooled features (float64), of their squared norms and norms, and counts.

    Enough for each class's centroid, mean norm and spread (root-mean-square distance to its centroid): a
    description of the real, unscaled test features.
    """

    def __init__(self, num_classes: int, dim: int, device: torch.device) -> None:
        self.num_classes = num_classes
        self.sum = torch.zeros(num_classes, dim, dtype=torch.float64, device=device)
        self.sq = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.norm = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.count = torch.zeros(num_classes, dtype=torch.float64, device=device)
        self.nonfinite = torch.zeros((), dtype=torch.long, device=device)  # samples with a NaN or inf feature

    def update(self, features: Tensor, labels: Tensor) -> None:
        self.nonfinite += (~torch.isfinite(features)).any(dim=1).sum()
        f = features.detach().double()
        sq = (f * f).sum(dim=1)
        self.sum.index_add_(0, labels, f)
        self.sq.index_add_(0, labels, sq)
        self.norm.index_add_(0, labels, sq.sqrt())
        self.count.index_add_(0, labels, torch.ones_like(sq))

    def all_reduce(self, ctx: DistContext) -> FeatureTally:
        for t in (self.sum, self.sq, self.norm, self.count, self.nonfinite):
            all_reduce_sum(t, ctx)
        return self

    def check_finite(self, hint: str = "") -> None:
        """Raise if any sample's pooled features held a NaN or inf (one host read, after the pass)."""
        bad = int(self.nonfinite)
        if bad:
            raise NonFiniteOutputs(f"{bad} of {int(self.count.sum())} images gave non-finite pooled features (NaN "
                                   f"or inf), so no feature statistics are reported{hint}")


def nearest_centre_distance(centroid: Tensor, present: Tensor, chunk: int = 1024) -> Tensor:
    """Per class, the distance from its centre to the nearest centre of another class with samples.

    inf where fewer than two classes have samples (and for absent classes). Computed in row chunks, so
    8,142 iNaturalist classes never need the full distance matrix at once.
    """
    num = centroid.shape[0]
    out = torch.full((num,), math.inf, dtype=torch.float64)
    others = centroid[present]
    index = torch.nonzero(present).flatten()
    if others.shape[0] < 2:
        return out
    for lo in range(0, num, chunk):
        rows = torch.arange(lo, min(lo + chunk, num))
        dist = torch.cdist(centroid[rows], others)  # (rows, present classes)
        dist[rows[:, None] == index[None, :]] = math.inf  # a class is not its own neighbour
        out[rows] = dist.min(dim=1).values
    out[~present] = math.inf
    return out


def feature_summary(tally: FeatureTally, train_counts: Sequence[int], many_min: int = 101,
                    few_max: int = 19) -> dict[str, Any]:
    """Cluster statistics of the features: per class and averaged over classes (and shot groups).

    spread_c = sqrt(E||f - mu_c||^2) for class c's features f and centroid mu_c; separation_c =
    ||mu_c - mean of the centroids||; compactness = mean spread / mean separation (lower: tighter clusters
    for the spacing of their centres). nearest_distance_c = the distance from mu_c to the nearest other
    class centre, and spread_ratio_c = spread_c / nearest_distance_c: how far a class's features scatter
    compared with the room before the next class centre. Both ratios are descriptive and scale-free:
    multiplying every feature by one number leaves them unchanged, so they cannot see what FCC's paper
    claims (real test features smaller than the tau-enlarged ones the head was trained on, and so further
    inside its boundaries); `fcc analyze` (``fcc_lt.evaluation.analyses``) measures that. Classes without
    samples are None (and so is a ratio without a neighbour).
    """
    count = tally.count.cpu()
    present = count > 0
    n = count.clamp(min=1)
    centroid = tally.sum.cpu() / n[:, None]
    variance = (tally.sq.cpu() / n - (centroid * centroid).sum(dim=1)).clamp(min=0)
    spread = variance.sqrt()
    mean_norm = tally.norm.cpu() / n
    middle = centroid[present].mean(dim=0) if bool(present.any()) else torch.zeros(centroid.shape[1])
    separation = (centroid - middle).norm(dim=1)
    nearest = nearest_centre_distance(centroid, present)

    def per_class(values: Tensor) -> list[float | None]:
        return [float(v) if ok and math.isfinite(v) else None for v, ok in zip(values.tolist(), present.tolist())]

    spreads = per_class(spread)
    nearest_list = per_class(nearest)
    ratios = [s / d if s is not None and d else None for s, d in zip(spreads, nearest_list)]
    norms = per_class(mean_norm)
    groups = shot_groups(train_counts, many_min, few_max)
    mean_spread = _mean(spreads)
    mean_separation = _mean(per_class(separation))

    def by_group(values: list[float | None]) -> dict[str, float | None]:
        return {k: _mean([values[c] for c in v]) for k, v in groups.items()}

    return {
        "mean_norm": float(tally.norm.sum() / tally.count.sum()) if float(tally.count.sum()) else None,
        "within_class_spread": mean_spread,
        "centroid_separation": mean_separation,
        "compactness": mean_spread / mean_separation if mean_spread is not None and mean_separation else None,
        "spread_by_group": by_group(spreads),
        "mean_nearest_distance": _mean(nearest_list),
        "mean_spread_ratio": _mean(ratios),
        "nearest_distance_by_group": by_group(nearest_list),
        "spread_ratio_by_group": by_group(ratios),
        "norm_by_group": by_group(norms),
        "train_counts": [int(c) for c in train_counts],
        "per_class": {"count": [int(c) for c in count.tolist()], "mean_norm": norms,
                      "spread": spreads, "separation": per_class(separation),
                      "nearest_distance": nearest_list, "spread_ratio": ratios},
    }
