"""The rollout policy's statistics: looked at after every vote, it still keeps false
promotions under alpha; it promotes a better candidate and rolls back a worse one."""

from __future__ import annotations

import random
import statistics

import pytest

from llmops.rollout import Arm, RolloutPolicy, always_valid_p, decide, msprt, simulate

POLICY = RolloutPolicy(candidate="staging")


def test_the_likelihood_ratio_grows_with_evidence_and_is_one_without_it() -> None:
    assert msprt(up_b=0, n_b=0, up_c=5, n_c=10, tau=0.1) == 1.0
    assert msprt(up_b=10, n_b=10, up_c=10, n_c=10, tau=0.1) == 1.0  # no variance
    small = msprt(up_b=50, n_b=100, up_c=60, n_c=100, tau=0.1)
    large = msprt(up_b=500, n_b=1000, up_c=600, n_c=1000, tau=0.1)
    assert large > 1 / 0.05 > small
    assert msprt(up_b=500, n_b=1000, up_c=500, n_c=1000, tau=0.1) < 1  # equal: against
    assert always_valid_p([1.0, 4.0, 2.0]) == 0.25


@pytest.mark.slow
def test_false_promotions_stay_under_alpha_although_the_policy_looks_after_every_vote() -> None:
    rng = random.Random(20261201)
    outcomes = [simulate(POLICY, 0.5, 0.5, rng=rng, max_votes=4000) for _ in range(1000)]
    promoted = sum(o.action == "promote" for o in outcomes) / len(outcomes)
    rolled_back = sum(o.action == "rollback" for o in outcomes) / len(outcomes)
    # the test is two-sided: each direction stays under alpha, both together too
    assert promoted < POLICY.alpha and promoted + rolled_back < POLICY.alpha, (
        promoted, rolled_back)


def test_a_candidate_ten_points_better_is_promoted_within_the_documented_votes() -> None:
    rng = random.Random(7)
    outcomes = [simulate(POLICY, 0.5, 0.6, rng=rng, max_votes=20_000) for _ in range(200)]
    assert all(o.action == "promote" for o in outcomes)
    votes = sorted(o.candidate_votes for o in outcomes)
    # the README states: a median under 250 candidate votes, 90% within 600
    assert statistics.median(votes) < 250 and votes[int(0.9 * len(votes))] < 600


def test_a_worse_candidate_is_rolled_back() -> None:
    rng = random.Random(11)
    outcomes = [simulate(POLICY, 0.5, 0.4, rng=rng, max_votes=20_000) for _ in range(200)]
    assert all(o.action == "rollback" for o in outcomes)


def test_steps_rise_only_while_the_candidate_is_not_worse() -> None:
    base = Arm(votes=900, up=450, requests=1000)
    even = Arm(votes=100, up=50, requests=110)
    d = decide(POLICY, base, even, 0)
    assert (d.action, d.step, d.share) == ("raise", 1, 10.0)
    assert decide(POLICY, base, Arm(votes=60, up=30, requests=70), 0).action == "hold"
    trailing = Arm(votes=100, up=35, requests=110)  # 15 points behind, not yet significant
    assert decide(POLICY, base, trailing, 0).action in ("hold", "rollback")
    last = decide(POLICY, base, Arm(votes=1000, up=500, requests=1100), 3)
    assert last.action == "hold" and last.share == 50.0  # the last step holds


def test_guardrails_roll_back_on_errors_or_latency_whatever_the_votes() -> None:
    base = Arm(votes=100, up=50, requests=1000, errors=10, latency_p95_ms=800)
    failing = Arm(votes=100, up=90, requests=100, errors=12, latency_p95_ms=700)
    d = decide(POLICY, base, failing, 1)
    assert d.action == "rollback" and "error rate" in d.reason and d.share == 0
    slow = Arm(votes=100, up=90, requests=100, errors=1, latency_p95_ms=2000)
    assert "p95 latency" in decide(POLICY, base, slow, 1).reason


def test_a_bad_policy_is_refused_with_its_field() -> None:
    with pytest.raises(ValueError, match="steps must rise"):
        RolloutPolicy(candidate="staging", steps=(50, 10))
    with pytest.raises(ValueError, match="both 'production'"):
        RolloutPolicy(candidate="production")
