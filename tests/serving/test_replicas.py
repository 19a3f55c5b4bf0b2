"""Several gateway processes behind one port (`llmops serve --workers 2`), limits in Redis.

With `gateway.redis_url` the per-key rate limit and the per-key concurrency cap hold
across the replicas together (each process alone would allow the whole limit); the
same user lands on the same variant whichever replica answers; a reviewer's session
cookie and CSRF token made on one replica work on the other. Also the limiter alone:
one bucket, atomic under concurrent takers, and a fallback when Redis is down.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llmops.serving.limits import RateLimiter
from tests.serving.conftest import ROUTES, auth
from tests.serving.replicas import REDIS, Replicas, needs_redis


@needs_redis
def test_one_bucket_for_every_taker_and_a_fallback_when_redis_is_down() -> None:
    from llmops.serving.shared_limits import SharedLimits

    async def go() -> tuple[list[float | None], list[float | None], float | None]:
        a, b = SharedLimits(REDIS, prefix=f"t{uuid.uuid4().hex}"), SharedLimits(REDIS)
        b.prefix = a.prefix  # two replicas of one deployment
        local = RateLimiter(0.5, 10)
        takes = await asyncio.gather(*[(a if i % 2 else b).take("rate", "k1", local)
                                       for i in range(25)])
        other = [await a.take("rate", "k2", local) for _ in range(3)]
        down = SharedLimits("redis://127.0.0.1:1/0")
        fallback = await down.take("rate", "k3", RateLimiter(1, 1))
        for limits in (a, b, down):
            await limits.close()
        return takes, other, fallback

    takes, other, fallback = asyncio.run(go())
    assert sum(t is None for t in takes) == 10  # the burst, once, across both
    assert all(t is not None and 0 < t <= 2.1 for t in takes if t is not None)
    assert other == [None, None, None]  # another key has its own bucket
    assert fallback is None  # Redis down: the process's own limiter decides


def _routes(tmp: Path) -> Path:
    routes: dict[str, Any] = yaml.safe_load(yaml.safe_dump(ROUTES))
    routes["rate_limit"] = {"requests_per_s": 0.01, "burst": 12}
    routes["endpoints"]["mock"]["limits"].update(max_concurrency_per_key=3, timeout_s=5)
    path = tmp / "routes.yaml"
    path.write_text(yaml.safe_dump(routes))
    return path


@needs_redis
@pytest.mark.slow
def test_two_replicas_share_limits_assignments_and_sessions(
        gw_home: Path, keys: dict[str, str], tmp_path: Path, mock: Any) -> None:
    replicas = Replicas(gw_home, _routes(tmp_path), tmp_path).start()
    try:
        assert len(replicas.readyz) == 2
        assert {r["limits"] for r in replicas.readyz.values()} == {"redis (every replica)"}

        # the rate limit: a burst of 12 for the key across both replicas, not 12 each
        def chat(user: str) -> httpx.Response:
            with httpx.Client(base_url=replicas.url, timeout=10) as c:  # spread over both
                return c.post("/v1/chat/completions", headers=auth(keys["client"]),
                              json={"model": "chat", "user": user,
                                    "messages": [{"role": "user", "content": "hi"}]})

        codes = Counter(chat("same-user").status_code for _ in range(30))
        assert codes == {200: 12, 429: 18}, codes

        # sticky A/B: one user, one variant, whichever replica (the admin key has no limit)
        def variant(user: str) -> str:
            with httpx.Client(base_url=replicas.url, timeout=10) as c:
                r = c.post("/v1/chat/completions", headers=auth(keys["admin"]),
                           json={"model": "chat", "user": user,
                                 "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
            return str(r.headers["x-llmops-variant"])

        for user in ("ann", "bo", "cy", "di"):
            assert len({variant(user) for _ in range(6)}) == 1

        # the per-key cap (3 on `mock`) across replicas: 6 slow requests, 3 get 429
        mock.state.delay_s = 1.5

        async def slow() -> list[int]:
            async def one() -> int:
                async with httpx.AsyncClient(base_url=replicas.url, timeout=20) as c:
                    r = await c.post("/v1/chat/completions", headers=auth(keys["admin"]),
                                     json={"model": "mock", "messages": [
                                         {"role": "user", "content": "hi"}]})
                    return r.status_code
            return await asyncio.gather(*[one() for _ in range(6)])

        assert sorted(asyncio.run(slow())) == [200, 200, 200, 429, 429, 429]
        mock.state.delay_s = 0.0

        # a session made on one replica works on the other (cookie, then CSRF)
        with httpx.Client(base_url=replicas.url, timeout=10) as c:
            r = c.post("/signin", data={"key": keys["reviewer"], "next": "/review"})
            assert r.status_code == 303, r.text
            cookie = r.headers["set-cookie"].split(";", 1)[0]
        served: set[str] = set()
        for _ in range(60):  # new connections until both replicas served the page
            with httpx.Client(base_url=replicas.url, timeout=10) as c:
                page = c.get("/review", headers={"cookie": cookie, "accept": "text/html"})
                assert page.status_code == 200, page.status_code
                served.add(c.get("/readyz").json()["replica"])  # same connection: same one
            if len(served) == 2:
                break
        assert len(served) == 2, served
    finally:
        replicas.kill()
