"""Small-sample statistics for seed-to-seed comparisons: mean, standard deviation, Student-t intervals.

Long-tail results differ by a point or more between seeds, so a gain is only evidence when it is larger
than that noise. Reports therefore give mean +- sample standard deviation over seeds and, for paired
differences ("with FCC minus without", matched by seed), a two-sided t-interval with n - 1 degrees of
freedom. scipy is not a dependency: the t quantile is found by inverting the t distribution function,
which is a regularised incomplete beta function, evaluated here by its continued fraction.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


def _clean(values: Iterable[float | None]) -> list[float]:
    """The present, finite values (a group's few-shot accuracy is None when it has no few classes)."""
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def mean(values: Iterable[float | None]) -> float | None:
    xs = _clean(values)
    return math.fsum(xs) / len(xs) if xs else None


def sample_sd(values: Iterable[float | None]) -> float | None:
    """Standard deviation with n - 1 in the denominator (None for fewer than two values)."""
    xs = _clean(values)
    if len(xs) < 2:
        return None
    m = math.fsum(xs) / len(xs)
    return math.sqrt(math.fsum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (modified Lentz), converging fast for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    result = d
    for m in range(1, 10_000):
        # even step: m (b - m) x / ((a + 2m - 1)(a + 2m))
        num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        d = 1.0 + num * d
        c = 1.0 + num / c
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = c if abs(c) > tiny else tiny
        result *= d * c
        # odd step: -(a + m)(a + b + m) x / ((a + 2m)(a + 2m + 1))
        num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1.0 + num * d
        c = 1.0 + num / c
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = c if abs(c) > tiny else tiny
        step = d * c
        result *= step
        if abs(step - 1.0) < 1e-15:
            return result
    raise ArithmeticError(f"incomplete beta continued fraction did not converge (a={a}, b={b}, x={x})")


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b) = B(x; a, b) / B(a, b) for a, b > 0 and 0 <= x <= 1."""
    if a <= 0 or b <= 0:
        raise ValueError(f"incomplete beta needs a, b > 0, got a={a}, b={b}")
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"incomplete beta needs 0 <= x <= 1, got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = a * math.log(x) + b * math.log1p(-x) - (math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    # I_x(a, b) = 1 - I_{1-x}(b, a): the fraction converges quickly on the other side
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2 for t >= 0."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be > 0, got {df}")
    if t == 0:
        return 0.5
    tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The t with P(T <= t) = p, by bisection on t_cdf (monotone, so the bracket always holds)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"a quantile needs 0 < p < 1, got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, hi * 2.0
        if hi > 1e300:
            raise ArithmeticError(f"t quantile out of range (p={p}, df={df})")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """Mean of ``n`` values with their sample sd and a two-sided t-interval (low/high None when n < 2)."""

    n: int
    mean: float | None
    sd: float | None
    low: float | None
    high: float | None
    level: float = 0.95

    def as_dict(self) -> dict[str, float | int | None]:
        return {"n": self.n, "mean": self.mean, "sd": self.sd, "ci_low": self.low, "ci_high": self.high,
                "level": self.level}


def t_interval(values: Iterable[float | None], level: float = 0.95) -> Interval:
    """mean +- t_{(1+level)/2, n-1} * sd / sqrt(n): the interval for the mean of a normal sample."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    xs = _clean(values)
    m, sd = mean(xs), sample_sd(xs)
    if m is None or sd is None:
        return Interval(len(xs), m, sd, None, None, level)
    half = t_quantile((1.0 + level) / 2.0, len(xs) - 1) * sd / math.sqrt(len(xs))
    return Interval(len(xs), m, sd, m - half, m + half, level)
