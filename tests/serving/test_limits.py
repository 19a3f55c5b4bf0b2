"""Limits, failures and the answers around them: 413, 422, 429, 503, 504, fallback, shadow.

A rejected request must not reach the upstream: the mock counts its calls.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from llmops.serving.spec import RoutesSpec, load_routes
from llmops.store import Store
from tests.mock_openai import Fault, MockOpenAI
from tests.serving.conftest import auth

Q = [{"role": "user", "content": "hello"}]


def chat(client: TestClient, key: str, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", headers=auth(key),
                       json={"model": "mock", "messages": Q, **body})


def test_oversized_bodies_get_413_and_never_reach_the_upstream(
    make_app: Any, keys: dict[str, str], mock: MockOpenAI, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LLMOPS_GATEWAY__MAX_BODY_BYTES", "2000")
    from llmops.config import reset_settings

    reset_settings()
    with TestClient(make_app()) as client:
        big = [{"role": "user", "content": "x" * 5000}]
        r = chat(client, keys["client"], messages=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

        def chunks() -> Any:  # no Content-Length: counted as it arrives
            yield b'{"model": "mock", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}]}'

        r2 = client.post("/v1/chat/completions", headers=auth(keys["client"]), content=chunks())
        assert r2.status_code == 413
        assert chat(client, keys["client"]).status_code == 200
    assert mock.state.calls == 1


def test_max_tokens_over_the_cap_gets_422_naming_the_cap(
    client: TestClient, keys: dict[str, str], mock: MockOpenAI
) -> None:
    for field in ("max_tokens", "max_completion_tokens"):
        r = chat(client, keys["client"], **{field: 65})
        err = r.json()["error"]
        assert r.status_code == 422 and err["param"] == field and "cap" in err["message"]
        assert "64" in err["message"]
    assert chat(client, keys["client"], max_tokens=64).status_code == 200
    assert mock.state.calls == 1 and mock.state.bodies[0]["max_tokens"] == 64


def test_rate_limit_gives_429_with_retry_after(
    make_app: Any, keys: dict[str, str], mock: MockOpenAI, routes_file: Any,
) -> None:
    spec = load_routes(routes_file)
    spec = RoutesSpec.model_validate({**spec.model_dump(),
                                      "rate_limit": {"requests_per_s": 0.5, "burst": 3}})
    with TestClient(make_app(routes=spec)) as client:
        statuses = [chat(client, keys["client"]).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        r = chat(client, keys["client"])
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["type"] == "rate_limit_error"
        # the limit is per key: the admin key still has its burst
        assert chat(client, keys["admin"]).status_code == 200
    assert mock.state.calls == 4


def test_a_slow_upstream_gives_504_and_is_logged(
    client: TestClient, keys: dict[str, str], mock: MockOpenAI
) -> None:
    mock.state.delay_s = 2.0  # the endpoint's timeout is 1 s
    start = time.perf_counter()
    r = chat(client, keys["client"])
    assert r.status_code == 504 and r.json()["error"]["type"] == "timeout_error"
    assert time.perf_counter() - start < 1.8
    rows = Store.open().list_requests(endpoint="mock")
    assert [(x["status"], x["error"][:19]) for x in rows] == [(504, "BackendTimeoutError")]


def test_max_concurrency_gives_503(make_app: Any, keys: dict[str, str],
                                   mock: MockOpenAI) -> None:
    mock.state.delay_s = 0.5

    async def burst() -> list[int]:
        app = make_app()
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                rs = await asyncio.gather(*[
                    c.post("/v1/chat/completions", headers=auth(keys["client"]),
                           json={"model": "mock", "messages": Q}) for _ in range(12)])
        return sorted(r.status_code for r in rs)

    statuses = asyncio.run(burst())
    assert statuses.count(200) == 8 and statuses.count(503) == 4  # max_concurrency: 8
    assert mock.state.calls == 8


def test_a_failing_variant_falls_back_and_the_row_says_so(
    client: TestClient, keys: dict[str, str], mock: MockOpenAI
) -> None:
    mock.fail(Fault(status=400, message="upstream refused"))
    r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                    json={"model": "flaky", "messages": Q})
    assert r.status_code == 200 and r.headers["x-llmops-variant"] == "backup"
    row = Store.open().get_request(r.json()["id"])
    assert row is not None and row["variant"] == "backup"
    assert row["lineage"]["fallback_from"] == "upstream" and "upstream refused" in row["error"]
    # without a fallback, the failure is the answer: 502 in OpenAI's format
    mock.fail(Fault(status=400))
    r2 = chat(client, keys["client"])
    assert r2.status_code == 502 and r2.json()["error"]["type"] == "api_error"


def test_streaming_falls_back_before_the_first_piece(
    client: TestClient, keys: dict[str, str], mock: MockOpenAI
) -> None:
    mock.fail(Fault(status=400))
    r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                    json={"model": "flaky", "messages": Q, "stream": True})
    assert r.status_code == 200 and r.headers["x-llmops-variant"] == "backup"
    assert r.text.rstrip().endswith("data: [DONE]")


def test_the_shadow_variant_answers_into_the_log_only(
    client: TestClient, keys: dict[str, str]
) -> None:
    r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                    json={"model": "shadowed", "messages": Q})
    assert r.status_code == 200 and r.headers["x-llmops-variant"] == "production"
    rid = r.json()["id"]
    store = Store.open()
    deadline = time.monotonic() + 5
    while store.get_request(f"{rid}-shadow") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    shadow = store.get_request(f"{rid}-shadow")
    assert shadow is not None and shadow["shadow_of"] == rid
    assert shadow["variant"] == "staging" and shadow["chain_version"] == 2
    assert [x["id"] for x in store.list_requests(endpoint="shadowed")] == [rid]


@pytest.mark.parametrize(("body", "param"), [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages"),
    ({"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
    ({"n": 2}, "n"),
    ({"temperature": 3}, "temperature"),
    ({"model": None}, "model"),
])
def test_malformed_requests_get_400_naming_the_field(
    client: TestClient, keys: dict[str, str], mock: MockOpenAI, body: dict[str, Any], param: str
) -> None:
    r = chat(client, keys["client"], **body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == (
        "invalid_request_error")
    assert mock.state.calls == 0


# Chosen by their hash so that both variants of `chat` (90/10) are hit: ivan, peggy and
# trent land on staging, the others on production.
STICKY_USERS = ("alice", "bob", "carol", "ivan", "peggy", "trent")
CHAT_VERSION = {"production": 1, "staging": 2}  # the aliases of chain.chat in conftest


def test_sticky_users_across_requests_and_the_header(client: TestClient,
                                                     keys: dict[str, str]) -> None:
    from llmops.serving.router import assign

    endpoint = client.app.state.gateway.routes.endpoints["chat"]  # type: ignore[attr-defined]
    weights = [(v.label, v.weight) for v in endpoint.variants]
    assert weights == [("production", 90), ("staging", 10)]
    expected = {user: assign("chat", user, weights) for user in STICKY_USERS}
    assert set(expected.values()) == {"production", "staging"}  # the users cover both
    store = Store.open()

    def variant_of(user: str, *, by_header: bool) -> str:
        """The variant the gateway answered with; the header and the logged row must agree."""
        headers, body = auth(keys["client"]), {"model": "chat", "messages": Q}
        if by_header:
            headers["x-llmops-user"] = user
        else:
            body["user"] = user
        r = client.post("/v1/chat/completions", headers=headers, json=body)
        assert r.status_code == 200, r.text
        variant = r.headers["x-llmops-variant"]
        row = store.get_request(r.json()["id"])
        assert row is not None and row["endpoint"] == "chat", (user, row)
        assert row["variant"] == variant, (user, variant, row["variant"])
        assert row["chain_version"] == CHAT_VERSION[variant], (user, variant, row)
        assert r.headers["x-llmops-chain"] == f"chain.chat/{CHAT_VERSION[variant]}"
        assert row["user"] == user  # the sticky key is logged, from the body or the header
        return variant

    for user, want in expected.items():
        got = [variant_of(user, by_header=False) for _ in range(3)]
        got.append(variant_of(user, by_header=True))
        assert got == [want] * 4, f"{user}: served {got}, assigned {want}"

    # over many users the split follows the weights (deterministic: the hash is)
    served = [variant_of(f"user-{i}", by_header=False) for i in range(200)]
    share = served.count("staging") / len(served)
    assert 0.04 <= share <= 0.2, f"staging got {share:.1%} of 200 users; its weight is 10%"


def test_clients_hanging_up_on_streams_free_their_slots_and_rows(
    make_app: Any, keys: dict[str, str], mock: MockOpenAI
) -> None:
    from tests.serving.conftest import Server

    mock.state.delay_s = 0.3
    with Server(make_app()) as server:
        for _ in range(2):  # twice the endpoint's max_concurrency of 8
            with httpx.Client(base_url=server.url, timeout=0.1) as c:
                for _ in range(8):
                    with pytest.raises(httpx.TimeoutException):
                        c.post("/v1/chat/completions", headers=auth(keys["client"]),
                               json={"model": "mock", "messages": Q, "stream": True})
        time.sleep(1.0)
        status = httpx.get(f"{server.url}/admin/status", headers=auth(keys["admin"])).json()
        assert status["in_flight"]["mock"] == 0
        mock.state.delay_s = 0.0
        ok = httpx.post(f"{server.url}/v1/chat/completions", headers=auth(keys["client"]),
                        json={"model": "mock", "messages": Q, "stream": True})
        assert ok.status_code == 200
    rows = Store.open().list_requests(endpoint="mock", limit=100)
    assert len(rows) == 17 and all(r["status"] in (200, 499) for r in rows)
