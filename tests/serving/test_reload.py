"""Alias moves reach the gateway without a restart, and never fail a request in flight."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmops import chains
from llmops.config import reset_settings
from llmops.registry import get_registry
from llmops.serving.router import assign
from llmops.store import Store
from tests.mock_openai import MockOpenAI
from tests.serving.conftest import Server, auth, write_chain

Q = [{"role": "user", "content": "hello"}]
# users that the 90/10 split of endpoint `chat` sends to production
PROD_USERS = [u for u in (f"user-{i}" for i in range(200))
              if assign("chat", u, [("production", 90), ("staging", 10)]) == "production"][:20]


@pytest.fixture
def fast_refresh(monkeypatch: pytest.MonkeyPatch, gw_home: Path) -> float:
    monkeypatch.setenv("LLMOPS_GATEWAY__REFRESH_INTERVAL_S", "0.3")
    reset_settings()
    return 0.3


def test_alias_move_is_served_after_the_interval_with_zero_failures_under_load(
    make_app: Any, keys: dict[str, str], fast_refresh: float,
) -> None:
    with Server(make_app()) as server:
        stop = threading.Event()
        results: list[tuple[float, int, str]] = []

        def load(n: int) -> None:
            with httpx.Client(base_url=server.url, headers=auth(keys["client"])) as c:
                i = 0
                while not stop.is_set():
                    r = c.post("/v1/chat/completions", json={
                        "model": "chat", "messages": Q, "user": PROD_USERS[(n + i) % 20]})
                    results.append((time.monotonic(), r.status_code,
                                    r.headers.get("x-llmops-chain", "")))
                    i += 1

        with ThreadPoolExecutor(8) as pool:
            for n in range(8):
                pool.submit(load, n)
            time.sleep(0.5)
            get_registry().move_alias("chain.chat", "production", 2, expect=1)
            moved = time.monotonic()
            deadline = moved + fast_refresh + 3.0
            while time.monotonic() < deadline:
                recent = [c for t, _, c in results[-20:] if t > moved]
                if len(recent) == 20 and set(recent) == {"chain.chat/2"}:
                    break
                time.sleep(0.05)
            time.sleep(0.3)
            stop.set()
    statuses = {s for _, s, _ in results}
    assert statuses == {200}, f"failed requests during the move: {statuses}"
    first_new = min(t for t, _, c in results if c == "chain.chat/2")
    assert first_new - moved <= fast_refresh + 3.0  # served within the interval (plus a load)
    before = [c for t, _, c in results if t < moved]
    assert before and set(before) == {"chain.chat/1"}
    assert [c for _, _, c in results[-10:]] == ["chain.chat/2"] * 10
    assert len(results) > 100


def test_a_request_in_flight_finishes_on_its_version_and_reload_forces_the_move(
    make_app: Any, keys: dict[str, str], mock: MockOpenAI, tmp_path: Path,
) -> None:
    mock_llm = {"backend": "openai", "base_url": mock.base_url, "model": "mock",
                "max_retries": 0, "timeout_s": 5}
    v2 = chains.log(write_chain(tmp_path / "c2", "mockchat", mock_llm, "second mock")).version
    with Server(make_app()) as server:
        mock.state.delay_s = 0.6
        with httpx.Client(base_url=server.url, timeout=10) as c:
            with ThreadPoolExecutor(1) as pool:
                slow = pool.submit(c.post, "/v1/chat/completions", headers=auth(keys["client"]),
                                   json={"model": "mock", "messages": Q})
                time.sleep(0.2)
                chains.promote("mockchat", v2, "production")
                r = c.post("/admin/reload", headers=auth(keys["admin"]))
                assert r.status_code == 200
                assert r.json()["endpoints"]["mock"]["production"]["version"] == v2
                old = slow.result()
            mock.state.delay_s = 0.0
            new = c.post("/v1/chat/completions", headers=auth(keys["client"]),
                         json={"model": "mock", "messages": Q})
    assert old.status_code == 200 and old.headers["x-llmops-chain"] == "chain.mockchat/1"
    assert new.headers["x-llmops-chain"] == f"chain.mockchat/{v2}"
    store = Store.open()
    assert store.get_request(old.json()["id"])["chain_version"] == 1  # type: ignore[index]
    assert store.get_request(new.json()["id"])["chain_version"] == v2  # type: ignore[index]


def test_a_version_archived_while_serving_is_dropped_at_the_next_refresh(
    make_app: Any, keys: dict[str, str],
) -> None:
    staging_user = next(u for u in (f"user-{i}" for i in range(500))
                        if assign("chat", u, [("production", 90), ("staging", 10)]) == "staging")
    with Server(make_app()) as server, httpx.Client(base_url=server.url, timeout=10) as c:
        def chat(user: str) -> httpx.Response:
            return c.post("/v1/chat/completions", headers=auth(keys["client"]),
                          json={"model": "chat", "messages": Q, "user": user})

        assert chat(PROD_USERS[0]).headers["x-llmops-chain"] == "chain.chat/1"
        get_registry().archive("chain.chat", 1, "withdrawn: a bad answer found in review")
        r = c.post("/admin/reload", headers=auth(keys["admin"]))
        assert r.status_code == 200
        refused = [chat(u) for u in PROD_USERS[:5]]
        assert {x.status_code for x in refused} == {503}
        message = refused[0].json()["error"]["message"]
        assert "the registry archived its version (chain.chat/1)" in message
        kept = chat(staging_user)
        assert kept.status_code == 200 and kept.headers["x-llmops-chain"] == "chain.chat/2"
        ready = c.get("/readyz").json()
        assert ready["missing"] == {"chain.chat@production": "archived (chain.chat/1): not served"}
