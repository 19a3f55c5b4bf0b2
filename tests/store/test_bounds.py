"""The store's bounds on SQLite: reads never wait for the write lock, every write wait ends,
the queue has a cap, a dead writer is replaced, and no statement parameter reaches an error.

The write lock is held by a plain sqlite3 connection (`BEGIN IMMEDIATE`), as another
process (an admin's `llmops keys create`, a long eval write) would hold it.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from llmops.errors import StoreBusyError, StoreError
from llmops.store import REQUESTS, Store
from tests.store.conftest import row


@contextmanager
def write_lock(path: Path) -> Iterator[sqlite3.Connection]:
    """SQLite's write lock on `path`, held by another connection until the block ends."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "log.db"


def test_reads_run_while_another_connection_holds_the_write_lock(db: Path) -> None:
    store = Store(f"sqlite:///{db}")
    store.log_request(row("r1"))
    store.add_feedback("r1", reviewer="alice", rating="up")
    reads = {
        "find_key": lambda: store.find_key("0" * 64),
        "list_requests": lambda: store.list_requests(limit=5),
        "list_feedback": lambda: store.list_feedback(offset=999_999_999),
        "readable": store.readable,
        "vote_counts": lambda: store.vote_counts(by="variant"),
    }
    try:
        with write_lock(db), ThreadPoolExecutor(len(reads)) as pool:
            started = time.monotonic()
            futures = {name: pool.submit(fn) for name, fn in reads.items()}
            results = {name: f.result(timeout=10) for name, f in futures.items()}
            took = time.monotonic() - started
        # A read that took the write lock would wait out the 30 s busy timeout.
        assert took < 5, f"reads waited {took:.1f} s for the write lock"
        assert results["find_key"] is None and results["readable"] is True
        assert [r["id"] for r in results["list_requests"]] == ["r1"]
        assert results["list_feedback"] == []
    finally:
        store.close()


def test_a_write_past_its_timeout_fails_and_never_commits_later(db: Path) -> None:
    store = Store(f"sqlite:///{db}", commit_timeout_s=0.5)
    try:
        with write_lock(db):
            started = time.monotonic()
            fut = store.submit(store.insert_request_op(row("late")))
            with pytest.raises(StoreBusyError, match="in time"):
                fut.result(timeout=10)
            assert time.monotonic() - started < 3
            state = store.state()
            assert state.blocked_s > 0 and "locked" in state.describe()
        # the lock went: the writer takes new writes, and the late one stayed out
        store.submit(store.insert_request_op(row("next"))).result(timeout=10)
        assert store.state().ok
        assert [r["id"] for r in store.list_requests(limit=10)] == ["next"]
    finally:
        store.close()


def test_waiting_writes_have_a_cap_and_are_refused_at_once_past_it(db: Path) -> None:
    store = Store(f"sqlite:///{db}", commit_timeout_s=2.0, max_pending=3)
    try:
        with write_lock(db):
            waiting = [store.submit(store.insert_request_op(row(f"w{i}"))) for i in range(3)]
            assert store.saturated()
            started = time.monotonic()
            with pytest.raises(StoreBusyError, match="3 writes waiting"):
                store.submit(store.insert_request_op(row("over")))
            assert time.monotonic() - started < 0.5
            for fut in waiting:
                with pytest.raises(StoreBusyError):
                    fut.result(timeout=10)
        assert store.pending == 0 and not store.saturated()
    finally:
        store.close()


def test_an_async_wait_ends_when_the_writer_is_stuck_inside_a_commit(db: Path) -> None:
    """Past its deadline the writer fails a waiting write; a write already inside a
    commit that never returns is failed by the waiter's own timer, a little later."""
    import asyncio

    store = Store(f"sqlite:///{db}", commit_timeout_s=0.3)
    release = threading.Event()

    def stuck(conn: sa.Connection) -> str:
        release.wait(10)  # as a disk that stopped answering mid-commit
        return "late"

    async def main() -> tuple[float, Exception | None]:
        started = time.monotonic()
        try:
            await store.commit_async(stuck)
        except StoreBusyError as exc:
            return time.monotonic() - started, exc
        return time.monotonic() - started, None

    try:
        took, exc = asyncio.run(main())
        assert isinstance(exc, StoreBusyError) and "did not commit within 0.3 s" in str(exc)
        assert 0.7 <= took < 3, took
    finally:
        release.set()
        store.close()


def test_a_writer_thread_that_dies_fails_its_waiters_and_is_replaced(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(f"sqlite:///{db}")
    real = store._commit
    calls = {"n": 0}

    def dies_once(batch: list) -> None:  # type: ignore[type-arg]
        calls["n"] += 1
        if calls["n"] == 1:
            raise SystemExit("the thread dies")  # what no `except Exception` catches
        real(batch)

    monkeypatch.setattr(store, "_commit", dies_once)
    try:
        with pytest.raises(StoreError, match="writer stopped"):
            store.submit(store.insert_request_op(row("lost"))).result(timeout=10)
        deadline = time.monotonic() + 5
        while store.state().alive and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not store.state().alive and store.pending == 0
        store.submit(store.insert_request_op(row("after"))).result(timeout=10)
        state = store.watch()
        assert state.alive and state.restarts == 1
        assert [r["id"] for r in store.list_requests(limit=10)] == ["after"]
    finally:
        store.close()


def test_watch_restarts_a_dead_writer_that_has_writes_waiting(db: Path) -> None:
    store = Store(f"sqlite:///{db}")
    try:
        store.log_request(row("first"))
        writer = store._writer
        assert writer is not None
        store._queue.put(None)  # the thread ends as if it had died...
        writer.join(5)
        # ...with a write waiting in the queue that no thread would commit
        done = threading.Event()
        store.pending += 1
        fut_item = store.insert_request_op(row("stranded"))
        from concurrent.futures import Future
        fut: Future[None] = Future()
        fut.add_done_callback(lambda _f: done.set())
        store._queue.put((fut_item, fut, None, time.monotonic() + 10))
        assert not store.state().alive
        assert store.watch().restarts == 1
        assert done.wait(10) and fut.exception() is None
    finally:
        store.close()


def test_errors_carry_no_statement_parameters(db: Path) -> None:
    canary = "CANARY-7f3a-in-a-message"
    store = Store(f"sqlite:///{db}")
    try:
        store.log_request(row("dup", messages=[{"role": "user", "content": canary}]))
        with pytest.raises(sa.exc.IntegrityError) as err:
            store.log_request(row("dup", messages=[{"role": "user", "content": canary}]))
        assert canary not in str(err.value)
        with store.write_engine.begin() as conn, pytest.raises(sa.exc.IntegrityError) as err2:
            conn.execute(REQUESTS.insert().values(id="dup", endpoint=canary, status=200,
                                                  created_at=1.0))
        assert canary not in str(err2.value) and "hidden" in str(err2.value)
    finally:
        store.close()
