"""The gateway awaits a remote LLM on its event loop: no thread is held while it waits."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from llmops.serving.gateway import GatewayOptions
from llmops.store import Store
from tests.mock_openai import MockOpenAI
from tests.serving.conftest import ROUTES, Server, auth

Q = [{"role": "user", "content": "What does the with statement do?"}]


def test_many_slow_upstream_calls_share_two_threads(
    make_app: Any, keys: dict[str, str], mock: MockOpenAI, tmp_path: Path,
) -> None:
    routes = tmp_path / "wide.yaml"
    routes.write_text(yaml.safe_dump({**ROUTES, "endpoints": {**ROUTES["endpoints"], "wide": {
        "variants": [{"ref": "chain.mockchat@production", "weight": 100}],
        "limits": {"timeout_s": 10, "max_concurrency": 64}}}}))
    mock.state.delay_s = 0.4
    n, threads = 24, 2  # a thread per wait would take n / threads * 0.4 s = 4.8 s

    async def burst(url: str) -> tuple[list[httpx.Response], float]:
        async with httpx.AsyncClient(base_url=url, headers=auth(keys["client"]),
                                     timeout=30) as c:
            start = time.monotonic()
            out = await asyncio.gather(*(c.post("/v1/chat/completions", json={
                "model": "wide", "messages": Q, "user": f"u{i}"}) for i in range(n)))
            return list(out), time.monotonic() - start

    with Server(make_app(routes=routes, options=GatewayOptions(threads=threads))) as s:
        responses, took = asyncio.run(burst(s.url))
    assert [r.status_code for r in responses] == [200] * n
    assert took < 2.5, f"{n} calls of 0.4 s took {took:.1f} s on {threads} threads"
    assert all(r.json()["choices"][0]["message"]["content"].startswith("mock answer")
               for r in responses)
    rows = [Store.open().get_request(r.json()["id"]) for r in responses]
    assert all(row is not None and row["status"] == 200 for row in rows)


def test_a_timed_out_upstream_call_is_cancelled_not_left_running(
    make_app: Any, keys: dict[str, str], mock: MockOpenAI,
) -> None:
    mock.state.delay_s = 3.0  # the "mock" endpoint's timeout is 1 s
    with Server(make_app()) as s:
        start = time.monotonic()
        r = httpx.post(f"{s.url}/v1/chat/completions", headers=auth(keys["client"]),
                       json={"model": "mock", "messages": Q}, timeout=10)
        assert r.status_code == 504 and time.monotonic() - start < 2.5
        mock.state.delay_s = 0.0
        # the slot and the upstream connection are free again: the next call goes through
        ok = httpx.post(f"{s.url}/v1/chat/completions", headers=auth(keys["client"]),
                        json={"model": "mock", "messages": Q}, timeout=10)
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"].startswith("mock answer")
