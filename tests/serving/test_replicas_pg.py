"""Two gateway processes (`--workers 2`) on a PostgreSQL request log with limits in Redis:
SIGKILL of the whole gateway while chats and votes are in flight loses no acknowledged
row; users keep their variant across the replicas; an alias move reaches both replicas
within the refresh interval with no failed request."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from llmops.registry import get_registry
from llmops.serving.keys import create_key
from llmops.serving.router import assign
from llmops.store import FEEDBACK, REQUESTS, Store
from tests.serving.conftest import auth
from tests.serving.replicas import Replicas, needs_redis

pytestmark = [pytest.mark.postgres, pytest.mark.slow, needs_redis]
Q = [{"role": "user", "content": "hello"}]


def _chat(c: httpx.Client, key: str, user: str) -> str | None:
    try:
        r = c.post("/v1/chat/completions", headers=auth(key),
                   json={"model": "chat", "messages": Q, "user": user})
    except httpx.HTTPError:
        return None
    return str(r.json()["id"]) if r.status_code == 200 else None


def _vote(c: httpx.Client, key: str, rid: str) -> str | None:
    try:
        r = c.post("/v1/feedback", headers=auth(key), json={"request_id": rid, "rating": "up"})
    except httpx.HTTPError:
        return None
    return rid if 200 <= r.status_code < 300 else None


def test_two_replicas_on_postgres_lose_nothing_keep_users_and_move_together(
        gw_home: Path, routes_file: Path, tmp_path: Path, pg_url: str) -> None:
    store = Store(pg_url)
    client = create_key(store, name="load", role="client")[1]
    reviewer = create_key(store, name="rev", role="reviewer")[1]
    admin = create_key(store, name="ops", role="admin")[1]
    store.close()
    gw = Replicas(gw_home, routes_file, tmp_path, LLMOPS_STORE_URL=pg_url,
                  LLMOPS_GATEWAY__REFRESH_INTERVAL_S="0.5").start()

    # SIGKILL mid-flight, twice; every acknowledged chat and vote has its one row
    acknowledged_chats: list[str] = []
    acknowledged_votes: list[str] = []
    for round_no in range(2):
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            seeds = [_chat(c, client, f"seed-{round_no}-{i}") for i in range(40)]
        assert all(seeds)
        acknowledged_chats += [s for s in seeds if s]
        answered = threading.Semaphore(0)
        jobs: list[tuple[str, str]] = [("vote", s) for s in seeds if s]
        jobs += [("chat", f"u-{round_no}-{i}") for i in range(160)]

        def run(job: tuple[str, str], c: httpx.Client,
                answered: threading.Semaphore = answered) -> tuple[str, str | None]:
            kind, arg = job
            out = (kind, _chat(c, client, arg) if kind == "chat" else _vote(c, reviewer, arg))
            answered.release()
            return out

        with httpx.Client(base_url=gw.url, timeout=10,
                          limits=httpx.Limits(max_connections=24)) as c, \
                ThreadPoolExecutor(24) as pool:
            futures = [pool.submit(run, j, c) for j in jobs]
            for _ in range(60 + 30 * round_no):
                answered.acquire(timeout=30)
            gw.kill(signal.SIGKILL)
            outcomes = [f.result() for f in futures]
        chats = [v for k, v in outcomes if k == "chat" and v]
        votes = [v for k, v in outcomes if k == "vote" and v]
        assert 0 < len(chats) + len(votes) < len(jobs), "the kill was not mid-flight"
        acknowledged_chats += chats
        acknowledged_votes += votes
        gw = Replicas(gw_home, routes_file, tmp_path, LLMOPS_STORE_URL=pg_url,
                  LLMOPS_GATEWAY__REFRESH_INTERVAL_S="0.5").start()
    check = Store(pg_url)
    with check.engine.connect() as conn:
        rows = dict(conn.execute(sa.select(REQUESTS.c.id, sa.func.count()).where(
            REQUESTS.c.id.in_(acknowledged_chats)).group_by(REQUESTS.c.id)).all())
        votes = dict(conn.execute(sa.select(FEEDBACK.c.request_id, sa.func.count()).where(
            FEEDBACK.c.request_id.in_(acknowledged_votes)).group_by(
                FEEDBACK.c.request_id)).all())
    check.close()
    assert all(rows.get(r) == 1 for r in acknowledged_chats), "an acknowledged chat has no row"
    assert all(votes.get(r) == 1 for r in acknowledged_votes), "an acknowledged vote is lost"

    # the same user, the same variant, on whichever replica answers
    def variant(user: str) -> str:
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            r = c.post("/v1/chat/completions", headers=auth(admin),
                       json={"model": "chat", "messages": Q, "user": user})
        assert r.status_code == 200, r.text
        return str(r.headers["x-llmops-variant"])

    weights = [("production", 90.0), ("staging", 10.0)]
    for user in (f"sticky-{i}" for i in range(6)):
        assert {variant(user) for _ in range(5)} == {assign("chat", user, weights)}

    # an alias move under load reaches both replicas, no request fails
    users = [u for u in (f"p-{i}" for i in range(300))
             if assign("chat", u, weights) == "production"][:16]
    stop = threading.Event()
    results: list[tuple[float, int, str]] = []

    def load(n: int) -> None:
        i = 0
        while not stop.is_set():
            with httpx.Client(base_url=gw.url, timeout=10) as c:  # new connections: both
                r = c.post("/v1/chat/completions", headers=auth(admin), json={
                    "model": "chat", "messages": Q, "user": users[(n + i) % len(users)]})
            results.append((time.monotonic(), r.status_code, r.headers.get("x-llmops-chain", "")))
            i += 1

    with ThreadPoolExecutor(6) as pool:
        for n in range(6):
            pool.submit(load, n)
        time.sleep(1.0)
        moving = time.monotonic()  # a replica may see the alias before the call returns
        get_registry().move_alias("chain.chat", "production", 2, expect=1)
        moved = time.monotonic()
        time.sleep(0.5 + 4.0)  # the refresh interval, plus a loaded machine's slack
        stop.set()
    assert {s for _, s, _ in results} == {200}
    before = {c for t, _, c in results if t < moving}
    after = [c for t, _, c in results if t > moved + 0.5 + 3.0]
    assert before == {"chain.chat/1"} and after and set(after) == {"chain.chat/2"}, (
        before, set(after))
    gw.kill(signal.SIGTERM)
