"""How a report writes its numbers and tables: '71.23 ± 0.45', '+1.23 [+0.40, +2.06]', markdown tables.

Percentages (accuracies, and the analyses' accuracy numbers) get two decimals; every other number (ratios,
margins, norms) four significant digits.
"""

from __future__ import annotations

from collections.abc import Sequence

from fcc_lt.experiments.report.analysis_metrics import PERCENT_METRICS
from fcc_lt.experiments.report.collect import ACCURACY_METRICS
from fcc_lt.experiments.statistics import Interval


def _digits(metric: str) -> str:
    return ".2f" if metric in ACCURACY_METRICS or metric in PERCENT_METRICS else ".4g"


def value_text(v: float | None, metric: str, sign: bool = False) -> str:
    if v is None:
        return "-"
    spec = _digits(metric)
    return f"{v:+{spec}}" if sign else f"{v:{spec}}"


def mean_sd(interval: Interval, metric: str) -> str:
    """'71.23 ± 0.45' (sd over seeds), '71.23' for one run, '-' for none."""
    if interval.mean is None:
        return "-"
    text = value_text(interval.mean, metric)
    return text if interval.sd is None else f"{text} ± {value_text(interval.sd, metric)}"


def diff_ci(interval: Interval, metric: str) -> str:
    """'+1.23 [+0.40, +2.06]' (95% t-interval), '+1.23 (n=1)' without an interval, '-' without pairs."""
    if interval.mean is None:
        return "-"
    text = value_text(interval.mean, metric, sign=True)
    if interval.low is None or interval.high is None:
        return f"{text} (n={interval.n})"
    return f"{text} [{value_text(interval.low, metric, sign=True)}, {value_text(interval.high, metric, sign=True)}]"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines
