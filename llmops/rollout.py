"""Rollouts decided by reviewers' votes: an always-valid test and the policy built on it.

The test: a mixture sequential probability ratio test (mSPRT; Johari, Pekelis and
Walsh, "Always valid inference", 2017) on the difference of two thumbs-up rates, with
the pooled variance of the null hypothesis (equal rates) and a normal mixture
N(0, tau^2) over the difference. Its likelihood ratio is a martingale under the null,
so P(it ever reaches 1/alpha) <= alpha however often it is computed (Ville's
inequality): a rollout may decide after every vote and still promote a candidate that
is no better with probability under `alpha`. Written here rather than taken from a
library: scipy and statsmodels offer fixed-sample tests only, and the formula is three
lines. `tests/test_rollout.py` checks the bound by simulation.

The policy: raise a candidate's share in steps while it is not worse, promote it when
it is better, roll it back when it is worse or breaks a guardrail (error rate, p95
latency). `decide` is a pure function of the counts so far and the current step;
`simulate` replays one experiment vote by vote through it. The gateway applies the
decisions (`llmops/serving/rollout.py`).

In `serving/routes.yaml`, per endpoint:

```yaml
rollout:
  candidate: staging          # a variant of the endpoint
  baseline: production        # the variant it may replace (its alias moves on promotion)
  steps: [5, 10, 25, 50]      # candidate share in percent, raised in this order
  votes_per_step: 100         # candidate votes before each raise
  alpha: 0.05                 # bound on a false promotion, and on a false rollback
  tau: 0.1                    # the size of differences the test is tuned to
```
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


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


Action = Literal["hold", "raise", "promote", "rollback"]


class RolloutPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    candidate: str = Field(description="the variant being rolled out")
    baseline: str = Field("production", description="the variant it may replace")
    steps: tuple[float, ...] = Field((5.0, 10.0, 25.0, 50.0), min_length=1,
                                     description="candidate share per step, percent")
    votes_per_step: int = Field(100, ge=1, description="candidate votes before each raise")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="bound on false promotions")
    tau: float = Field(0.1, gt=0, le=1, description="difference the test is tuned to")
    min_votes: int = Field(20, ge=1, description="votes per side before any decision")
    max_error_increase: float = Field(
        0.05, ge=0, le=1, description="candidate error rate over the baseline's that rolls back")
    max_latency_ratio: float = Field(
        2.0, gt=1, description="candidate p95 latency over the baseline's that rolls back")
    min_requests: int = Field(50, ge=1, description="candidate requests before guardrails act")

    @model_validator(mode="after")
    def _check(self) -> RolloutPolicy:
        if self.candidate == self.baseline:
            raise ValueError(f"candidate and baseline are both {self.candidate!r}")
        if any(not 0 < s <= 100 for s in self.steps) or list(self.steps) != sorted(self.steps):
            raise ValueError(f"steps must rise within (0, 100]: {list(self.steps)}")
        return self


@dataclass(frozen=True)
class Arm:
    """What one side served and how it was rated, over the rollout so far."""

    votes: int = 0
    up: int = 0
    requests: int = 0
    errors: int = 0
    latency_p95_ms: float | None = None


@dataclass(frozen=True)
class Decision:
    action: Action
    step: int  # the step after the decision (its share: policy.steps[step])
    share: float  # candidate share in percent after the decision (0 after a rollback)
    reason: str
    lam: float  # the test's likelihood ratio now
    difference: float | None  # candidate rate - baseline rate


def decide(policy: RolloutPolicy, base: Arm, cand: Arm, step: int) -> Decision:
    """What to do now, given the counts since the rollout began and the current step."""
    share = policy.steps[step]
    diff = (cand.up / cand.votes - base.up / base.votes) if cand.votes and base.votes else None
    # guardrails first: a candidate that fails or stalls goes back whatever the votes say
    if cand.requests >= policy.min_requests and base.requests:
        excess = cand.errors / cand.requests - base.errors / base.requests
        if excess > policy.max_error_increase:
            return Decision("rollback", step, 0.0, f"error rate {excess:+.1%} over the "
                            f"baseline's (limit {policy.max_error_increase:+.1%})", 1.0, diff)
        if (cand.latency_p95_ms is not None and base.latency_p95_ms
                and cand.latency_p95_ms > policy.max_latency_ratio * base.latency_p95_ms):
            return Decision("rollback", step, 0.0, f"p95 latency {cand.latency_p95_ms:.0f} ms "
                            f"over {policy.max_latency_ratio:g}x the baseline's "
                            f"{base.latency_p95_ms:.0f} ms", 1.0, diff)
    if base.votes < policy.min_votes or cand.votes < policy.min_votes or diff is None:
        return Decision("hold", step, share, f"waiting for {policy.min_votes} votes a side "
                        f"(baseline {base.votes}, candidate {cand.votes})", 1.0, diff)
    lam = msprt(up_b=base.up, n_b=base.votes, up_c=cand.up, n_c=cand.votes, tau=policy.tau)
    evidence = f"{diff:+.1%} thumbs-up over {cand.votes} + {base.votes} votes, lambda {lam:.3g}"
    if lam >= 1 / policy.alpha:
        if diff > 0:
            return Decision("promote", step, 100.0, f"better: {evidence}", lam, diff)
        return Decision("rollback", step, 0.0, f"worse: {evidence}", lam, diff)
    due = cand.votes >= policy.votes_per_step * (step + 1)
    if due and step + 1 < len(policy.steps) and diff > -policy.tau:
        return Decision("raise", step + 1, policy.steps[step + 1],
                        f"not worse so far ({evidence})", lam, diff)
    return Decision("hold", step, share, f"no decision yet ({evidence})", lam, diff)


@dataclass(frozen=True)
class Outcome:
    action: Action | None  # promote or rollback; None: no decision within max_votes
    votes: int  # votes cast in all when the decision came
    candidate_votes: int


def simulate(policy: RolloutPolicy, p_base: float, p_cand: float, *, rng: random.Random,
             max_votes: int = 20_000) -> Outcome:
    """One experiment: each vote goes to the candidate with its current share, the policy
    is asked after every vote, until it promotes or rolls back (or `max_votes`)."""
    base = cand = (0, 0)  # (votes, up)
    step = 0
    for n in range(1, max_votes + 1):
        if rng.random() * 100 < policy.steps[step]:
            cand = (cand[0] + 1, cand[1] + (rng.random() < p_cand))
        else:
            base = (base[0] + 1, base[1] + (rng.random() < p_base))
        d = decide(policy, Arm(*base), Arm(*cand), step)
        if d.action in ("promote", "rollback"):
            return Outcome(d.action, n, cand[0])
        step = d.step
    return Outcome(None, max_votes, cand[0])
