"""The analyses that tell FCC's two readings apart, as pure functions of pooled features and a trained head.

FCC trains the head on features multiplied by their class's factor tau_y and evaluates it on the unscaled
features. Two readings explain the same accuracy gains:

- compression: the real test features sit in denser clusters relative to the decision boundaries
  (larger margins, fewer test features across a boundary), i.e. the gain lives in the features;
- label-dependent temperature: for a linear head the training logits are tau_y * (W f) + b, which is
  cross-entropy with logits sharpened per label; a re-balancing of the classifier, like logit adjustment.

Each function measures one quantity the readings predict differently (docs/analyses.md): norm ratios,
margins (in logits and as distances to the pairwise boundary), accuracy when every test feature is
multiplied by a common s (with the head's bias and without it: with b = 0 the argmax cannot depend on s),
accuracy when each test feature is multiplied by its own class's tau (the oracle factor), and post-hoc logit
adjustment chosen on a validation split. Everything is float64 on the CPU, in row chunks, so that 8,142
classes never need a whole (N, C) logit matrix at once. Accuracies are percentages.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

# The common feature scales of the scale sweep: 0.5, 0.6, ..., 2.0 (1.0 is the unscaled evaluation; FCC's
# largest factor at gamma 0.5 is 1.5).
SCALES: tuple[float, ...] = tuple(round(0.5 + 0.1 * i, 10) for i in range(16))
# The strengths t of logit adjustment (logits - t * log prior) tried on the validation split: 0, 0.1, ..., 3.
ADJUSTMENTS: tuple[float, ...] = tuple(round(0.1 * i, 10) for i in range(31))
# The percentiles kept of each margin distribution (for the report's distribution plots).
PERCENTILES: tuple[int, ...] = tuple(range(0, 101, 2))
CHUNK = 4096  # rows of features turned into logits at a time
GROUPS = ("many", "medium", "few")
ACCURACY_KEYS = ("top1", "mean_class", "many", "medium", "few")


class AnalysisHead:
    """The trained classifier as the analyses use it: its affine form (W, b) in float64 when it has one.

    Linear and LWS heads are affine in the features (``affine()``: logits = f W^T + b). Heads without that
    form (the cosine head normalises the features) give logits through their forward only; margins in
    feature units and the scale sweep are then not defined and are reported as skipped.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.name = type(module).__name__
        self.scale_invariant = bool(getattr(module, "scale_invariant", False))
        affine = getattr(module, "affine", None)
        self.weight: Tensor | None = None
        self.bias: Tensor | None = None
        if affine is not None:
            w, b = affine()
            self.weight, self.bias = w.detach().double().cpu(), b.detach().double().cpu()

    @property
    def is_affine(self) -> bool:
        return self.weight is not None

    @torch.no_grad()
    def logits(self, features: Tensor, scale: Tensor | float = 1.0, bias: bool = True) -> Tensor:
        """(N, C) float64 logits of ``features`` (N, D) multiplied by ``scale`` (a number or (N,) per row)."""
        s = scale[:, None].double() if isinstance(scale, Tensor) else float(scale)
        if self.weight is not None and self.bias is not None:
            z = (features.double() @ self.weight.T) * s
            return z + self.bias if bias else z
        if not bias:
            raise ValueError(f"the {self.name} head has no affine form; its bias cannot be set aside")
        scaled = features.float() * (s.float() if isinstance(s, Tensor) else s)
        param = next(self.module.parameters(), None)
        if param is not None:
            scaled = scaled.to(param.device)
        return self.module(scaled).double().cpu()


def chunks(n: int, size: int = CHUNK) -> list[slice]:
    return [slice(lo, min(lo + size, n)) for lo in range(0, n, size)]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None and math.isfinite(v)]
    return math.fsum(present) / len(present) if present else None


def accuracy(pred: Tensor, labels: Tensor, groups: dict[str, list[int]], num_classes: int) -> dict[str, Any]:
    """top1 over samples, per-class accuracy, its mean, and the mean per-class accuracy of each shot group."""
    total = torch.bincount(labels, minlength=num_classes)
    hits = torch.bincount(labels[pred == labels], minlength=num_classes)
    per_class = [100.0 * h / t if t else None for h, t in zip(hits.tolist(), total.tolist())]
    n = int(total.sum())
    out: dict[str, Any] = {"top1": 100.0 * int(hits.sum()) / n if n else None, "mean_class": _mean(per_class)}
    for g in GROUPS:
        out[g] = _mean([per_class[c] for c in groups[g]])
    out["per_class"] = per_class
    return out


def _brief(acc: dict[str, Any]) -> dict[str, Any]:
    return {k: acc[k] for k in ACCURACY_KEYS}


def _difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float | None]:
    """a - b for each summary accuracy (None where either is None)."""
    return {k: (a[k] - b[k] if a[k] is not None and b[k] is not None else None) for k in ACCURACY_KEYS}


def predictions(head: AnalysisHead, features: Tensor, scale: Tensor | float = 1.0, bias: bool = True) -> Tensor:
    out = torch.empty(features.shape[0], dtype=torch.long)
    for part in chunks(features.shape[0]):
        s = scale[part] if isinstance(scale, Tensor) else scale
        out[part] = head.logits(features[part], s, bias).argmax(dim=1)
    return out


# -- 1. norm ratio ---------------------------------------------------------------------------------------------

def class_mean_norms(features: Tensor, labels: Tensor, num_classes: int) -> list[float | None]:
    """Per class, the mean Euclidean norm of its features (None for a class without samples)."""
    norms = features.double().norm(dim=1)
    total = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, labels, norms)
    count = torch.bincount(labels, minlength=num_classes)
    return [float(s) / int(n) if n else None for s, n in zip(total.tolist(), count.tolist())]


def norm_ratio(train_features: Tensor, train_labels: Tensor, test_features: Tensor, test_labels: Tensor,
               tau: Tensor, groups: dict[str, list[int]]) -> dict[str, Any]:
    """Per class: tau_c * mean training-feature norm / mean test-feature norm.

    The numerator is the norm of what the head saw in training (the training images' features, taken
    without augmentation in eval mode, times the class's factor); the denominator what it sees at test time.
    """
    c = int(tau.numel())
    train = class_mean_norms(train_features, train_labels, c)
    test = class_mean_norms(test_features, test_labels, c)
    taus = [float(t) for t in tau.double().tolist()]
    ratio = [t * a / b if a is not None and b else None for t, a, b in zip(taus, train, test)]
    return {"mean": _mean(ratio), "by_group": {g: _mean([ratio[k] for k in groups[g]]) for g in GROUPS},
            "per_class": ratio, "train_norm": train, "test_norm": test, "tau": taus}


# -- 2. margins ------------------------------------------------------------------------------------------------

def margins(head: AnalysisHead, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor | None]:
    """(logit margin, geometric margin) per sample, float64.

    logit margin = z_y - max_{c != y} z_c; geometric margin = that / ||w_y - w_c|| for the competing class
    c = argmax_{c != y} z_c, the signed distance of f to the boundary between y and c (bias included);
    None for heads without an affine form, NaN where w_y = w_c (no boundary).
    """
    n = features.shape[0]
    logit = torch.empty(n, dtype=torch.float64)
    geometric = torch.empty(n, dtype=torch.float64) if head.is_affine else None
    for part in chunks(n):
        y = labels[part]
        z = head.logits(features[part])
        true = z.gather(1, y[:, None]).squeeze(1)
        z.scatter_(1, y[:, None], -math.inf)
        best, rival = z.max(dim=1)
        logit[part] = true - best
        if geometric is not None and head.weight is not None:
            dist = (head.weight[y] - head.weight[rival]).norm(dim=1)
            geometric[part] = torch.where(dist > 0, (true - best) / dist.clamp_min(1e-300),
                                          torch.full_like(dist, math.nan))
    return logit, geometric


def quantile(sorted_values: Tensor, q: float) -> float:
    """The q-quantile (0 <= q <= 1) of ascending values, interpolated linearly between order statistics."""
    n = sorted_values.numel()
    pos = q * (n - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    a, b = float(sorted_values[lo]), float(sorted_values[hi])
    return a + (b - a) * (pos - lo)


def distribution(values: Tensor) -> dict[str, Any]:
    """n, median, 10th percentile and the percentage below zero of the defined (non-NaN) values."""
    v = values[~values.isnan()]
    if v.numel() == 0:
        return {"n": 0, "median": None, "p10": None, "pct_negative": None}
    s = v.sort().values
    return {"n": int(s.numel()), "median": quantile(s, 0.5), "p10": quantile(s, 0.1),
            "pct_negative": 100.0 * int((s < 0).sum()) / s.numel()}


def margin_summary(values: Tensor, labels: Tensor, groups: dict[str, list[int]], num_classes: int
                   ) -> dict[str, Any]:
    """Distribution of a margin over all test samples, over each shot group's samples, per class, and the
    percentiles of each (for plots)."""
    member = {g: torch.zeros(num_classes, dtype=torch.bool) for g in GROUPS}
    for g in GROUPS:
        member[g][groups[g]] = True
    selections = {"all": torch.ones_like(labels, dtype=torch.bool), **{g: member[g][labels] for g in GROUPS}}
    out: dict[str, Any] = {key: distribution(values[sel]) for key, sel in selections.items()}
    per_class = [distribution(values[labels == c]) for c in range(num_classes)]
    out["per_class"] = {k: [d[k] for d in per_class] for k in ("median", "p10", "pct_negative")}
    percentiles: dict[str, list[float] | None] = {}
    for key, sel in selections.items():
        v = values[sel]
        v = v[~v.isnan()].sort().values
        percentiles[key] = [quantile(v, p / 100) for p in PERCENTILES] if v.numel() else None
    out["percentiles"] = {"at": list(PERCENTILES), **percentiles}
    undefined = int(values.isnan().sum())
    if undefined:
        out["undefined"] = undefined
    return out


# -- 3. scale sweep --------------------------------------------------------------------------------------------

def scale_sweep(head: AnalysisHead, features: Tensor, labels: Tensor, groups: dict[str, list[int]],
                num_classes: int, scales: Sequence[float] = SCALES) -> dict[str, Any]:
    """Accuracy with every test feature multiplied by s, with the head's bias and with b = 0.

    With b = 0 the logits are s * (W f), whose argmax cannot depend on s > 0: the sweep checks that its
    zero-bias predictions are the same at every s (``zero_bias_invariant``) and raises if not. With the bias,
    s moves every feature towards (s < 1) or away from (s > 1) the origin, where the bias alone decides.
    """
    if not head.is_affine:
        why = ("normalises the features, so no common scale can change its logits" if head.scale_invariant
               else "has no affine form (logits = f W^T + b)")
        return {"skipped": f"the {head.name} head {why}"}
    scales = [float(s) for s in scales]
    if not scales or min(scales) <= 0:
        raise ValueError("scale sweep: scales must be positive")
    n = features.shape[0]
    with_bias = torch.empty(len(scales), n, dtype=torch.long)
    zero_bias = torch.empty(len(scales), n, dtype=torch.long)
    assert head.weight is not None and head.bias is not None
    for part in chunks(n):
        base = features[part].double() @ head.weight.T  # W f, computed once for every s
        for i, s in enumerate(scales):
            with_bias[i, part] = (base * s + head.bias).argmax(dim=1)
            zero_bias[i, part] = (base * s).argmax(dim=1)
    changed = int((zero_bias != zero_bias[:1]).sum())
    if changed:
        raise RuntimeError(f"scale sweep: with the bias set to zero, {changed} predictions changed with the scale; "
                           "the logits are not s * W f (an fcc bug)")

    def curves(preds: Tensor) -> dict[str, list[float | None]]:
        accs = [accuracy(p, labels, groups, num_classes) for p in preds]
        return {k: [a[k] for a in accs] for k in ACCURACY_KEYS}

    biased = curves(with_bias)
    top1 = [v if v is not None else -1.0 for v in biased["top1"]]
    best = max(range(len(scales)), key=lambda i: (top1[i], -abs(scales[i] - 1.0)))
    return {"scales": scales, "with_bias": biased, "zero_bias": curves(zero_bias), "zero_bias_invariant": True,
            "best_scale": scales[best], "bias_norm": float(head.bias.norm())}


# -- 4. oracle factor ------------------------------------------------------------------------------------------

def oracle_factor(head: AnalysisHead, features: Tensor, labels: Tensor, tau: Tensor, groups: dict[str, list[int]],
                  num_classes: int) -> dict[str, Any]:
    """Accuracy with each test feature multiplied by its true class's tau (the cloud the head was trained on),
    against the unscaled features. Not a classifier (it uses the label); it shows how much of the head's
    behaviour depends on seeing tau-enlarged features."""
    unscaled = accuracy(predictions(head, features), labels, groups, num_classes)
    factor = tau.double()[labels]
    oracle = accuracy(predictions(head, features, factor), labels, groups, num_classes)
    return {"unscaled": unscaled, "oracle": oracle, "difference": _difference(oracle, unscaled)}


# -- 5. logit adjustment ---------------------------------------------------------------------------------------

def log_prior(train_counts: Sequence[int]) -> Tensor:
    counts = torch.as_tensor(list(train_counts), dtype=torch.float64)
    if bool((counts <= 0).any()):
        raise ValueError("logit adjustment: every class needs training images (log prior of an empty class)")
    return (counts / counts.sum()).log()


def adjusted_predictions(head: AnalysisHead, features: Tensor, prior: Tensor, strengths: Sequence[float]) -> Tensor:
    """(len(strengths), N) argmax of logits - t * log prior for every t, from one set of logits."""
    out = torch.empty(len(strengths), features.shape[0], dtype=torch.long)
    for part in chunks(features.shape[0]):
        z = head.logits(features[part])
        for i, t in enumerate(strengths):
            out[i, part] = (z - t * prior).argmax(dim=1)
    return out


def logit_adjustment(head: AnalysisHead, val_features: Tensor, val_labels: Tensor, test_features: Tensor,
                     test_labels: Tensor, train_counts: Sequence[int], groups: dict[str, list[int]],
                     strengths: Sequence[float] = ADJUSTMENTS) -> dict[str, Any]:
    """Post-hoc logit adjustment (Menon et al. 2021): logits - t * log(prior), prior = the protocol's training
    frequencies, t chosen by top-1 on the validation split (the smallest t on ties), reported on the test split
    beside the unadjusted logits (t = 0)."""
    strengths = [float(t) for t in strengths]
    prior = log_prior(train_counts)
    c = len(train_counts)
    val_acc = [accuracy(p, val_labels, groups, c) for p in adjusted_predictions(head, val_features, prior, strengths)]
    val_top1 = [a["top1"] for a in val_acc]
    best = max(range(len(strengths)), key=lambda i: (val_top1[i] if val_top1[i] is not None else -1.0, -i))
    best_t = strengths[best]
    test_preds = adjusted_predictions(head, test_features, prior, [best_t, 0.0])
    test = accuracy(test_preds[0], test_labels, groups, c)
    plain = accuracy(test_preds[1], test_labels, groups, c)
    return {"selected_on": "val", "criterion": "top1", "strengths": strengths, "val_top1": val_top1,
            "val_mean_class": [a["mean_class"] for a in val_acc], "best_t": best_t, "test": test,
            "test_unadjusted": _brief(plain), "difference": _difference(test, plain)}
