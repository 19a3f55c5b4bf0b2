"""Rollouts end to end: two chain versions behind the gateway, a scripted reviewer who
prefers one, and the gateway moving traffic, then the registry, by the votes."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from llmops.errors import SpecError
from llmops.registry import get_registry
from llmops.serving.spec import load_routes
from llmops.store import Store
from tests.serving.conftest import ROUTES, auth

POLICY = {"candidate": "staging", "baseline": "production", "steps": [20, 50],
          "votes_per_step": 15, "min_votes": 10, "alpha": 0.05, "tau": 0.2}


def routes_with(tmp_path: Path, **policy: Any) -> Path:
    spec = copy.deepcopy(ROUTES)
    spec["endpoints"]["chat"]["rollout"] = {**POLICY, **policy}
    path = tmp_path / "rollout-routes.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def round_of_votes(c: TestClient, keys: dict[str, str], rng: random.Random, n: int,
                   p_up: dict[str, float], tag: str) -> dict[str, int]:
    """`n` chat requests from distinct users, each answer voted by the reviewer."""
    seen: dict[str, int] = {}
    for i in range(n):
        r = c.post("/v1/chat/completions", headers=auth(keys["client"]),
                   json={"model": "chat", "user": f"{tag}-{i}",
                         "messages": [{"role": "user", "content": f"question {tag} {i}"}]})
        assert r.status_code == 200, r.text
        variant = r.headers["x-llmops-variant"]
        seen[variant] = seen.get(variant, 0) + 1
        rating = "up" if rng.random() < p_up[variant] else "down"
        v = c.post("/v1/feedback", headers=auth(keys["reviewer"]),
                   json={"request_id": r.json()["id"], "rating": rating})
        assert v.status_code == 200, v.text
    return seen


def test_a_preferred_candidate_is_raised_then_promoted_by_compare_and_set(
        make_app: Any, keys: dict[str, str], tmp_path: Path) -> None:
    rng = random.Random(5)
    registry = get_registry()
    assert registry.resolve("chain.chat@production").version == 1
    with TestClient(make_app(routes=routes_with(tmp_path))) as c:
        gw = c.app.state.gateway  # type: ignore[attr-defined]
        assert dict(gw.weights["chat"]) == {"production": 80.0, "staging": 20.0}
        state = Store.open().get_rollout("chat")
        assert state is not None and (state["status"], state["share"]) == ("running", 20.0)
        shares = []
        for rnd in range(40):
            # at first the reviewer likes both alike; then clearly prefers the candidate
            p_up = ({"production": 0.6, "staging": 0.6} if rnd < 2 else
                    {"production": 0.3, "staging": 0.95})
            round_of_votes(c, keys, rng, 40, p_up, f"r{rnd}")
            c.portal.call(gw.advance_rollouts)  # type: ignore[union-attr]
            state = Store.open().get_rollout("chat")
            shares.append(state["share"])  # type: ignore[index]
            if state["status"] != "running":  # type: ignore[index]
                break
        assert state["status"] == "promoted", shares  # type: ignore[index]
        assert 50.0 in shares  # raised a step on the way
        assert dict(gw.weights["chat"])["staging"] == 0.0  # production serves it now
        assert registry.resolve("chain.chat@production").version == 2
        c.portal.call(gw.reload)  # type: ignore[union-attr]
        r = c.post("/v1/chat/completions", headers=auth(keys["client"]),
                   json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        assert r.headers["x-llmops-variant"] == "production"
        assert gw.cache.get("chain.chat@production").version == 2

    events = Store.open().rollout_events("chat")
    assert [e["action"] for e in events] == ["start", "raise", "promote"]
    assert events[-1]["lam"] >= 1 / 0.05 and events[-1]["difference"] > 0
    history = registry.history("chain.chat")
    actions = [(h.action, h.to_version) for h in history if h.actor == "llmops-rollout"
               or h.action.startswith("rollout")]
    assert [a for a, _ in actions] == ["rollout-start", "rollout-raise", "move"]
    move = history[-1]
    assert (move.alias, move.from_version, move.to_version) == ("production", 1, 2)
    assert "promote" in move.reason and "thumbs-up" in move.reason


def test_a_worse_candidate_is_rolled_back_and_archived(
        make_app: Any, keys: dict[str, str], tmp_path: Path) -> None:
    rng = random.Random(9)
    registry = get_registry()
    with TestClient(make_app(routes=routes_with(tmp_path))) as c:
        gw = c.app.state.gateway  # type: ignore[attr-defined]
        for rnd in range(40):
            round_of_votes(c, keys, rng, 40, {"production": 0.9, "staging": 0.2}, f"w{rnd}")
            c.portal.call(gw.advance_rollouts)  # type: ignore[union-attr]
            state = Store.open().get_rollout("chat")
            if state["status"] != "running":  # type: ignore[index]
                break
        assert state["status"] == "rolled_back"  # type: ignore[index]
        assert dict(gw.weights["chat"]) == {"production": 100.0, "staging": 0.0}
    assert registry.get("chain.chat", 2).archived
    assert registry.resolve("chain.chat@production").version == 1


def test_a_rollout_naming_an_unknown_variant_or_another_chain_is_refused(
        tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"rollout\.candidate: 'canary' is not a variant"):
        load_routes(routes_with(tmp_path, candidate="canary"))
    spec = copy.deepcopy(ROUTES)
    spec["endpoints"]["flaky"]["rollout"] = {"candidate": "backup", "baseline": "upstream"}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match="different chains"):
        load_routes(path)
