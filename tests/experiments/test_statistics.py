"""Small-sample statistics against printed t tables, closed forms and hand-worked intervals."""

from __future__ import annotations

import math

import pytest

from fcc_lt.experiments.statistics import mean, regularized_incomplete_beta, sample_sd, t_cdf, t_interval, t_quantile

# two-sided 95% (p = 0.975) and other quantiles of Student's t, from standard printed tables
T_TABLE = [
    (0.975, 1, 12.706205), (0.975, 2, 4.302653), (0.975, 3, 3.182446), (0.975, 4, 2.776445),
    (0.975, 5, 2.570582), (0.975, 9, 2.262157), (0.975, 10, 2.228139), (0.975, 30, 2.042272),
    (0.975, 100, 1.983972), (0.95, 1, 6.313752), (0.95, 5, 2.015048), (0.995, 5, 4.032143),
    (0.9995, 1, 636.619249), (0.90, 20, 1.325341),
]


@pytest.mark.parametrize(("p", "df", "expected"), T_TABLE)
def test_t_quantile_matches_tables(p: float, df: int, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=2e-6)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=2e-6)  # symmetric


def test_t_quantile_tends_to_the_normal_one() -> None:
    assert t_quantile(0.975, 1e7) == pytest.approx(1.959964, abs=1e-5)
    assert t_quantile(0.5, 3) == 0.0


def test_t_cdf_closed_forms() -> None:
    # df = 1 is the Cauchy distribution, df = 2 has F(t) = 1/2 + t / (2 sqrt(2 + t^2))
    for t in (-30.0, -2.5, -0.3, 0.0, 0.7, 1.0, 4.0, 100.0):
        assert t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi, abs=1e-12)
        assert t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)), abs=1e-12)
    assert t_cdf(t_quantile(0.975, 7.5), 7.5) == pytest.approx(0.975, abs=1e-12)  # non-integer df


def test_incomplete_beta_against_the_binomial_sum() -> None:
    # for integers, I_x(a, b) = P(Binomial(a + b - 1, x) >= a)
    for a, b, x in ((1, 1, 0.3), (2, 3, 0.4), (5, 2, 0.9), (7, 11, 0.2), (30, 40, 0.45), (3, 3, 0.999)):
        n = a + b - 1
        expected = sum(math.comb(n, j) * x ** j * (1 - x) ** (n - j) for j in range(a, n + 1))
        assert regularized_incomplete_beta(a, b, x) == pytest.approx(expected, rel=1e-10, abs=1e-14)
    # the arcsine law: I_x(1/2, 1/2) = (2 / pi) asin(sqrt(x))
    assert regularized_incomplete_beta(0.5, 0.5, 0.3) == pytest.approx(2 / math.pi * math.asin(math.sqrt(0.3)))
    assert regularized_incomplete_beta(2.5, 4.0, 0.0) == 0.0 and regularized_incomplete_beta(2.5, 4.0, 1.0) == 1.0


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError):
        t_quantile(1.0, 3)
    with pytest.raises(ValueError):
        t_cdf(1.0, 0)
    with pytest.raises(ValueError):
        regularized_incomplete_beta(1, 1, 1.5)
    with pytest.raises(ValueError):
        t_interval([1.0, 2.0], level=1.0)


def test_mean_sd_and_interval_by_hand() -> None:
    values = [1.0, 2.0, 3.0]  # mean 2, sd sqrt(((-1)^2 + 0 + 1^2) / 2) = 1
    assert mean(values) == 2.0 and sample_sd(values) == pytest.approx(1.0)
    ci = t_interval(values)
    half = 4.302653 * 1.0 / math.sqrt(3)  # t_{0.975, 2} sd / sqrt(n)
    assert (ci.n, ci.mean, ci.sd) == (3, 2.0, pytest.approx(1.0))
    assert (ci.low, ci.high) == (pytest.approx(2 - half, abs=1e-6), pytest.approx(2 + half, abs=1e-6))
    assert (ci.high - ci.low) / 2 == pytest.approx(half, abs=1e-6)
    # 90% interval of 4 values: mean 5.5, sd sqrt(29/3), t_{0.95, 3} = 2.353363
    ci = t_interval([2.0, 4.0, 7.0, 9.0], level=0.90)
    sd = math.sqrt(((2 - 5.5) ** 2 + (4 - 5.5) ** 2 + (7 - 5.5) ** 2 + (9 - 5.5) ** 2) / 3)
    assert ci.sd == pytest.approx(sd)
    assert ci.high == pytest.approx(5.5 + 2.353363 * sd / 2, abs=1e-5)


def test_missing_values_are_left_out_and_one_value_has_no_interval() -> None:
    assert mean([None, 4.0, float("nan"), 6.0]) == 5.0
    assert sample_sd([3.0]) is None and mean([]) is None
    one = t_interval([None, 71.5])
    assert (one.n, one.mean, one.sd, one.low, one.high) == (1, 71.5, None, None, None)
    assert t_interval([]).as_dict() == {"n": 0, "mean": None, "sd": None, "ci_low": None, "ci_high": None,
                                        "level": 0.95}


def test_a_spread_is_written_with_the_decimals_of_its_mean() -> None:
    """Ratios and margins get four significant digits on the mean and as many decimals on the sd and the interval
    (not '1.005 ± 0.002407' or '0.8 ± 1.36e-16'); accuracies two decimals."""
    from fcc_lt.experiments.report.cells import diff_ci, mean_sd
    from fcc_lt.experiments.statistics import Interval

    assert mean_sd(Interval(n=3, mean=1.005, sd=0.002407, low=None, high=None), "norm_ratio") == "1.005 ± 0.002"
    assert mean_sd(Interval(n=3, mean=0.8, sd=1.36e-16, low=None, high=None), "best_scale") == "0.8000 ± 0.0000"
    assert diff_ci(Interval(n=3, mean=-0.06155, sd=0.01, low=-0.0974, high=-0.02569), "margin") == (
        "-0.06155 [-0.09740, -0.02569]")
    assert mean_sd(Interval(n=3, mean=49.3123, sd=1.234, low=None, high=None), "top1") == "49.31 ± 1.23"
    # a value far outside the usual range keeps four significant digits instead of hundreds of digits
    assert mean_sd(Interval(n=2, mean=1e200, sd=3e199, low=None, high=None), "feature_norm") == "1e+200 ± 3e+199"
    assert mean_sd(Interval(n=2, mean=0.0, sd=0.0, low=None, high=None), "margin") == "0 ± 0"
