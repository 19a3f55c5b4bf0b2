"""Durability and shutdown of a real gateway process.

SIGKILL while chat requests and feedback posts are in flight, restart: every
request and every vote that got a 2xx has exactly one row. SIGTERM: the
requests in flight finish, and their rows are there.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from llmops.serving.keys import create_key
from llmops.store import FEEDBACK, HISTORY, REQUESTS, Store
from tests.serving.conftest import auth, free_port, gateway_env

Q = [{"role": "user", "content": "hello"}]
ROUNDS = 5


class Gateway:
    """`python -m llmops.serving` on a port of its own."""

    def __init__(self, home: Path, routes: Path, tmp: Path) -> None:
        self.home, self.routes, self.tmp = home, routes, tmp
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Gateway:
        self.log = (self.tmp / f"gateway-{time.monotonic_ns()}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmops.serving", "--port", str(self.port),
             "--routes", str(self.routes), "--drain", "10"],
            env=gateway_env(self.home), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "gateway exited at start"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("gateway not ready within 60 s")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.log.close()


def _chat(c: httpx.Client, key: str) -> str | None:
    try:
        r = c.post("/v1/chat/completions", headers=auth(key),
                   json={"model": "chat", "messages": Q})
    except httpx.HTTPError:
        return None
    return str(r.json()["id"]) if 200 <= r.status_code < 300 else None


def _vote(c: httpx.Client, key: str, name: str, rid: str) -> tuple[str, str] | None:
    try:
        r = c.post("/v1/feedback", headers=auth(key), json={"request_id": rid, "rating": "up"})
    except httpx.HTTPError:
        return None
    return (rid, name) if 200 <= r.status_code < 300 else None


def _check(store: Store, chat_ids: list[str], votes: list[tuple[str, str]]) -> None:
    with store.engine.connect() as conn:
        for rid in chat_ids:
            n = conn.execute(sa.select(sa.func.count()).select_from(REQUESTS).where(
                REQUESTS.c.id == rid)).scalar_one()
            assert n == 1, f"request {rid} got a 2xx but has {n} rows"
        for rid, name in votes:
            for table in (FEEDBACK, HISTORY):
                n = conn.execute(sa.select(sa.func.count()).select_from(table).where(
                    (table.c.request_id == rid) & (table.c.reviewer == name))).scalar_one()
                assert n == 1, f"vote {rid}/{name} got a 2xx but has {n} rows in {table.name}"


def test_sigkill_in_flight_loses_no_acknowledged_row(
    gw_home: Path, routes_file: Path, tmp_path: Path,
) -> None:
    store = Store.open()
    client_key = create_key(store, name="load", role="client")[1]
    reviewers = [(f"r{i}", create_key(store, name=f"r{i}", role="reviewer")[1]) for i in range(4)]
    store.close()
    rng = random.Random(5)
    gw = Gateway(gw_home, routes_file, tmp_path).start()
    acknowledged: list[tuple[list[str], list[tuple[str, str]]]] = []
    for round_no in range(ROUNDS):
        with httpx.Client(base_url=gw.url, timeout=10) as c:
            seeds = [_chat(c, client_key) for _ in range(50)]
        seed_ids = [s for s in seeds if s]
        assert len(seed_ids) == 50
        # 200 feedback posts (distinct request and reviewer) and 200 chat requests at once
        jobs: list[tuple[str, Any]] = [("vote", (name, key, rid)) for rid in seed_ids
                                       for name, key in reviewers]
        jobs += [("chat", None)] * 200
        rng.shuffle(jobs)
        with httpx.Client(base_url=gw.url, timeout=10,
                          limits=httpx.Limits(max_connections=32)) as c, ThreadPoolExecutor(32) as pool:
            answered = threading.Semaphore(0)

            def run(job: tuple[str, Any], answered: threading.Semaphore = answered) -> Any:
                kind, arg = job
                if kind == "chat":
                    out = ("chat", _chat(c, client_key))
                else:
                    name, key, rid = arg
                    out = ("vote", _vote(c, key, name, rid))
                answered.release()
                return out

            futures = [pool.submit(run, j) for j in jobs]
            for _ in range(rng.randint(20, 250)):  # kill after that many answers: mid-flight
                answered.acquire(timeout=30)
            gw.signal(signal.SIGKILL)
            outcomes = [f.result() for f in futures]
        chats = [v for k, v in outcomes if k == "chat" and v]
        votes = [v for k, v in outcomes if k == "vote" and v]
        assert 0 < len(chats) + len(votes) < 400, f"round {round_no}: kill was not mid-flight"
        acknowledged.append((seed_ids + chats, votes))
        gw = Gateway(gw_home, routes_file, tmp_path).start()  # restart on the same log
        check = Store.open()
        for ids, vs in acknowledged:
            _check(check, ids, vs)
        check.close()
    gw.signal(signal.SIGTERM)


def test_sigterm_drains_requests_in_flight_and_their_rows(
    gw_home: Path, routes_file: Path, tmp_path: Path, keys: dict[str, str], mock: Any,
) -> None:
    gw = Gateway(gw_home, routes_file, tmp_path).start()
    mock.state.delay_s = 0.7
    with httpx.Client(base_url=gw.url, timeout=10) as c, ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(c.post, "/v1/chat/completions", headers=auth(keys["client"]),
                               json={"model": "mock", "messages": Q, "stream": i % 2 == 0})
                   for i in range(6)]
        time.sleep(0.3)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
        # uvicorn re-raises the signal once it has shut down cleanly
        assert gw.proc.wait(timeout=30) in (0, -signal.SIGTERM)
    assert [r.status_code for r in responses] == [200] * 6
    store = Store.open()
    for r in responses:
        rid = r.headers["x-request-id"]
        row = store.get_request(rid)
        assert row is not None and row["status"] == 200 and row["answer"], rid
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{gw.url}/healthz", timeout=1)
