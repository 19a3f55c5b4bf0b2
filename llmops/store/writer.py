"""The group-commit writer: one thread commits every write, and a write's future resolves
only after the transaction that holds it has committed (a 2xx means the row is committed).

Callers hand over an operation: threads with `submit`, event loops with `submit_async`.
The driver releases the GIL for the database's own work, so the gateway's loop goes on
serving while the writer commits. After a lone write the writer waits a moment
(`COMMIT_WINDOW_S`) for others to join it, but only under concurrency: many concurrent
requests share one commit, a lone client never waits. On SQLite a group of inserts is one
multi-row INSERT, outside any explicit transaction (a statement is its own transaction),
with the statement compiled once and the values converted by SQLAlchemy's own bind
processors. Each event loop is woken once per group commit, not once per write.

Everything is bounded: a write that cannot commit within `commit_timeout_s` (the
database's lock held elsewhere, a stalled disk) fails with `StoreBusyError` and is never
committed after its waiter gave up; at `max_pending` waiting writes new ones are refused
at once; a writer thread that died is restarted on the next write (and by `watch()`),
and `state()` says how it is doing (for `/readyz`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from llmops.errors import LlmopsError, StoreBusyError, StoreError
from llmops.store.engine import BUSY_TIMEOUT_MS, is_busy, make_engine, writing
from llmops.store.handover import Item, hand_over
from llmops.store.inserts import Insert, InsertCompiler, run_batch

# Under concurrency the writer waits this long after a lone write for others to join its
# commit: fewer, larger commits (a commit costs about as much as several rows), a 2xx a
# little later. A lone client's writes never wait (see `_write_loop`).
COMMIT_WINDOW_S = 0.002
COMMIT_TIMEOUT_S = 10.0  # a write not committed by then fails (503 at the gateway)
MAX_PENDING = 10_000  # writes waiting at once; past it new writes are refused
LOCK_WAIT_MS = 200  # the writer's busy timeout per try: it re-checks deadlines between tries


@dataclass(frozen=True)
class WriterState:
    """How the writer is doing, for readiness probes and operators."""

    alive: bool  # the thread runs (or no write came yet)
    pending: int  # writes handed over and not yet committed or failed
    blocked_s: float  # how long the current group has waited for the database (0: not)
    restarts: int  # threads that died and were replaced
    last_error: str | None  # what the last failed try met (no statement parameters)

    @property
    def ok(self) -> bool:
        return self.alive and self.blocked_s == 0.0

    def describe(self) -> str:
        if not self.alive:
            return "the log writer is not running"
        if self.blocked_s:
            return (f"the log writer has waited {self.blocked_s:.1f} s for the database "
                    f"({self.last_error or 'locked'}); {self.pending} writes pending")
        return f"ok; {self.pending} writes pending"


class Writer:
    """An engine on one SQLAlchemy URL and the thread that commits its writes in groups."""

    def __init__(self, url: str, *, max_batch: int = 256, window_s: float = COMMIT_WINDOW_S,
                 commit_timeout_s: float = COMMIT_TIMEOUT_S,
                 max_pending: int = MAX_PENDING) -> None:
        self.url = url
        self.engine = make_engine(url)  # reads: deferred transactions
        self.write_engine = writing(self.engine)  # writes: the write lock when they begin
        self.max_batch = max_batch
        self.window_s = window_s
        self.commit_timeout_s = commit_timeout_s
        self.max_pending = max_pending
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        self._conn_: Connection | None = None  # the writer thread's own connection
        self.pending = 0  # operations handed to the writer and not yet committed
        self.restarts = 0
        self._blocked_since: float | None = None
        self._last_error: str | None = None
        self._committing = False
        self._inserts = InsertCompiler(self.engine.dialect) \
            if self.engine.dialect.name == "sqlite" else None

    def submit(self, op: Callable[[Connection], Any], *,
               timeout_s: float | None = None) -> Future[Any]:
        """Run `op(conn)` in the writer's next transaction; the future resolves after commit,
        or fails with StoreBusyError if the write could not start within its timeout."""
        fut: Future[Any] = Future()
        self._put(op, fut, None, timeout_s)
        return fut

    def submit_async(self, op: Callable[[Connection], Any], *,
                     timeout_s: float | None = None) -> asyncio.Future[Any]:
        """`submit` for the running event loop: one wake-up per group commit, not per write.

        Cancelling the awaiting task does not cancel the write.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._put(op, fut, loop, timeout_s)
        return fut

    async def commit_async(self, op: Callable[[Connection], Any], *,
                           timeout_s: float | None = None) -> Any:
        """`op` committed, awaited at most its timeout (then StoreBusyError: a write whose
        waiter gave up is dropped before it starts). The caller going away does not cancel it.
        """
        limit = self.commit_timeout_s if timeout_s is None else timeout_s
        fut = self.submit_async(op, timeout_s=limit)
        # The writer fails a write past its deadline; this backstop (a little later, so the
        # writer's clearer error comes first) covers a writer stuck inside a commit. One
        # timer, no wait_for or shield: cancelling `fut` never cancels the queued write.
        timer = fut.get_loop().call_later(limit + 0.5, self._give_up, fut, limit)
        try:
            return await fut
        finally:
            timer.cancel()

    def _give_up(self, fut: asyncio.Future[Any], limit: float) -> None:
        if not fut.done():
            fut.set_exception(StoreBusyError(f"the request log did not commit within "
                                             f"{limit:g} s ({self.state().describe()})"))

    def saturated(self) -> bool:
        """Whether new writes would be refused now (the gateway answers 503 before work)."""
        return self.pending >= self.max_pending

    def _put(self, op: Callable[[Connection], Any], fut: Any, loop: Any,
             timeout_s: float | None) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        if self.pending >= self.max_pending:
            raise StoreBusyError(f"the request log has {self.pending} writes waiting (the cap "
                                 f"is {self.max_pending}); retry shortly")
        self._ensure_writer()
        limit = self.commit_timeout_s if timeout_s is None else timeout_s
        with self._writer_lock:
            self.pending += 1
        self._queue.put((op, fut, loop, time.monotonic() + limit))

    def _ensure_writer(self) -> None:
        writer = self._writer
        if writer is None or not writer.is_alive():
            with self._writer_lock:
                if self._writer is None or not self._writer.is_alive():
                    if self._writer is not None:
                        self.restarts += 1
                    self._drop_conn()  # the dead thread's connection
                    self._writer = threading.Thread(target=self._write_loop, name="llmops-store",
                                                    daemon=True)
                    self._writer.start()

    def watch(self) -> WriterState:
        """Restart the writer if it died with writes waiting; its state (for /readyz).

        A writer that gave up a group on a locked database stays "blocked" until a write
        commits; when no write is waiting, a short probe looks whether the lock went.
        """
        if not self._closed and self.pending and self._writer is not None and (
                not self._writer.is_alive()):
            self._ensure_writer()
        if self._blocked_since is not None and not self._committing and self._probe():
            self._unblocked()
        return self.state()

    def _probe(self) -> bool:
        """Whether a write transaction could start now (waits at most ~50 ms)."""
        try:
            raw: Any = self.engine.raw_connection()
        except Exception:
            return False
        try:
            if self.engine.dialect.name == "sqlite":
                raw.execute("PRAGMA busy_timeout=50")
                raw.execute("BEGIN IMMEDIATE")
                raw.execute("ROLLBACK")
                raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            else:
                raw.cursor().execute("SELECT 1")
            return True
        except Exception:
            return False
        finally:
            with contextlib.suppress(Exception):
                raw.close()

    def state(self) -> WriterState:
        since = self._blocked_since
        alive = self._writer is None or self._writer.is_alive()
        return WriterState(alive, self.pending,
                           round(time.monotonic() - since, 3) if since is not None else 0.0,
                           self.restarts, self._last_error)

    def _write_loop(self) -> None:
        # The event loop goes on serving while this thread commits: the driver releases the
        # GIL for SQLite's (or PostgreSQL's) own work, which is most of a commit.
        # Waiting for company pays only under concurrency: the writer waits after a lone
        # write while writes have been arriving during commits (or the last wait gathered
        # some), and stops waiting as soon as a wait gathers nothing (a lone client).
        company = False
        batch: list[Item] = []
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                batch = [item]
                company, stop = self._gather(batch, company)
                self._commit(batch)
                batch = []
                if stop:
                    return
        except BaseException as exc:  # the thread dies: nobody may wait forever
            self._last_error = f"the writer stopped: {type(exc).__name__}"
            hand_over([(it, None, StoreError("the log writer stopped; retry"))
                        for it in batch])
            self._done(len(batch))
            raise

    def _gather(self, batch: list[Item], company: bool) -> tuple[bool, bool]:
        """Add the writes waiting now (after a moment, under concurrency) to `batch`:
        (whether writes come under concurrency, whether close was asked)."""
        if not self._queue.empty():
            company = True  # writes arrived while the last group committed
        elif company and self.window_s:
            time.sleep(self.window_s)  # a group commit: the writes of the next moment join
            company = not self._queue.empty()
        while len(batch) < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return company, True
            batch.append(nxt)
        return company, False

    def _expired(self, batch: list[Item]) -> list[Item]:
        """Fail the writes whose deadline passed (they never commit later); the others."""
        now = time.monotonic()
        late = [it for it in batch if it[3] <= now]
        if late:
            exc = StoreBusyError("the request log could not take the write in time "
                                 f"({self._last_error or 'the database is busy'})")
            hand_over([(it, None, exc) for it in late])
            self._done(len(late))
            return [it for it in batch if it[3] > now]
        return batch

    def _commit(self, batch: list[Item]) -> None:
        """Commit the group, waiting for the database's lock while the writes' deadlines
        allow; if one operation fails, redo each in its own transaction."""
        self._committing = True
        try:
            self._commit_group(batch)
        finally:
            self._committing = False

    def _commit_group(self, batch: list[Item]) -> None:
        while True:
            batch = self._expired(batch)
            if not batch:
                return
            ops = [item[0] for item in batch]
            try:
                conn = self._conn()
                if self._inserts is not None and all(type(op) is Insert for op in ops):
                    self._inserts.commit(conn, ops)  # the request log's hot path
                    results: list[Any] = [None] * len(ops)
                else:
                    with conn.begin():
                        results = run_batch(conn, ops, self._inserts)
            except Exception as exc:
                self._drop_conn()
                if is_busy(exc):
                    self._blocked()
                    continue
                self._one_by_one(batch)
                return
            self._unblocked()
            hand_over([(it, result, None) for it, result in zip(batch, results, strict=True)])
            self._done(len(batch))
            return

    def _one_by_one(self, batch: list[Item]) -> None:
        # One bad operation must not fail the others: each in its own transaction.
        for item in batch:
            while True:
                if self._expired([item]) == []:
                    break
                try:
                    conn = self._conn()
                    with conn.begin():
                        result = item[0](conn)
                except Exception as exc:
                    if not isinstance(exc, LlmopsError):  # a database error, not the op's own
                        self._drop_conn()
                    if is_busy(exc):
                        self._blocked()
                        continue
                    hand_over([(item, None, exc)])
                else:
                    self._unblocked()
                    hand_over([(item, result, None)])
                self._done(1)
                break

    def _blocked(self) -> None:
        if self._blocked_since is None:
            self._blocked_since = time.monotonic()
        self._last_error = "the database is locked by another connection"
        time.sleep(0.01)  # the busy timeout already waited; a breath before the next try

    def _unblocked(self) -> None:
        self._blocked_since = None

    def _conn(self) -> Connection:
        # The writer keeps one connection: no pool checkout and reset per group commit.
        if self._conn_ is None:
            conn = self.write_engine.connect()
            if self.engine.dialect.name == "sqlite":  # short tries: deadlines are checked
                conn.connection.dbapi_connection.execute(  # type: ignore[union-attr]
                    f"PRAGMA busy_timeout={LOCK_WAIT_MS}")
            self._conn_ = conn
        return self._conn_

    def _drop_conn(self) -> None:
        conn, self._conn_ = self._conn_, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _done(self, n: int) -> None:
        with self._writer_lock:
            self.pending = max(0, self.pending - n)

    def close(self, timeout_s: float | None = None) -> bool:
        """Commit every pending write, stop the writer, release connections.

        With `timeout_s`, give up waiting after that long (the writes still waiting were
        never acknowledged); whether everything was committed.
        """
        if self._closed:
            return True
        self._closed = True
        done = True
        if self._writer is not None and self._writer.is_alive():
            self._queue.put(None)
            self._writer.join(timeout_s)
            done = not self._writer.is_alive()
        if done:
            self._drop_conn()
            self.engine.dispose()
        return done

