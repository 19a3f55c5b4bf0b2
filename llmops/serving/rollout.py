"""The gateway applies its endpoints' rollouts: traffic shares from the store, decisions
from the votes (`llmops/rollout.py`), promotions and rollbacks in the registry.

Every refresh interval the gateway, for each endpoint with a `rollout:` in routes.yaml:
1. starts the rollout (the first step's share) if the store has none;
2. counts both sides since the rollout began (votes, errors, p95 latency: the store's
   grouped reads) and asks the policy;
3. applies a raise, a promotion (the baseline's alias moves to the candidate's version,
   compare-and-set on the version it saw) or a rollback (the candidate's version is
   archived), each a compare-and-set on the rollout's state in the store, so replicas
   deciding at once apply one decision; every step also goes to the chain's audit record;
4. routes with the shares the store holds now: no restart, every replica alike.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from llmops.errors import AliasConflictError
from llmops.registry import Ref, Registry
from llmops.rollout import Arm, Decision, RolloutPolicy, decide
from llmops.serving.spec import EndpointSpec
from llmops.store import Store

log = logging.getLogger("llmops.serving")


def weights(endpoint: EndpointSpec, state: dict[str, Any] | None) -> list[tuple[str, float]]:
    """The variants' weights now: the routes file's, or the rollout's shares."""
    policy = endpoint.rollout
    if policy is None:
        return [(v.label, v.weight) for v in endpoint.variants]
    share = state["share"] if state is not None else policy.steps[0]
    if state is not None and state["status"] != "running":
        share = 0.0  # promoted (the baseline now serves its version) or rolled back
    out = []
    for v in endpoint.variants:
        if v.label == policy.candidate:
            out.append((v.label, share))
        elif v.label == policy.baseline:
            out.append((v.label, 100.0 - share))
        else:
            out.append((v.label, 0.0))  # a rollout splits the traffic between its two
    return out


def _arm(row: dict[str, Any] | None) -> Arm:
    if row is None:
        return Arm()
    return Arm(votes=row["up"] + row["down"], up=row["up"], requests=row["requests"],
               errors=row["errors"], latency_p95_ms=row["latency_p95_ms"])


def advance(store: Store, registry: Registry, name: str, endpoint: EndpointSpec,
            now: float | None = None) -> Decision | None:
    """One look at an endpoint's rollout; the decision taken (None: nothing to decide)."""
    policy = endpoint.rollout
    if policy is None:
        return None
    now = time.time() if now is None else now
    chain = Ref.parse(endpoint.variant(policy.baseline).ref, kind="chain").name
    state = store.get_rollout(name)
    if state is None or (state["candidate"], state["baseline"]) != (policy.candidate,
                                                                    policy.baseline):
        if state is not None:
            store.reset_rollout(name)  # routes.yaml names another rollout now
        reason = (f"rollout of {policy.candidate} against {policy.baseline} on {name}: "
                  f"{policy.steps[0]:g}% to start")
        state = store.start_rollout(endpoint=name, candidate=policy.candidate,
                                    baseline=policy.baseline, share=policy.steps[0],
                                    at=now, reason=reason)
        if state["started_at"] == now:
            registry.note(chain, "rollout-start", reason)
    if state["status"] != "running":
        return None
    stats = {g["variant"]: g for g in store.serving_summary(since=state["started_at"])
             if g["endpoint"] == name}
    base, cand = _arm(stats.get(policy.baseline)), _arm(stats.get(policy.candidate))
    d = decide(policy, base, cand, state["step"])
    if d.action == "hold":
        return d
    return d if _apply(store, registry, name, endpoint, policy, state, d, base, cand, now) \
        else None


def _apply(store: Store, registry: Registry, name: str, endpoint: EndpointSpec,
           policy: RolloutPolicy, state: dict[str, Any], d: Decision, base: Arm, cand: Arm,
           now: float) -> bool:
    base_ref = Ref.parse(endpoint.variant(policy.baseline).ref, kind="chain")
    cand_ref = Ref.parse(endpoint.variant(policy.candidate).ref, kind="chain")
    status = {"raise": "running", "promote": "promoted", "rollback": "rolled_back"}[d.action]
    event = {"action": d.action, "reason": d.reason, "lam": d.lam, "difference": d.difference,
             "candidate_votes": cand.votes, "baseline_votes": base.votes}
    # the state first (compare-and-set): of replicas deciding at once, one goes on
    if not store.advance_rollout(name, expect_step=state["step"], step=d.step, share=d.share,
                                 status=status, at=now, event=event):
        return False
    chain, reason = base_ref.name, f"rollout on {name}: {d.action}: {d.reason}"
    candidate = registry.resolve(cand_ref)
    if d.action == "promote":
        current = registry.resolve(base_ref)
        try:  # compare-and-set: the baseline still serves the version the votes were on
            registry.move_alias(chain, str(base_ref.alias), candidate.version,
                                expect=current.version, reason=reason, who="llmops-rollout")
        except AliasConflictError as exc:
            log.error("rollout on %s: promotion refused: %s", name, exc)
            registry.note(chain, "rollout-conflict", f"{reason}; {exc}")
            return True
    elif d.action == "rollback":
        registry.archive(chain, candidate.version, reason)
    else:
        registry.note(chain, "rollout-raise", f"{reason} (candidate {d.share:g}%)",
                      version=candidate.version, who="llmops-rollout")
    log.warning("%s", reason)
    return True
