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
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmops.errors import StoreError
from llmops.store.engine import make_engine

# Under concurrency the writer waits this long after a lone write for others to join its
# commit: fewer, larger commits (a commit costs about as much as several rows), a 2xx a
# little later. A lone client's writes never wait (see `_write_loop`).
COMMIT_WINDOW_S = 0.002
MULTIROW_MAX = 64  # rows in one INSERT statement (SQLite allows 32,766 variables)

_Item = tuple[Callable[[Connection], Any], Any, Any]  # (operation, future, its loop or None)


@dataclass(frozen=True)
class Insert:
    """A write operation that inserts one row; neighbours in a batch go as one executemany."""

    table: sa.Table
    values: dict[str, Any]

    def __call__(self, conn: Connection) -> None:
        conn.execute(self.table.insert(), [self.values])


class Writer:
    """An engine on one SQLAlchemy URL and the thread that commits its writes in groups."""

    def __init__(self, url: str, *, max_batch: int = 256,
                 window_s: float = COMMIT_WINDOW_S) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        self._conn_: Connection | None = None  # the writer thread's own connection
        self.pending = 0  # operations handed to the writer and not yet committed
        self._inserts = InsertCompiler(self.engine.dialect) \
            if self.engine.dialect.name == "sqlite" else None

    def submit(self, op: Callable[[Connection], Any]) -> Future[Any]:
        """Run `op(conn)` in the writer's next transaction; the future resolves after commit."""
        fut: Future[Any] = Future()
        self._put((op, fut, None))
        return fut

    def submit_async(self, op: Callable[[Connection], Any]) -> asyncio.Future[Any]:
        """`submit` for the running event loop: one wake-up per group commit, not per write.

        Cancelling the awaiting task does not cancel the write.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._put((op, fut, loop))
        return fut

    def _put(self, item: _Item) -> None:
        if self._closed:
            raise StoreError("the store is closed")
        self._ensure_writer()
        with self._writer_lock:
            self.pending += 1
        self._queue.put(item)

    def _ensure_writer(self) -> None:
        if self._writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_loop, name="llmops-store",
                                                    daemon=True)
                    self._writer.start()

    def _write_loop(self) -> None:
        # The event loop goes on serving while this thread commits: the driver releases the
        # GIL for SQLite's (or PostgreSQL's) own work, which is most of a commit.
        # Waiting for company pays only under concurrency: the writer waits after a lone
        # write while writes have been arriving during commits (or the last wait gathered
        # some), and stops waiting as soon as a wait gathers nothing (a lone client).
        company = False
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            if not self._queue.empty():
                company = True  # writes arrived while the last group committed
            elif company and self.window_s:
                time.sleep(self.window_s)  # a group commit: the writes of the next moment join
                company = not self._queue.empty()
            stop = False
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[_Item]) -> None:
        ops = [item[0] for item in batch]
        try:
            conn = self._conn()
            if self._inserts is not None and all(type(op) is Insert for op in ops):
                self._inserts.commit(conn, ops)  # the request log's hot path
                results: list[Any] = [None] * len(ops)
            else:
                with conn.begin():
                    results = _run_batch(conn, ops, self._inserts)
        except Exception:
            self._drop_conn()
            # One bad operation must not fail the others: redo each in its own transaction.
            for item in batch:
                try:
                    with self.engine.begin() as one:
                        result = item[0](one)
                except Exception as exc:
                    _hand_over([(item, None, exc)])
                else:
                    _hand_over([(item, result, None)])
                finally:
                    self._done(1)
            return
        _hand_over([(item, result, None) for item, result in zip(batch, results, strict=True)])
        self._done(len(batch))

    def _conn(self) -> Connection:
        # The writer keeps one connection: no pool checkout and reset per group commit.
        if self._conn_ is None:
            self._conn_ = self.engine.connect()
        return self._conn_

    def _drop_conn(self) -> None:
        conn, self._conn_ = self._conn_, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def _done(self, n: int) -> None:
        with self._writer_lock:
            self.pending -= n

    def close(self) -> None:
        """Commit every pending write, stop the writer, release connections."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
        self._drop_conn()
        self.engine.dispose()


class InsertCompiler:
    """Inserts for the driver directly: the statement compiled once per table and column set,
    values converted by SQLAlchemy's own bind processors (JSON, booleans, ...).

    SQLAlchemy's execute costs about 100 microseconds per call on top of the driver's
    executemany; on the gateway's event loop that is a tenth of a request.
    """

    def __init__(self, dialect: Any) -> None:
        self.dialect = dialect
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[str, list[tuple[str, Any]]]] = {}

    def _compiled(self, table: sa.Table, columns: tuple[str, ...]
                  ) -> tuple[str, list[tuple[str, Any]]]:
        key = (table.name, columns)
        compiled = self._cache.get(key)
        if compiled is None:
            stmt = table.insert().values({n: sa.bindparam(n) for n in columns})
            c = stmt.compile(dialect=self.dialect)
            order = list(c.positiontup or ())  # the placeholders' order, not the dict's
            if sorted(order) != sorted(columns):
                raise StoreError(f"cannot compile the insert into {table.name}: {order}")
            compiled = self._cache[key] = (str(c), [
                (n, table.c[n].type._cached_bind_processor(self.dialect)) for n in order])
        return compiled

    def __call__(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        sql, procs = self._compiled(table, tuple(rows[0]))
        params = [tuple(r[n] if p is None else p(r[n]) for n, p in procs) for r in rows]
        # in the transaction begun on this connection (by SQLAlchemy, or by `commit` below)
        conn.connection.dbapi_connection.executemany(sql, params)  # type: ignore[union-attr]

    def commit(self, conn: Connection, ops: list[Any]) -> None:
        """Inserts only, committed together on the driver's connection (autocommit mode).

        One run of rows into one table goes as one multi-row INSERT: a statement outside a
        transaction is its own transaction, so BEGIN, the rows and COMMIT are one step of
        SQLite's (the commit's WAL writes included) instead of one per row plus two.
        """
        dbapi: Any = conn.connection.dbapi_connection
        if _insert_run(ops, 0) == len(ops) and len(ops) <= MULTIROW_MAX:
            table, columns = ops[0].table, tuple(ops[0].values)
            sql, procs = self._compiled(table, columns)
            head, _, one = sql.partition(" VALUES ")
            params = [r[n] if p is None else p(r[n]) for r in (o.values for o in ops)
                      for n, p in procs]
            dbapi.execute(f"{head} VALUES {', '.join([one] * len(ops))}", params)
            return
        dbapi.execute("BEGIN IMMEDIATE")
        try:
            i = 0
            while i < len(ops):
                j = _insert_run(ops, i)
                self(conn, ops[i].table, [o.values for o in ops[i:j]])
                i = j
            dbapi.execute("COMMIT")
        except BaseException:
            if dbapi.in_transaction:
                dbapi.execute("ROLLBACK")
            raise


def _insert_run(ops: list[Any], i: int) -> int:
    """The end of the run of inserts from `i` on into one table with the same columns."""
    j = i + 1
    while j < len(ops) and isinstance(ops[j], Insert) and ops[j].table is ops[i].table and (
            ops[j].values.keys() == ops[i].values.keys()):
        j += 1
    return j


def _run_batch(conn: Connection, ops: list[Callable[[Connection], Any]],
               inserts: InsertCompiler | None = None) -> list[Any]:
    """Run the operations in order; runs of inserts into one table become one executemany."""
    results: list[Any] = []
    i = 0
    while i < len(ops):
        op = ops[i]
        if isinstance(op, Insert):
            j = _insert_run(ops, i)
            rows = [o.values for o in ops[i:j]]  # type: ignore[attr-defined]
            if inserts is not None:
                inserts(conn, op.table, rows)
            else:
                conn.execute(op.table.insert(), rows)
            results.extend([None] * (j - i))
            i = j
        else:
            results.append(op(conn))
            i += 1
    return results


def _hand_over(outcomes: list[tuple[_Item, Any, BaseException | None]]) -> None:
    """Resolve the futures of committed operations; each event loop is woken once."""
    by_loop: dict[Any, list[tuple[Any, Any, BaseException | None]]] = {}
    for (_, fut, loop), result, exc in outcomes:
        if loop is None:
            _resolve(fut, result, exc)
        else:
            by_loop.setdefault(loop, []).append((fut, result, exc))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
            loop.call_soon_threadsafe(_resolve_all, items)


def _resolve_all(items: list[tuple[Any, Any, BaseException | None]]) -> None:
    for fut, result, exc in items:
        if not fut.done():  # a waiter that gave up does not undo the commit
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(result)


def _resolve(fut: Future[Any], result: Any = None, exc: BaseException | None = None) -> None:
    """Hand the outcome over; a waiter that gave up (cancelled) does not undo the commit."""
    if fut.cancelled():
        return
    try:
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)
    except InvalidStateError:
        pass
