"""Statistics of thumbs-up rates: intervals, tests and Bayesian odds for two proportions.

Pure functions of counts. The formulas are written out here (the tests check them
against scipy): Wilson's score interval, Newcombe's hybrid score interval for a
difference, the pooled two-proportion z-test, and the exact probability that one
Beta posterior exceeds another (Evan Miller's closed form).

Example:
    >>> wilson_interval(8, 10)
    (0.4901..., 0.9433...)
    >>> prob_better(40, 100, 55, 100)  # P(rate of arm 2 > rate of arm 1)
    0.98...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy.special import betaln

from llmops.errors import StatsError


def _counts(successes: int, n: int, what: str = "") -> tuple[int, int]:
    try:
        s, t = int(successes), int(n)
    except (TypeError, ValueError):
        raise StatsError(f"{what}counts must be integers, not {successes!r} of {n!r}") from None
    if s != successes or t != n:
        raise StatsError(f"{what}counts must be whole numbers, not {successes!r} of {n!r}")
    if t < 0 or s < 0 or s > t:
        raise StatsError(f"{what}successes must lie in 0..n, not {s} of {t}")
    return s, t


def _z(confidence: float) -> float:
    """The two-sided normal quantile of a confidence level (1.95996... for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise StatsError(f"confidence must lie strictly between 0 and 1, not {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval of a proportion; (0.0, 1.0) when n is 0.

    Example:
        >>> wilson_interval(0, 0)
        (0.0, 1.0)
    """
    s, t = _counts(successes, n)
    z = _z(confidence)
    if t == 0:
        return 0.0, 1.0
    p = s / t
    z2 = z * z
    denom = 1.0 + z2 / t
    center = (p + z2 / (2 * t)) / denom
    half = z / denom * math.sqrt(p * (1.0 - p) / t + z2 / (4.0 * t * t))
    low = 0.0 if s == 0 else max(0.0, center - half)
    high = 1.0 if s == t else min(1.0, center + half)
    return low, high


def diff_interval(
    s1: int, n1: int, s2: int, n2: int, confidence: float = 0.95,
) -> tuple[float, float]:
    """Interval of p2 - p1 by Newcombe's hybrid score method (his method 10, 1998).

    Built from the two Wilson intervals; (-1.0, 1.0) when either arm has no trials.

    Example:
        >>> diff_interval(48, 80, 56, 70)  # Newcombe's example: 0.8 - 0.6
        (0.0524..., 0.3338...)
    """
    s1, n1 = _counts(s1, n1, "first arm: ")
    s2, n2 = _counts(s2, n2, "second arm: ")
    _z(confidence)
    if n1 == 0 or n2 == 0:
        return -1.0, 1.0
    p1, p2 = s1 / n1, s2 / n2
    l1, u1 = wilson_interval(s1, n1, confidence)
    l2, u2 = wilson_interval(s2, n2, confidence)
    d = p2 - p1
    low = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    high = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    return max(-1.0, low), min(1.0, high)


def two_proportion_test(s1: int, n1: int, s2: int, n2: int) -> tuple[float, float]:
    """Two-sided pooled z-test of p1 == p2: (z, p_value), z > 0 when p2 > p1.

    No evidence either way (an arm without trials, or every trial alike) gives (0.0, 1.0).
    """
    s1, n1 = _counts(s1, n1, "first arm: ")
    s2, n2 = _counts(s2, n2, "second arm: ")
    if n1 == 0 or n2 == 0:
        return 0.0, 1.0
    pooled = (s1 + s2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:
        return 0.0, 1.0
    z = (s2 / n2 - s1 / n1) / se
    return z, math.erfc(abs(z) / math.sqrt(2.0))  # erfc keeps precision far in the tail


def prob_better(
    s1: int, n1: int, s2: int, n2: int, prior: tuple[float, float] = (1, 1),
) -> float:
    """P(p2 > p1) under independent Beta(prior) priors, exactly (no sampling).

    Evan Miller's closed form ("Formulas for Bayesian A/B testing"), a sum over one
    arm's integer alpha, in log-beta for stability. The sum runs over the arm with
    fewer terms: P(p2 > p1) = 1 - P(p1 > p2), since ties have probability 0.
    The prior's two parameters must be positive integers.
    """
    s1, n1 = _counts(s1, n1, "first arm: ")
    s2, n2 = _counts(s2, n2, "second arm: ")
    a, b = prior
    if not all(float(x).is_integer() and x > 0 for x in (a, b)):
        raise StatsError(f"prior must be two positive whole numbers (alpha, beta), not {prior!r}")
    a1, b1 = s1 + int(a), n1 - s1 + int(b)
    a2, b2 = s2 + int(a), n2 - s2 + int(b)
    p = _miller(a1, b1, a2, b2) if a2 <= a1 else 1.0 - _miller(a2, b2, a1, b1)
    return min(1.0, max(0.0, p))


def _miller(a1: int, b1: int, a2: int, b2: int) -> float:
    """P(X2 > X1) for X1 ~ Beta(a1, b1), X2 ~ Beta(a2, b2); a sum of a2 terms."""
    i = np.arange(a2, dtype=np.float64)
    log_terms = (betaln(a1 + i, b1 + b2) - np.log(b2 + i) - betaln(1.0 + i, b2)
                 - betaln(a1, b1))
    return float(np.exp(log_terms).sum())


@dataclass(frozen=True)
class Proportion:
    """`successes` out of `n` trials (thumbs up out of votes)."""

    successes: int
    n: int

    def __post_init__(self) -> None:
        _counts(self.successes, self.n)

    @property
    def rate(self) -> float:
        """successes / n; NaN when there are no trials (a gate treats NaN as a failure)."""
        return self.successes / self.n if self.n else math.nan

    def interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Wilson's score interval."""
        return wilson_interval(self.successes, self.n, confidence)
