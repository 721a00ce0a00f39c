"""The numbers a report takes from a run's analysis.json (`fcc analyze`), by report name.

Each is one number per run, so groups give their mean and sd over seeds and FCC pairs their paired
difference with an interval, like the accuracies (fcc_lt.experiments.report.compare). The distributions
and curves behind them stay in analysis.json for the figures (fcc_lt.experiments.plots.analyses).
"""

from __future__ import annotations

import math
from typing import Any

GROUPS = ("many", "medium", "few")

# report name -> path of keys in analysis.json
_PATHS: dict[str, tuple[str, ...]] = {
    "norm_ratio": ("norm_ratio", "mean"),
    **{f"norm_ratio_{g}": ("norm_ratio", "by_group", g) for g in GROUPS},
    "margin_median": ("margins", "logit", "all", "median"),
    "margin_p10": ("margins", "logit", "all", "p10"),
    "margin_negative": ("margins", "logit", "all", "pct_negative"),
    **{f"margin_median_{g}": ("margins", "logit", g, "median") for g in GROUPS},
    "geo_margin_median": ("margins", "geometric", "all", "median"),
    "geo_margin_p10": ("margins", "geometric", "all", "p10"),
    **{f"geo_margin_median_{g}": ("margins", "geometric", g, "median") for g in GROUPS},
    "scale_best": ("scale_sweep", "best_scale"),
    "oracle_top1": ("oracle_factor", "oracle", "top1"),
    "oracle_delta_top1": ("oracle_factor", "difference", "top1"),
    **{f"oracle_delta_{g}": ("oracle_factor", "difference", g) for g in GROUPS},
    "la_t": ("logit_adjustment", "best_t"),
    "la_top1": ("logit_adjustment", "test", "top1"),
    **{f"la_{g}": ("logit_adjustment", "test", g) for g in GROUPS},
    "la_delta_top1": ("logit_adjustment", "difference", "top1"),
}
# computed from the scale sweep's top-1 curve (with the bias): at s = 0.5, at s = 2, and best minus s = 1
_SCALE_POINTS = {"scale_top1_half": 0.5, "scale_top1_double": 2.0}
ANALYSIS_METRICS: tuple[str, ...] = (*_PATHS, *_SCALE_POINTS, "scale_top1_gain")
# the ones in percent (accuracies and their differences); the others are ratios, logits or feature units
PERCENT_METRICS = frozenset(m for m in ANALYSIS_METRICS if m.startswith(("oracle_", "la_", "scale_top1"))
                            and m != "la_t") | {"margin_negative"}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _dig(data: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _curve_at(sweep: Any, scale: float) -> float | None:
    if not isinstance(sweep, dict):
        return None
    scales, top1 = sweep.get("scales"), _dig(sweep, ("with_bias", "top1"))
    if not isinstance(scales, list) or not isinstance(top1, list) or len(scales) != len(top1):
        return None
    for s, v in zip(scales, top1):
        if _number(s) is not None and abs(float(s) - scale) < 1e-9:
            return _number(v)
    return None


def analysis_metrics(data: Any) -> dict[str, float | None]:
    """Every report number of an analysis.json (None where it is absent or skipped, e.g. logit adjustment
    without a validation split, or the scale sweep of a cosine head)."""
    out = {name: _number(_dig(data, path)) for name, path in _PATHS.items()}
    sweep = _dig(data, ("scale_sweep",))
    for name, scale in _SCALE_POINTS.items():
        out[name] = _curve_at(sweep, scale)
    best, one = _curve_at(sweep, out["scale_best"] or math.nan), _curve_at(sweep, 1.0)
    out["scale_top1_gain"] = best - one if best is not None and one is not None else None
    return out
