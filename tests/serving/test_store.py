"""The request and feedback log on SQLite and on PostgreSQL, through the same code."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llmops.store import (
    MIGRATIONS,
    RequestRow,
    Store,
    StoreError,
    UnknownRequestError,
    migrate,
    schema_version,
)

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def _pg_available() -> bool:
    try:
        with sa.create_engine(PG_URL, connect_args={"connect_timeout": 2}).connect():
            return True
    except Exception:
        return False


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store URL: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'requests.db'}"
        return
    if not _pg_available():
        pytest.skip("no PostgreSQL at 127.0.0.1:5432")
    schema = f"llmops_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = Store(url)
    yield s
    s.close()


def row(rid: str, **kw: object) -> RequestRow:
    base: dict[str, object] = dict(
        id=rid, endpoint="rag-qa", status=200, variant="production", chain="chain.rag_qa",
        chain_version=3, key_id="kabc", user="u1",
        messages=[{"role": "user", "content": "What does with do?"}], answer="It manages.",
        sources=[{"id": "c1", "score": 0.9}],
        lineage={"prompt_version": 2, "index_version": 7, "chunk_ids": ["c1"]},
        prompt_version=2, index_version="7", latency_ms=12.5, prompt_tokens=10,
        completion_tokens=3)
    base.update(kw)
    return RequestRow(**base)  # type: ignore[arg-type]


def test_migrations_apply_once_and_refuse_a_newer_schema(url: str) -> None:
    s = Store(url)
    assert schema_version(s.engine) == len(MIGRATIONS)
    assert migrate(s.engine) == []  # forward-only and idempotent
    with s.engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO schema_migrations VALUES (:v, 0)"),
                     {"v": len(MIGRATIONS) + 1})
    s.close()
    with pytest.raises(StoreError, match="newer than this llmops"):
        Store(url)


def test_a_version_1_log_keeps_its_rows_and_gets_the_lighter_indexes(url: str) -> None:
    """Migration 2 on a log made by migration 1 alone: rows kept, indexes as the writer needs."""
    from llmops.store import _MIGRATIONS_TABLE

    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a log as the first release left it
        MIGRATIONS[0](conn)
        _MIGRATIONS_TABLE.create(conn)
        conn.execute(_MIGRATIONS_TABLE.insert().values(version=1, applied_at=0.0))
    with engine.begin() as conn:  # a row written by the first release
        conn.execute(sa.text("INSERT INTO request_log (id, created_at, endpoint, stream, status)"
                             " VALUES ('v1row', 1.0, 'rag-qa', false, 200)"))
    engine.dispose()
    s = Store(url)
    assert schema_version(s.engine) == len(MIGRATIONS) and s.get_request("v1row") is not None
    names = {i["name"] for i in sa.inspect(s.engine).get_indexes("request_log")}
    assert "ix_request_log_endpoint" not in names and "ix_request_log_shadow_of" in names
    s.log_request(row("s1", shadow_of="v1row"))
    assert [r["id"] for r in s.list_requests(limit=10, include_shadow=True)
            if r["shadow_of"] == "v1row"] == ["s1"]
    s.close()


def test_request_rows_round_trip_with_lineage(store: Store) -> None:
    store.log_request(row("r1"))
    got = store.get_request("r1")
    assert got is not None
    assert got["messages"][0]["content"] == "What does with do?"
    assert got["lineage"]["chunk_ids"] == ["c1"] and got["chain_version"] == 3
    assert store.get_request("nope") is None
    store.submit(store.update_request_op("r1", status=504, error="slow")).result()
    assert store.get_request("r1")["status"] == 504  # type: ignore[index]


def test_last_vote_wins_per_reviewer_and_history_is_kept(store: Store) -> None:
    store.log_request(row("r1"))
    first = store.add_feedback("r1", reviewer="alice", rating="up")
    second = store.add_feedback("r1", reviewer="alice", rating="down", comment="wrong")
    store.add_feedback("r1", reviewer="bob", rating="up")
    assert (first.votes, second.votes, second.replaced) == (1, 2, True)
    assert second.created_at == first.created_at
    current = {(f["reviewer"], f["rating"]) for f in store.list_feedback(request_id="r1")}
    assert current == {("alice", "down"), ("bob", "up")}
    assert [h["rating"] for h in store.feedback_history("r1")] == ["up", "down", "up"]
    with pytest.raises(UnknownRequestError):
        store.add_feedback("missing", reviewer="alice", rating="up")
    with pytest.raises(StoreError, match="rating must be"):
        store.add_feedback("r1", reviewer="alice", rating="meh")


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, {"a", "b", "c"}),
    ({"rating": "down"}, {"b"}),
    ({"reviewer": "bob"}, {"c"}),
    ({"endpoint": "chat"}, {"c"}),
    ({"variant": "staging"}, {"b"}),
    ({"request_id": "a"}, {"a"}),
])
def test_feedback_filters(store: Store, filters: dict[str, str], expected: set[str]) -> None:
    store.log_request(row("a"))
    store.log_request(row("b", variant="staging"))
    store.log_request(row("c", endpoint="chat"))
    store.add_feedback("a", reviewer="alice", rating="up")
    store.add_feedback("b", reviewer="alice", rating="down")
    store.add_feedback("c", reviewer="bob", rating="up")
    assert {f["request_id"] for f in store.list_feedback(**filters)} == expected  # type: ignore[arg-type]


def test_export_joins_votes_with_their_requests(store: Store) -> None:
    for i in range(5):
        store.log_request(row(f"r{i}"))
        store.add_feedback(f"r{i}", reviewer="alice", rating="up" if i % 2 else "down")
    out = list(store.export_feedback(batch=2))
    assert [o["request_id"] for o in out] == [f"r{i}" for i in range(5)]
    assert out[0]["answer"] == "It manages." and out[0]["lineage"]["index_version"] == 7
    assert len(list(store.export_feedback(rating="up"))) == 2


def test_group_commit_under_concurrency_and_close_drains(url: str) -> None:
    store = Store(url)
    futures = []
    lock = threading.Lock()

    def writer(n: int) -> None:
        for i in range(50):
            fut = store.submit(store.insert_request_op(row(f"t{n}-{i}")))
            with lock:
                futures.append(fut)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()  # commits whatever is still queued
    assert all(f.done() and f.exception() is None for f in futures)
    again = Store(url)
    assert again.count_requests() == 400
    again.close()
    with pytest.raises(StoreError, match="closed"):
        store.submit(store.insert_request_op(row("late")))


def test_one_failing_operation_does_not_fail_its_batch(store: Store) -> None:
    store.log_request(row("dup"))
    ops = [store.insert_request_op(row("ok1")), store.insert_request_op(row("dup")),
           store.insert_request_op(row("ok2"))]
    futures = [store.submit(op) for op in ops]
    outcomes = [f.exception() for f in futures]
    assert outcomes[0] is None and outcomes[2] is None and outcomes[1] is not None
    assert store.get_request("ok1") and store.get_request("ok2")


def test_keys_are_found_by_hash_and_revoked(store: Store) -> None:
    store.add_key("k1", name="alice", role="reviewer", key_hash="h" * 64)
    found = store.find_key("h" * 64)
    assert found is not None and (found.name, found.role) == ("alice", "reviewer")
    assert store.revoke_key("k1") and not store.revoke_key("k1")
    assert store.find_key("h" * 64) is None
    with pytest.raises(StoreError, match="role must be"):
        store.add_key("k2", name="x", role="root", key_hash="g" * 64)


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    s = Store(f"sqlite:///{tmp_path / 'r.db'}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    s.close()


def test_the_gateway_logs_and_takes_votes_on_either_database(
    url: str, make_app: Any, keys: dict[str, str],
) -> None:
    """The same gateway code on SQLite and on PostgreSQL (keys live in the default store)."""
    from fastapi.testclient import TestClient

    from llmops.serving.keys import create_key

    store = Store(url)
    client_key = create_key(store, name="c", role="client")[1]
    reviewer_key = create_key(store, name="r", role="reviewer")[1]
    with TestClient(make_app(store=store)) as c:
        r = c.post("/v1/chat/completions", headers={"Authorization": f"Bearer {client_key}"},
                   json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        rid = r.json()["id"]
        v = c.post("/v1/feedback", headers={"Authorization": f"Bearer {reviewer_key}"},
                   json={"request_id": rid, "rating": "up"})
        assert v.status_code == 200
    check = Store(url)
    assert check.get_request(rid)["status"] == 200  # type: ignore[index]
    assert [f["reviewer"] for f in check.list_feedback(request_id=rid)] == ["r"]
    check.close()


@pytest.mark.parametrize(("query", "level"), [("", 1), ("?synchronous=full", 2),
                                              ("?synchronous=extra", 3)])
def test_sqlite_durability_level_comes_from_the_url(tmp_path: Path, query: str, level: int) -> None:
    s = Store(f"sqlite:///{tmp_path / 'r.db'}{query}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
    s.close()
    with pytest.raises(StoreError, match="synchronous must be"):
        Store(f"sqlite:///{tmp_path / 'r.db'}?synchronous=off")


def test_async_writes_commit_in_groups_and_survive_a_cancelled_waiter(url: str) -> None:
    """On an event loop: the writer thread's group commits, the loop woken once per group."""
    import asyncio

    store = Store(url)

    async def main() -> None:
        futs = [store.submit_async(store.insert_request_op(row(f"a{i}"))) for i in range(200)]
        gone = store.submit_async(store.insert_request_op(row("cancelled")))
        gone.cancel()  # the waiter gives up; the write still happens
        await asyncio.gather(*futs)
        bad = store.submit_async(store.feedback_op("missing", reviewer="x", rating="up"))
        with pytest.raises(UnknownRequestError):
            await bad

    asyncio.run(main())
    store.close()
    check = Store(url)
    assert check.count_requests() == 201 and check.get_request("cancelled") is not None
    check.close()


def test_a_locked_database_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    """Another process holding the write lock: the writer waits for it, the loop goes on."""
    import asyncio
    import sqlite3
    import time

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store(url)
    other = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # hold the write lock

    async def main() -> float:
        fut = store.submit_async(store.insert_request_op(row("late")))
        start = time.perf_counter()
        await asyncio.sleep(0.5)  # the loop keeps running meanwhile
        stalled = time.perf_counter() - start
        other.execute("COMMIT")
        await asyncio.wait_for(fut, 10)
        return stalled

    stalled = asyncio.run(main())
    assert stalled < 0.5 + 0.2  # the loop was never blocked on the lock
    assert store.get_request("late") is not None
    store.close()
    other.close()


def test_multirow_inserts_store_what_sqlalchemy_would(tmp_path: Path) -> None:
    import asyncio
    import dataclasses
    import sqlite3

    from llmops.store import REQUESTS

    path = tmp_path / "requests.db"
    store = Store(f"sqlite:///{path}")
    row = RequestRow(id="x", endpoint="rag-qa", status=200, created_at=1.5, stream=True,
                     messages=[{"role": "user", "content": "café?"}], answer="oui",
                     sources=[], lineage={"chunk_ids": ["kb:tea#0"], "n": 1}, latency_ms=2.5)

    async def grouped() -> None:  # one group: one multi-row INSERT by the driver directly
        await asyncio.gather(*(store.submit_async(store.insert_request_op(
            dataclasses.replace(row, id=f"a{i}"))) for i in range(3)))

    asyncio.run(grouped())
    with store.engine.begin() as conn:  # SQLAlchemy Core's own insert, for comparison
        conn.execute(REQUESTS.insert(), [store.insert_request_op(
            dataclasses.replace(row, id="b")).values])
    store.close()
    raw = {r[0]: r[1:] for r in sqlite3.connect(path).execute("SELECT * FROM request_log")}
    assert raw["a0"] == raw["a1"] == raw["a2"] == raw["b"]  # JSON, booleans and NULLs alike
    back = Store(f"sqlite:///{path}")
    got = back.get_request("a2")
    back.close()
    assert got is not None and got["messages"] == row.messages and got["lineage"] == row.lineage
    assert got["stream"] is True and got["error"] is None and got["sources"] == []


def test_a_lone_writer_never_waits_and_a_crowd_shares_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The group-commit window costs a lone client nothing; concurrent writes share commits."""
    import time as time_module

    import llmops.store as store_module

    waits: list[float] = []
    real_sleep = time_module.sleep

    def spy(seconds: float) -> None:
        if threading.current_thread().name == "llmops-store":
            waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(store_module.time, "sleep", spy)
    commits: list[int] = []
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    inner = store._commit
    monkeypatch.setattr(store, "_commit", lambda batch: (commits.append(len(batch)),
                                                         inner(batch))[1])
    for i in range(20):  # one client, one write at a time
        store.submit(store.insert_request_op(row(f"lone{i}"))).result()
    assert waits == [] and commits == [1] * 20

    commits.clear()
    futures = [store.submit(store.insert_request_op(row(f"crowd{i}"))) for i in range(300)]
    for f in futures:
        f.result()
    assert sum(commits) == 300 and len(commits) < 300  # writes shared commits

    waits.clear()
    for i in range(10):  # alone again: at most one wait before the writer stops waiting
        store.submit(store.insert_request_op(row(f"again{i}"))).result()
    assert len(waits) <= 1
    store.close()
    again = Store(f"sqlite:///{tmp_path / 'r.db'}")
    assert again.count_requests() == 330
    again.close()
