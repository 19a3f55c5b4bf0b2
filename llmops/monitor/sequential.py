"""Always-valid comparison of two thumbs-up rates, looked at after every vote.

A mixture sequential probability ratio test (mSPRT; Johari, Pekelis and Walsh,
"Always valid inference", 2017) on the difference of two rates, with the pooled
variance of the null hypothesis (equal rates) and a normal mixture N(0, tau^2) over the
difference. Its likelihood ratio `lam` is a martingale under the null, so
P(lam ever reaches 1/alpha) <= alpha however often it is computed (Ville's
inequality): a rollout may decide after every vote and still promote a candidate that
is no better with probability under `alpha`. Written here rather than taken from a
library: scipy and statsmodels offer fixed-sample tests only, and the formula is three
lines. The simulation in `tests/monitor/test_sequential.py` checks the error bound.

Example:
    >>> lam = msprt(up_b=480, n_b=1000, up_c=290, n_c=500, tau=0.1)
    >>> lam >= 1 / 0.05          # enough evidence that the rates differ
"""

from __future__ import annotations

import math


def msprt(*, up_b: int, n_b: int, up_c: int, n_c: int, tau: float) -> float:
    """The mixture likelihood ratio of "the rates differ" against "they are equal".

    `up_*`/`n_*`: thumbs up and votes of the baseline (b) and the candidate (c);
    `tau`: the scale of the differences the test is tuned to (rate points, 0.1 = 10).
    1.0 (no evidence) while either side has no votes or every vote is the same.
    """
    if n_b <= 0 or n_c <= 0 or tau <= 0:
        return 1.0
    pooled = (up_b + up_c) / (n_b + n_c)
    var = pooled * (1 - pooled) * (1 / n_b + 1 / n_c)  # of the difference, under the null
    if var <= 0:
        return 1.0
    diff = up_c / n_c - up_b / n_b
    t2 = tau * tau
    return math.sqrt(var / (var + t2)) * math.exp(diff * diff * t2 / (2 * var * (var + t2)))


def always_valid_p(lams: list[float]) -> float:
    """The always-valid p-value after a sequence of looks: min over looks of 1 / lam."""
    return min([1.0, *(1 / x for x in lams if x > 0)])
