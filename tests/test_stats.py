"""The statistics of online evaluation against scipy and the literature, on fixed data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from llmops.errors import EvalError, StatsError
from llmops.stats import (
    Proportion,
    diff_interval,
    prob_better,
    two_proportion_test,
    wilson_interval,
)

WILSON_CASES = [(0, 1), (1, 1), (0, 10), (10, 10), (3, 10), (5, 10), (81, 263), (1, 1000),
                (999, 1000), (50, 100), (4, 7)]


@pytest.mark.parametrize(("k", "n"), WILSON_CASES)
@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
def test_wilson_matches_scipy(k: int, n: int, confidence: float) -> None:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    low, high = wilson_interval(k, n, confidence)
    assert low == pytest.approx(float(ci.low), abs=1e-12)
    assert high == pytest.approx(float(ci.high), abs=1e-12)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_without_trials_is_the_whole_range() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert wilson_interval(0, 0, 0.5) == (0.0, 1.0)


# Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10 (hybrid score):
# (successes_1, n_1, successes_2, n_2) -> interval of p2 - p1, to 4 decimals.
NEWCOMBE = [
    ((48, 80, 56, 70), (0.0524, 0.3339)),  # (a) 56/70 - 48/80 = 0.2
    ((3, 10, 9, 10), (0.1705, 0.8090)),  # (b) 9/10 - 3/10
    ((2, 7, 6, 7), (0.0582, 0.8062)),  # (c) 6/7 - 2/7
    ((0, 29, 5, 56), (-0.0381, 0.1926)),  # (d) 5/56 - 0/29
    ((0, 20, 0, 10), (-0.1611, 0.2775)),  # (e) 0/10 - 0/20
    ((0, 10, 0, 10), (-0.2775, 0.2775)),  # (f) 0/10 - 0/10
    ((0, 20, 10, 10), (0.6791, 1.0000)),  # (g) 10/10 - 0/20
]


@pytest.mark.parametrize(("counts", "expected"), NEWCOMBE)
def test_diff_interval_matches_newcombe(
    counts: tuple[int, int, int, int], expected: tuple[float, float],
) -> None:
    low, high = diff_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


def test_diff_interval_is_antisymmetric_and_handles_empty_arms() -> None:
    low, high = diff_interval(48, 80, 56, 70)
    assert diff_interval(56, 70, 48, 80) == pytest.approx((-high, -low), abs=1e-15)
    assert diff_interval(0, 0, 3, 5) == (-1.0, 1.0)
    assert diff_interval(3, 5, 0, 0) == (-1.0, 1.0)
    narrow = diff_interval(48, 80, 56, 70, confidence=0.5)
    assert low < narrow[0] < 0.2 < narrow[1] < high


TABLES = [(48, 80, 56, 70), (3, 10, 9, 10), (40, 100, 55, 100), (1, 50, 0, 3), (190, 200, 185, 200),
          (7, 9, 2, 11), (500, 1000, 530, 1000), (0, 5, 5, 5)]


@pytest.mark.parametrize("counts", TABLES)
def test_two_proportion_p_value_matches_chi2_without_correction(
    counts: tuple[int, int, int, int],
) -> None:
    s1, n1, s2, n2 = counts
    table = np.array([[s1, n1 - s1], [s2, n2 - s2]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    z, p_value = two_proportion_test(s1, n1, s2, n2)
    assert p_value == pytest.approx(float(p), rel=1e-9, abs=1e-300)
    assert z * z == pytest.approx(float(chi2), rel=1e-9)
    assert math.copysign(1.0, z) == math.copysign(1.0, s2 / n2 - s1 / n1)


@pytest.mark.parametrize("counts", [(0, 0, 3, 5), (3, 5, 0, 0), (0, 0, 0, 0), (5, 5, 7, 7),
                                    (0, 5, 0, 7)])
def test_two_proportion_test_without_evidence_is_neutral(counts: tuple[int, int, int, int]) -> None:
    assert two_proportion_test(*counts) == (0.0, 1.0)


def _prob_better_by_quadrature(
    s1: int, n1: int, s2: int, n2: int, prior: tuple[int, int] = (1, 1),
) -> float:
    """P(p2 > p1) = integral of pdf_2(x) * cdf_1(x) over [0, 1]."""
    a, b = prior
    d1, d2 = stats.beta(s1 + a, n1 - s1 + b), stats.beta(s2 + a, n2 - s2 + b)
    value, _ = integrate.quad(lambda x: d2.pdf(x) * d1.cdf(x), 0.0, 1.0,
                              points=[d1.mean(), d2.mean()], limit=500,
                              epsabs=1e-13, epsrel=1e-12)
    return float(value)


PROB_CASES = [
    (0, 0, 0, 0), (1, 1, 0, 1), (0, 1, 1, 1), (3, 10, 7, 10), (0, 5, 5, 5), (5, 5, 0, 1),
    (50, 100, 60, 100), (2, 40, 9, 40), (190, 200, 185, 200), (0, 30, 0, 3), (1, 200, 12, 15),
    (900, 1000, 880, 1000), (4, 5, 6, 9), (0, 0, 10, 12), (33, 34, 1, 2),
]


@pytest.mark.parametrize("counts", PROB_CASES)
def test_prob_better_matches_numerical_integration(counts: tuple[int, int, int, int]) -> None:
    assert prob_better(*counts) == pytest.approx(_prob_better_by_quadrature(*counts), abs=1e-6)


@pytest.mark.parametrize("prior", [(2, 3), (1, 5), (10, 10)])
def test_prob_better_with_other_priors(prior: tuple[int, int]) -> None:
    for counts in [(3, 10, 7, 10), (0, 2, 1, 1), (12, 40, 4, 9)]:
        expected = _prob_better_by_quadrature(*counts, prior=prior)
        assert prob_better(*counts, prior=prior) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("counts", PROB_CASES)
def test_prob_better_is_complementary(counts: tuple[int, int, int, int]) -> None:
    s1, n1, s2, n2 = counts
    assert prob_better(s1, n1, s2, n2) + prob_better(s2, n2, s1, n1) == pytest.approx(1.0, abs=1e-12)


def test_prob_better_without_data_is_a_coin_toss_and_handles_large_counts() -> None:
    assert prob_better(0, 0, 0, 0) == pytest.approx(0.5, abs=1e-15)
    assert prob_better(7, 10, 7, 10) == pytest.approx(0.5, abs=1e-12)
    big = prob_better(60_000, 100_000, 60_500, 100_000)  # 60.5k terms would be slow in a loop
    assert 0.98 < big < 1.0


def test_proportion() -> None:
    p = Proportion(3, 10)
    assert p.rate == 0.3
    assert p.interval() == wilson_interval(3, 10)
    assert p.interval(0.9) == wilson_interval(3, 10, 0.9)
    assert math.isnan(Proportion(0, 0).rate)
    assert Proportion(0, 0).interval() == (0.0, 1.0)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: wilson_interval(4, 3), "successes must lie in 0..n, not 4 of 3"),
        (lambda: wilson_interval(-1, 3), "successes must lie in 0..n"),
        (lambda: wilson_interval(1.5, 3), "whole numbers"),  # type: ignore[arg-type]
        (lambda: wilson_interval(1, 3, confidence=1.0), "confidence must lie strictly between"),
        (lambda: diff_interval(1, 2, 3, 2), "second arm: successes must lie in 0..n"),
        (lambda: two_proportion_test(5, 4, 1, 2), "first arm: "),
        (lambda: prob_better(1, 2, 1, 2, prior=(0.5, 0.5)), "prior must be two positive whole"),
        (lambda: Proportion(3, 2), "successes must lie in 0..n"),
    ],
)
def test_bad_counts_are_refused_with_a_message(call: object, match: str) -> None:
    with pytest.raises(StatsError, match=match) as info:
        call()  # type: ignore[operator]
    assert isinstance(info.value, EvalError) and isinstance(info.value, ValueError)
