"""The gateway under attack and under trouble: refusals before work, bounded waits, no leaks.

Each test names the item of the hardening it proves; each fails on a gateway that
parses bodies before keys, lets a stuck log hang requests, or shows internals.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import socket
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi.testclient import TestClient

from llmops.config import reset_settings
from llmops.serving.keys import KeyCache, create_key
from llmops.store import Store
from tests.mock_openai import Fault, MockOpenAI
from tests.serving.conftest import ROUTES, Server, auth

Q = [{"role": "user", "content": "hello"}]


def _chat(c: Any, key: str, model: str = "chat", **body: Any) -> httpx.Response:
    return c.post("/v1/chat/completions", headers=auth(key),
                  json={"model": model, "messages": Q, **body})


def _unknown_key(i: int) -> str:
    return f"llmops-k{i:012x}-" + "A" * 43  # shaped like a key, known to nobody


# -- 3. unauthenticated load ------------------------------------------------------------


def test_the_key_is_checked_before_the_body_is_read(make_app: Any, keys: dict[str, str]) -> None:
    with Server(make_app()) as server, socket.create_connection(
            ("127.0.0.1", server.port), timeout=5) as s:
        # a declared body of 900 kB that never comes: only a gate that answers first replies
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n"
                  b"authorization: Bearer " + _unknown_key(1).encode() + b"\r\n"
                  b"content-type: application/json\r\ncontent-length: 900000\r\n\r\n{\"mod")
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 401"), reply[:200]
    assert "invalid API key" in reply


def test_failed_keys_are_rate_limited_per_address_without_store_queries(
        make_app: Any, keys: dict[str, str], tmp_path: Path) -> None:
    # a refill too slow to matter here: the counts below do not depend on the clock
    spec = {**ROUTES, "rate_limit": {**ROUTES["rate_limit"], "auth_failures_per_s": 0.001,
                                     "auth_failure_burst": 50}}
    routes = tmp_path / "slow-refill.yaml"
    routes.write_text(yaml.safe_dump(spec))
    with TestClient(make_app(routes=routes)) as c:
        gw = c.app.state.gateway  # type: ignore[attr-defined]
        assert c.get("/v1/models", headers=auth(keys["client"])).status_code == 200
        statuses = [c.get("/v1/models", headers=auth(_unknown_key(i))).status_code
                    for i in range(80)]
        statuses += [c.get("/v1/models", headers=auth("not-even-shaped")).status_code
                     for _ in range(20)]
        assert statuses == [401] * 50 + [429] * 50  # the burst of failures, then refusals
        assert gw.keys.queries <= 1 + 50  # the client key, the burst; then no query at all
        r = c.get("/v1/models", headers=auth(_unknown_key(999)))
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_auth_failures"
        assert int(r.headers["retry-after"]) >= 1
        # a key known before the flood still gets in from the same address
        assert c.get("/v1/models", headers=auth(keys["client"])).status_code == 200


def test_the_key_cache_evicts_the_least_recently_used_entry(gw_home: Path) -> None:
    store = Store.open()
    try:
        _, secret = create_key(store, name="alice", role="client")
        cache = KeyCache(store, max_entries=3)
        assert cache.lookup(secret) is not None
        for i in range(2):
            assert cache.lookup(_unknown_key(i)) is None
        assert cache.cached(secret) == (True, cache.lookup(secret))  # alice: recently used
        for i in range(2, 4):
            cache.lookup(_unknown_key(i))  # two more: the oldest unknown ones go
        queries = cache.queries
        assert cache.cached(secret)[0] and cache.lookup(secret) is not None
        assert cache.queries == queries and len(cache._entries) == 3
        assert cache.cached("llmops-kbad") == (True, None)  # not shaped like a key: no query
    finally:
        store.close()


def test_readyz_is_cached_and_takes_no_lock(make_app: Any, keys: dict[str, str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(make_app()) as c:
        store = c.app.state.gateway.store  # type: ignore[attr-defined]
        calls = {"n": 0}
        watch = store.watch

        def counted() -> Any:
            calls["n"] += 1
            return watch()

        monkeypatch.setattr(store, "watch", counted)
        db = Path(store.url.removeprefix("sqlite:///"))
        holder = sqlite3.connect(db, isolation_level=None, timeout=0)
        holder.execute("BEGIN IMMEDIATE")  # the write lock, held elsewhere
        try:
            started = time.monotonic()
            bodies = [c.get("/readyz") for _ in range(50)]
            assert time.monotonic() - started < 5
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert {r.status_code for r in bodies} == {200}
        assert calls["n"] <= 2  # worked out once a second, not 50 times
        body = bodies[0].json()
        assert body["log_writer"]["alive"] and body["log_writer"]["pending"] == 0


# -- 2. a stuck write fails the request, bounded ---------------------------------------


@pytest.mark.slow
def test_a_write_lock_held_60_s_gives_503_within_the_limit_then_recovers(
        make_app: Any, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_GATEWAY__COMMIT_TIMEOUT_S", "2")
    reset_settings()
    with Server(make_app()) as server, httpx.Client(base_url=server.url, timeout=30) as c:
        assert _chat(c, keys["client"]).status_code == 200
        store = server.app.state.gateway.store
        holder = sqlite3.connect(Path(store.url.removeprefix("sqlite:///")),
                                 isolation_level=None, timeout=0)
        holder.execute("BEGIN IMMEDIATE")
        held_until = time.monotonic() + 60
        refused: list[str] = []
        try:
            while time.monotonic() < held_until - 4:
                started = time.monotonic()
                r = _chat(c, keys["client"])
                took = time.monotonic() - started
                assert r.status_code == 503, r.text
                assert took < 2 + 1.5, f"503 after {took:.1f} s (limit 2 s)"
                assert r.headers["retry-after"] and r.json()["error"]["code"] == "log_unavailable"
                refused.append(r.json()["id"] if "id" in r.json() else r.json()["error"]["message"])
                ready = c.get("/readyz")
                assert ready.status_code == 503
                writer = ready.json()["log_writer"]
                assert writer["blocked_s"] > 0 and "waited" in writer["state"], writer
                time.sleep(1.0)
        finally:
            while time.monotonic() < held_until:
                time.sleep(0.2)
            holder.execute("ROLLBACK")
            holder.close()
        assert len(refused) >= 8
        deadline = time.monotonic() + 10
        while c.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "not ready again after the lock went"
            time.sleep(0.3)
        ok = _chat(c, keys["client"])
        assert ok.status_code == 200
        assert Store.open().get_request(ok.json()["id"]) is not None


# -- 4. user text in logs ---------------------------------------------------------------


def test_no_canary_in_logs_error_bodies_or_tracebacks(
        make_app: Any, keys: dict[str, str], mock: MockOpenAI,
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    canary = "CANARY-9c1e-user-text"
    canary_key = "llmops-kc0ffee0c0ffe-" + ("CANARYKEY" * 5)[:43]
    caplog.set_level(logging.DEBUG)
    bodies: list[str] = []
    with TestClient(make_app()) as c:
        msg = [{"role": "user", "content": canary}]
        bodies.append(c.post("/v1/chat/completions", headers=auth(canary_key),
                             json={"model": "chat", "messages": msg}).text)
        mock.fail(Fault(status=500, message=f"upstream internals {canary}"))
        bodies.append(c.post("/v1/chat/completions", headers=auth(keys["client"]),
                             json={"model": "mock", "messages": msg}).text)
        # the log fails under the request: a duplicate id makes its insert fail
        store = c.app.state.gateway.store  # type: ignore[attr-defined]
        monkeypatch.setattr("llmops.serving.plan.new_request_id", lambda: "chatcmpl-fixed")
        first = c.post("/v1/chat/completions", headers=auth(keys["client"]),
                       json={"model": "chat", "messages": msg})
        assert first.status_code == 200  # the answer itself may echo the question
        second = c.post("/v1/chat/completions", headers=auth(keys["client"]),
                        json={"model": "chat", "messages": msg})
        bodies.append(second.text)
        assert second.status_code == 500
        bodies.append(c.post("/v1/feedback", headers=auth(keys["reviewer"]),
                             json={"request_id": "nope", "rating": "up",
                                   "comment": canary}).text)
        assert store.get_request("chatcmpl-fixed") is not None
    everything = "\n".join(bodies) + caplog.text
    assert canary not in everything
    assert "CANARYKEY" not in everything
    assert "upstream internals" not in "\n".join(bodies)


# -- 6. smaller items ------------------------------------------------------------------


def test_docs_are_off_in_the_prod_profile(make_app: Any, keys: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    with TestClient(make_app()) as c:
        assert c.get("/openapi.json").status_code == 200
    monkeypatch.setenv("LLMOPS_PROFILE", "prod")
    monkeypatch.setenv("LLMOPS_VECTOR__MODE", "embedded")
    reset_settings()
    with TestClient(make_app()) as c:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert c.get(path).status_code == 404, path
        assert c.get("/healthz").status_code == 200


def test_a_metrics_key_scrapes_metrics_and_nothing_else(client: TestClient,
                                                        keys: dict[str, str]) -> None:
    r = client.get("/metrics", headers=auth(keys["metrics"]))
    assert r.status_code == 200 and "llmops_requests_total" in r.text
    assert _chat(client, keys["metrics"]).status_code == 403
    assert client.post("/admin/reload", headers=auth(keys["metrics"])).status_code == 403


def test_the_dev_key_is_refused_outside_the_dev_profile(gw_home: Path) -> None:
    from typer.testing import CliRunner

    from llmops.cli import app

    env = {"LLMOPS_PROFILE": "staging", "LLMOPS_GATEWAY__DEV_KEY": "true"}
    result = CliRunner().invoke(app, ["serve"], env=env)
    assert result.exit_code != 0
    assert "dev_key is for the dev profile only" in result.output
    assert "llmops-k" not in result.output  # no key was made or printed


def test_a_non_ascii_csrf_token_gets_403(client: TestClient, keys: dict[str, str]) -> None:
    basic = base64.b64encode(f"a:{keys['reviewer']}".encode()).decode()
    r = client.post("/v1/feedback", json={"request_id": "x", "rating": "up"},
                    headers={"Authorization": f"Basic {basic}",
                             "X-CSRF-Token": "\u00e9t\u00e9".encode()})  # type: ignore[dict-item]
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"


@pytest.mark.parametrize("where", ["content", "user", "model", "feedback", "query"])
def test_a_nul_byte_anywhere_gets_400_before_the_model_runs(
        client: TestClient, keys: dict[str, str], mock: MockOpenAI, where: str) -> None:
    nul = "a\x00b"
    if where == "feedback":
        r = client.post("/v1/feedback", headers=auth(keys["reviewer"]),
                        json={"request_id": "x", "rating": "up", "comment": nul})
    elif where == "query":
        r = client.get("/v1/feedback?reviewer=a%00b", headers=auth(keys["reviewer"]))
    else:
        body: dict[str, Any] = {"model": "mock", "messages": Q}
        if where == "content":
            body["messages"] = [{"role": "user", "content": nul}]
        else:
            body[where] = nul
        r = client.post("/v1/chat/completions", headers=auth(keys["client"]), json=body)
    assert r.status_code == 400, r.text
    assert "NUL" in r.json()["error"]["message"]
    assert mock.state.calls == 0


def test_a_log_failure_mid_stream_sends_an_error_event_and_done(
        client: TestClient, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    store = client.app.state.gateway.store  # type: ignore[attr-defined]
    real = store.update_request_op
    failed = {"n": 0}

    def failing_once(rid: str, **values: Any) -> Any:
        if values.get("status") == 200 and not failed["n"]:
            failed["n"] += 1

            def op(conn: Any) -> None:
                raise sqlite3.OperationalError("disk I/O error")
            return op
        return real(rid, **values)

    monkeypatch.setattr(store, "update_request_op", failing_once)
    with client.stream("POST", "/v1/chat/completions", headers=auth(keys["client"]),
                       json={"model": "chat", "messages": Q, "stream": True}) as r:
        assert r.status_code == 200
        rid = r.headers["x-request-id"]
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    error = json.loads(events[-2])["error"]
    assert error["type"] == "api_error" and "disk I/O" not in error["message"]
    row = store.get_request(rid)
    assert row["status"] == 500 and row["status"] != 499 and "StoreError" in row["error"]
    assert row["answer"]  # what went out before the failure


def test_internal_exception_text_never_reaches_the_client(
        client: TestClient, keys: dict[str, str], mock: MockOpenAI) -> None:
    mock.fail(Fault(status=500, message="Traceback: /srv/secret/path.py line 3"))
    r = _chat(client, keys["client"], model="mock")
    assert r.status_code == 502
    message = r.json()["error"]["message"]
    assert "secret" not in message and "Traceback" not in message
    assert "see the gateway log" in message and "chatcmpl-" in message
    row = Store.open().list_requests(endpoint="mock")[0]
    assert "Traceback" in row["error"]  # the log keeps it for the operator


def test_no_votes_on_shadow_rows_or_on_streams_in_progress(
        client: TestClient, keys: dict[str, str]) -> None:
    r = _chat(client, keys["client"], model="shadowed")
    parent = r.json()["id"]
    store = Store.open()
    deadline = time.monotonic() + 10
    while store.get_request(f"{parent}-shadow") is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    vote = client.post("/v1/feedback", headers=auth(keys["reviewer"]),
                       json={"request_id": f"{parent}-shadow", "rating": "up"})
    assert vote.status_code == 409 and "shadow" in vote.json()["error"]["message"]
    from tests.store.conftest import row

    store.log_request(row("chatcmpl-streaming", status=0, answer=None))
    vote = client.post("/v1/feedback", headers=auth(keys["reviewer"]),
                       json={"request_id": "chatcmpl-streaming", "rating": "down"})
    assert vote.status_code == 409 and "still streaming" in vote.json()["error"]["message"]
    assert client.post("/v1/feedback", headers=auth(keys["reviewer"]),
                       json={"request_id": parent, "rating": "up"}).status_code == 200


def test_request_ids_do_not_follow_a_sequence(client: TestClient, keys: dict[str, str]) -> None:
    ids = [_chat(client, keys["client"]).json()["id"] for _ in range(20)]
    assert len(set(ids)) == 20
    for a, b in itertools.pairwise(ids):
        common = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                      len(a))
        assert common <= len("chatcmpl-") + 3, (a, b)  # no shared prefix past chance


def test_one_key_cannot_hold_every_slot(make_app: Any, gw_home: Path, tmp_path: Path,
                                        mock: MockOpenAI) -> None:
    routes = {**ROUTES, "endpoints": {"mock": {**ROUTES["endpoints"]["mock"], "limits": {
        "max_tokens": 64, "timeout_s": 5, "max_concurrency": 4}}}}
    path = tmp_path / "routes-cap.yaml"
    path.write_text(yaml.safe_dump(routes))
    store = Store.open()
    greedy = create_key(store, name="greedy", role="client")[1]
    other = create_key(store, name="other", role="client")[1]
    store.close()
    mock.state.delay_s = 1.0
    with Server(make_app(routes=path)) as server, ThreadPoolExecutor(6) as pool:
        def send(key: str) -> int:
            with httpx.Client(base_url=server.url, timeout=10) as c:
                return _chat(c, key, model="mock").status_code
        mine = [pool.submit(send, greedy) for _ in range(5)]
        time.sleep(0.3)
        theirs = pool.submit(send, other)
        statuses = sorted(f.result() for f in mine)
        assert statuses == [200, 200, 200, 429, 429]  # three quarters of 4 slots
        assert theirs.result() == 200


@pytest.mark.slow
def test_a_full_shutdown_finishes_within_30_s_even_with_the_log_stuck(
        gw_home: Path, routes_file: Path, tmp_path: Path, keys: dict[str, str]) -> None:
    import signal
    import threading

    from tests.serving.test_durability import Gateway

    gw = Gateway(gw_home, routes_file, tmp_path)
    gw.start()
    assert gw.proc is not None
    holder = sqlite3.connect(gw_home / "requests.db", isolation_level=None, timeout=0)
    holder.execute("BEGIN IMMEDIATE")  # every write of the gateway now waits
    try:
        results: list[int] = []

        def chat() -> None:
            with httpx.Client(base_url=gw.url, timeout=60) as c:
                try:
                    results.append(_chat(c, keys["client"]).status_code)
                except httpx.HTTPError:
                    results.append(0)

        threads = [threading.Thread(target=chat) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # in flight, waiting on the log
        started = time.monotonic()
        gw.proc.send_signal(signal.SIGTERM)
        gw.proc.wait(timeout=40)
        took = time.monotonic() - started
        assert took < 30, f"shutdown took {took:.1f} s"
        for t in threads:
            t.join(10)
        assert 200 not in results  # nothing was acknowledged without its row
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        gw.log.close()
