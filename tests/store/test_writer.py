"""The group-commit writer: many writers share commits, a lone one never waits, a 2xx
(a resolved future) means committed, and one bad write fails alone."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from llmops.store import Store, StoreError, UnknownRequestError
from tests.store.conftest import row


class Transactions:
    """Transactions committed on a store's connections, counted where the database sees them.

    SQLite: from each connection's statement trace (a COMMIT, or a write statement outside
    BEGIN ... COMMIT, which is its own transaction), so the writer's driver-level fast path
    counts too. PostgreSQL: SQLAlchemy's commit events.
    """

    def __init__(self, store: Store) -> None:
        self.count = 0
        self._lock = threading.Lock()
        if store.engine.dialect.name == "sqlite":
            sa.event.listen(store.engine, "checkout", self._trace_connection)
        else:
            sa.event.listen(store.engine, "commit", lambda _conn: self._add())

    def _add(self) -> None:
        with self._lock:
            self.count += 1

    def _trace_connection(self, dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        in_tx = False

        def trace(sql: str) -> None:
            nonlocal in_tx
            verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
            if verb == "BEGIN":
                in_tx = True
            elif verb in ("COMMIT", "END"):
                in_tx = False
                self._add()
            elif verb == "ROLLBACK":
                in_tx = False
            elif verb in ("INSERT", "UPDATE", "DELETE") and not in_tx:
                self._add()

        dbapi_conn.set_trace_callback(trace)


def test_group_commit_under_concurrency_and_close_drains(store_url: str) -> None:
    store = Store(store_url)
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
    again = Store(store_url)
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


def test_async_writes_commit_in_groups_and_survive_a_cancelled_waiter(store_url: str) -> None:
    """On an event loop: 201 writes at once share a few commits, the loop is woken once per
    group (not per write), and a waiter that gives up does not undo its write."""
    store = Store(store_url)
    commits = Transactions(store)
    wakeups = 0

    async def main() -> None:
        nonlocal wakeups
        loop = asyncio.get_running_loop()
        call_soon_threadsafe = loop.call_soon_threadsafe

        def counted(*args: Any, **kw: Any) -> Any:
            nonlocal wakeups
            wakeups += 1
            return call_soon_threadsafe(*args, **kw)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]
        futs = [store.submit_async(store.insert_request_op(row(f"a{i}"))) for i in range(200)]
        gone = store.submit_async(store.insert_request_op(row("cancelled")))
        gone.cancel()  # the waiter gives up; the write still happens
        await asyncio.gather(*futs)
        while store.pending:  # the cancelled write's group
            await asyncio.sleep(0.001)
        grouped, woken = commits.count, wakeups
        assert grouped >= 1 and grouped * 4 < 201, grouped  # each write alone: 201 commits
        assert woken <= grouped, (woken, grouped)
        bad = store.submit_async(store.feedback_op("missing", reviewer="x", rating="up"))
        with pytest.raises(UnknownRequestError):
            await bad

    asyncio.run(main())
    store.close()
    check = Store(store_url)
    assert check.count_requests() == 201 and check.get_request("cancelled") is not None
    check.close()


def test_the_transaction_counter_sees_every_lone_commit(store: Store) -> None:
    """The check above would catch a writer that commits each write alone."""
    commits = Transactions(store)
    for i in range(5):
        store.log_request(row(f"lone{i}"))
    store.add_feedback("lone0", reviewer="alice", rating="up")
    assert commits.count == 6


def test_a_locked_database_does_not_stall_the_event_loop(tmp_path: Path) -> None:
    """Another process holding the write lock: the writer waits for it, the loop goes on."""
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


def test_a_lone_writer_never_waits_and_a_crowd_shares_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The group-commit window costs a lone client nothing; concurrent writes share commits."""
    import llmops.store.writer as writer_module

    waits: list[float] = []
    real_sleep = time.sleep

    def spy(seconds: float) -> None:
        if threading.current_thread().name == "llmops-store":
            waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(writer_module.time, "sleep", spy)
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
