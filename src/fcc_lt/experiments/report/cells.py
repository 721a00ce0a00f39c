"""How a report writes its numbers and tables: '71.23 ± 0.45', '+1.23 [+0.40, +2.06]', markdown tables.

Percentages (accuracies, and the analyses' accuracy numbers) get two decimals; every other number (ratios,
margins, norms) four significant digits, and the sd or the interval beside it as many decimals as that mean
(a spread is read against its mean: '1.005 ± 0.002', not '1.005 ± 0.002407').
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fcc_lt.experiments.report.analysis_metrics import PERCENT_METRICS
from fcc_lt.experiments.report.collect import ACCURACY_METRICS
from fcc_lt.experiments.statistics import Interval


def _digits(metric: str) -> str:
    return ".2f" if metric in ACCURACY_METRICS or metric in PERCENT_METRICS else ".4g"


def value_text(v: float | None, metric: str, sign: bool = False, spec: str | None = None) -> str:
    if v is None:
        return "-"
    spec = spec or _digits(metric)
    return f"{v:+{spec}}" if sign else f"{v:{spec}}"


def _shared_spec(mean: float, metric: str) -> str:
    """The format of a mean and its spread: two decimals for percentages, else the decimals that give the mean
    four significant digits (at most 6)."""
    if _digits(metric) == ".2f":
        return ".2f"
    if not 1e-4 <= abs(mean) < 1e5:  # zero, tiny, huge or not finite: fixed decimals would print 0.0000 or 200 digits
        return ".4g"
    return f".{min(6, max(0, 3 - math.floor(math.log10(abs(mean)))))}f"


def mean_sd(interval: Interval, metric: str) -> str:
    """'71.23 ± 0.45' (sd over seeds), '71.23' for one run, '-' for none."""
    if interval.mean is None:
        return "-"
    if interval.sd is None:
        return value_text(interval.mean, metric)
    spec = _shared_spec(interval.mean, metric)
    return f"{value_text(interval.mean, metric, spec=spec)} ± {value_text(interval.sd, metric, spec=spec)}"


def diff_ci(interval: Interval, metric: str) -> str:
    """'+1.23 [+0.40, +2.06]' (95% t-interval), '+1.23 (n=1)' without an interval, '-' without pairs."""
    if interval.mean is None:
        return "-"
    if interval.low is None or interval.high is None:
        return f"{value_text(interval.mean, metric, sign=True)} (n={interval.n})"
    spec = _shared_spec(interval.mean, metric)
    low, high = (value_text(v, metric, sign=True, spec=spec) for v in (interval.low, interval.high))
    return f"{value_text(interval.mean, metric, sign=True, spec=spec)} [{low}, {high}]"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines
