"""The request and feedback log: what the gateway served, and what reviewers thought of it.

The gateway writes it; evaluation, fine-tuning and monitoring read it. SQLAlchemy
Core on SQLite (WAL, `BEGIN IMMEDIATE`) by default; a PostgreSQL URL works with
the same code. On SQLite a committed row survives the process dying;
`sqlite:///...db?synchronous=full` makes it survive a power cut too.

Writes are committed in groups: callers hand over an operation and wait for
its future, which resolves only after the transaction that holds it has
committed (a 2xx from the gateway means the row is committed). One writer
thread commits for threads (`submit`) and event loops (`submit_async`) alike:
the driver releases the GIL for the database's own work, so the gateway's loop
goes on serving meanwhile. After a lone write the writer waits a moment
(`COMMIT_WINDOW_S`) for others to join it: many concurrent requests share one
commit. On SQLite a group of inserts is one multi-row INSERT, outside any
explicit transaction (a statement is its own transaction), with the statement
compiled once and the values converted by SQLAlchemy's own bind processors.

Schema changes are forward-only migrations, numbered, applied at open under a
lock (`BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL).

Example:
    >>> store = Store.open()            # settings.store_url
    >>> store.log_request(RequestRow(id="chatcmpl-1", endpoint="rag-qa", ...))
    >>> store.add_feedback("chatcmpl-1", reviewer="alice", rating="up")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field, fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmops.errors import LlmopsError

RATINGS = ("up", "down")
# Under concurrency the writer waits this long after a lone write for others to join its
# commit: fewer, larger commits (a commit costs about as much as several rows), a 2xx a
# little later. A lone client's writes never wait (see `_write_loop`).
COMMIT_WINDOW_S = 0.002
ROLES = ("client", "reviewer", "admin")


class StoreError(LlmopsError):
    """The request and feedback log refused or failed an operation."""


class UnknownRequestError(StoreError):
    """Feedback names a request id that the log does not hold."""

    http_status = 404


# -- schema ------------------------------------------------------------------------
def _v1_tables(md: sa.MetaData) -> dict[str, sa.Table]:
    """The tables as migration 1 made them (a later migration alters, never edits this)."""
    requests = sa.Table(
        "request_log", md,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False, index=True),  # unix seconds
        sa.Column("endpoint", sa.String(128), nullable=False, index=True),
        sa.Column("variant", sa.String(64)),
        sa.Column("chain", sa.String(128)),
        sa.Column("chain_version", sa.Integer),
        sa.Column("key_id", sa.String(32)),
        sa.Column("user", sa.String(256)),
        sa.Column("shadow_of", sa.String(64), index=True),
        sa.Column("stream", sa.Boolean, nullable=False, default=False),
        sa.Column("messages", sa.JSON),
        sa.Column("answer", sa.Text),
        sa.Column("sources", sa.JSON),
        sa.Column("lineage", sa.JSON),
        sa.Column("prompt_version", sa.Integer),
        sa.Column("index_version", sa.String(64)),
        sa.Column("latency_ms", sa.Float),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("status", sa.Integer, nullable=False),  # HTTP status; 0 while streaming
        sa.Column("error", sa.Text),
    )
    feedback = sa.Table(  # the current vote: one row per reviewer and request
        "feedback", md,
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("reviewer", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(32)),
        sa.Column("rating", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False, index=True),
        sa.Column("votes", sa.Integer, nullable=False),
    )
    history = sa.Table(  # every vote ever cast
        "feedback_history", md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, index=True),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(32)),
        sa.Column("rating", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    keys = sa.Table(
        "api_keys", md,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )
    return {"requests": requests, "feedback": feedback, "history": history, "keys": keys}


def _m001_initial(conn: Connection) -> None:
    md = sa.MetaData()
    _v1_tables(md)
    md.create_all(conn)


def _m002_lighter_request_indexes(conn: Connection) -> None:
    """Every index is written at every commit of the gateway: keep the ones queries use.

    `endpoint` alone (a handful of values) is dropped: reports filter by time first.
    `shadow_of` becomes partial: only shadow rows (a few, if any) are indexed.
    """
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_request_log_endpoint"))
    conn.execute(sa.text("DROP INDEX IF EXISTS ix_request_log_shadow_of"))
    conn.execute(sa.text("CREATE INDEX ix_request_log_shadow_of ON request_log (shadow_of) "
                         "WHERE shadow_of IS NOT NULL"))


# Forward-only: append, never edit or reorder. Each runs once, in order, under the lock.
MIGRATIONS: list[Callable[[Connection], None]] = [_m001_initial, _m002_lighter_request_indexes]

metadata = sa.MetaData()
_T = _v1_tables(metadata)  # the current schema, for queries
REQUESTS, FEEDBACK, HISTORY, KEYS = _T["requests"], _T["feedback"], _T["history"], _T["keys"]
_MIGRATIONS_TABLE = sa.Table(
    "schema_migrations", sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)


# -- rows --------------------------------------------------------------------------
@dataclass
class RequestRow:
    """One served (or failed) chat request."""

    id: str
    endpoint: str
    status: int
    created_at: float = field(default_factory=time.time)
    variant: str | None = None
    chain: str | None = None
    chain_version: int | None = None
    key_id: str | None = None
    user: str | None = None
    shadow_of: str | None = None
    stream: bool = False
    messages: list[dict[str, Any]] | None = None
    answer: str | None = None
    sources: list[dict[str, Any]] | None = None
    lineage: dict[str, Any] | None = None
    prompt_version: int | None = None
    index_version: str | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    error: str | None = None


_ROW_FIELDS = tuple(f.name for f in fields(RequestRow))


@dataclass(frozen=True)
class Vote:
    """The outcome of one feedback post."""

    request_id: str
    reviewer: str
    rating: str
    comment: str | None
    created_at: float
    updated_at: float
    votes: int
    # the request voted on
    endpoint: str | None = None
    variant: str | None = None
    chain: str | None = None
    chain_version: int | None = None

    @property
    def replaced(self) -> bool:
        return self.votes > 1


@dataclass(frozen=True)
class KeyRecord:
    id: str
    name: str
    role: str
    created_at: float
    revoked_at: float | None


# -- the store -----------------------------------------------------------------------
class Store:
    """The log on one SQLAlchemy URL, with a group-commit writer thread."""

    def __init__(self, url: str, *, max_batch: int = 256,
                 window_s: float = COMMIT_WINDOW_S) -> None:
        self.url = url
        self.engine = _engine(url)
        self.max_batch = max_batch
        self.window_s = window_s
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._writer_lock = threading.Lock()
        self._closed = False
        self._conn_: Connection | None = None  # the writer thread's own connection
        self.pending = 0  # operations handed to the writer and not yet committed
        self._inserts = _InsertCompiler(self.engine.dialect) \
            if self.engine.dialect.name == "sqlite" else None
        migrate(self.engine)

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """The store at `url`, else at the settings' `store_url` (made and migrated)."""
        if url is None:
            from llmops.config import get_settings

            settings = get_settings()
            settings.ensure_home()
            assert settings.store_url is not None
            url = settings.store_url
        return cls(url)

    # -- writing -------------------------------------------------------------------
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

    # -- requests --------------------------------------------------------------------
    def insert_request_op(self, row: RequestRow) -> Insert:
        return Insert(REQUESTS, {f: getattr(row, f) for f in _ROW_FIELDS})

    def update_request_op(self, request_id: str, **values: Any) -> Callable[[Connection], None]:
        stmt = REQUESTS.update().where(REQUESTS.c.id == request_id).values(**values)

        def op(conn: Connection) -> None:
            conn.execute(stmt)

        return op

    def log_request(self, row: RequestRow) -> None:
        """Insert one request row and wait for its commit."""
        self.submit(self.insert_request_op(row)).result()

    def get_request(self, request_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(REQUESTS).where(REQUESTS.c.id == request_id)).first()
        return _row(r) if r else None

    def list_requests(
        self, *, endpoint: str | None = None, limit: int = 50, offset: int = 0,
        unrated_by: str | None = None, include_shadow: bool = False,
    ) -> list[dict[str, Any]]:
        """Newest first; `unrated_by` keeps those the reviewer has not voted on."""
        q = sa.select(REQUESTS).order_by(REQUESTS.c.created_at.desc(), REQUESTS.c.id)
        if endpoint:
            q = q.where(REQUESTS.c.endpoint == endpoint)
        if not include_shadow:
            q = q.where(REQUESTS.c.shadow_of.is_(None))
        if unrated_by:
            voted = sa.select(FEEDBACK.c.request_id).where(FEEDBACK.c.reviewer == unrated_by)
            q = q.where(REQUESTS.c.id.not_in(voted))
        q = q.limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q)]

    def count_requests(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(REQUESTS)).scalar_one())

    # -- feedback --------------------------------------------------------------------
    def feedback_op(
        self, request_id: str, *, reviewer: str, rating: str, comment: str | None = None,
        key_id: str | None = None, now: float | None = None,
    ) -> Callable[[Connection], Vote]:
        """The vote as a write operation: history row plus upsert of the current vote."""
        if rating not in RATINGS:
            raise StoreError(f"rating must be one of {', '.join(RATINGS)}, not {rating!r}")

        def op(conn: Connection) -> Vote:
            ts = time.time() if now is None else now
            found = conn.execute(sa.select(
                REQUESTS.c.endpoint, REQUESTS.c.variant, REQUESTS.c.chain, REQUESTS.c.chain_version,
            ).where(REQUESTS.c.id == request_id)).first()
            if found is None:
                raise UnknownRequestError(f"no request with id {request_id!r} in the log")
            req = dict(found._mapping)  # the request voted on
            conn.execute(HISTORY.insert().values(
                request_id=request_id, reviewer=reviewer, key_id=key_id, rating=rating,
                comment=comment, created_at=ts))
            key = (FEEDBACK.c.request_id == request_id) & (FEEDBACK.c.reviewer == reviewer)
            old = conn.execute(sa.select(FEEDBACK.c.created_at, FEEDBACK.c.votes).where(key)).first()
            if old is None:
                conn.execute(FEEDBACK.insert().values(
                    request_id=request_id, reviewer=reviewer, key_id=key_id, rating=rating,
                    comment=comment, created_at=ts, updated_at=ts, votes=1))
                return Vote(request_id, reviewer, rating, comment, ts, ts, 1, **req)
            conn.execute(FEEDBACK.update().where(key).values(
                rating=rating, comment=comment, key_id=key_id, updated_at=ts,
                votes=old.votes + 1))
            return Vote(request_id, reviewer, rating, comment, old.created_at, ts, old.votes + 1,
                        **req)

        return op

    def add_feedback(self, request_id: str, *, reviewer: str, rating: str,
                     comment: str | None = None, key_id: str | None = None) -> Vote:
        """Record a vote (the reviewer's last vote wins; every vote stays in the history)."""
        result: Vote = self.submit(self.feedback_op(
            request_id, reviewer=reviewer, rating=rating, comment=comment, key_id=key_id)).result()
        return result

    def list_feedback(
        self, *, request_id: str | None = None, reviewer: str | None = None,
        rating: str | None = None, endpoint: str | None = None, variant: str | None = None,
        since: float | None = None, until: float | None = None, limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Current votes joined with their request, newest first."""
        q = sa.select(
            FEEDBACK, REQUESTS.c.endpoint, REQUESTS.c.variant, REQUESTS.c.chain,
            REQUESTS.c.chain_version,
        ).join(REQUESTS, REQUESTS.c.id == FEEDBACK.c.request_id)
        q = _feedback_filters(q, request_id, reviewer, rating, endpoint, variant, since, until)
        q = q.order_by(FEEDBACK.c.updated_at.desc(), FEEDBACK.c.request_id, FEEDBACK.c.reviewer)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q.limit(limit).offset(offset))]

    def feedback_history(self, request_id: str) -> list[dict[str, Any]]:
        q = sa.select(HISTORY).where(HISTORY.c.request_id == request_id).order_by(HISTORY.c.id)
        with self.engine.connect() as conn:
            return [_row(r) for r in conn.execute(q)]

    def export_feedback(
        self, *, endpoint: str | None = None, since: float | None = None,
        rating: str | None = None, batch: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Each current vote with its whole request (messages, answer, sources, lineage)."""
        q = sa.select(
            FEEDBACK.c.request_id, FEEDBACK.c.reviewer, FEEDBACK.c.rating, FEEDBACK.c.comment,
            FEEDBACK.c.updated_at.label("rated_at"), FEEDBACK.c.votes,
            *[c for c in REQUESTS.c if c.name != "id"],
        ).join(REQUESTS, REQUESTS.c.id == FEEDBACK.c.request_id)
        q = _feedback_filters(q, None, None, rating, endpoint, None, since, None)
        q = q.order_by(FEEDBACK.c.updated_at, FEEDBACK.c.request_id, FEEDBACK.c.reviewer)
        offset = 0
        while True:
            with self.engine.connect() as conn:
                rows = [_row(r) for r in conn.execute(q.limit(batch).offset(offset))]
            yield from rows
            if len(rows) < batch:
                return
            offset += batch

    # -- keys ------------------------------------------------------------------------
    def add_key(self, key_id: str, *, name: str, role: str, key_hash: str) -> KeyRecord:
        if role not in ROLES:
            raise StoreError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(KEYS.insert().values(id=key_id, name=name, role=role,
                                              key_hash=key_hash, created_at=now))
        return KeyRecord(key_id, name, role, now, None)

    def find_key(self, key_hash: str) -> KeyRecord | None:
        """The live (not revoked) key with this hash."""
        q = sa.select(KEYS.c.id, KEYS.c.name, KEYS.c.role, KEYS.c.created_at,
                      KEYS.c.revoked_at).where(
            (KEYS.c.key_hash == key_hash) & KEYS.c.revoked_at.is_(None))
        with self.engine.connect() as conn:
            r = conn.execute(q).first()
        return KeyRecord(*r) if r else None

    def list_keys(self) -> list[KeyRecord]:
        q = sa.select(KEYS.c.id, KEYS.c.name, KEYS.c.role, KEYS.c.created_at,
                      KEYS.c.revoked_at).order_by(KEYS.c.created_at)
        with self.engine.connect() as conn:
            return [KeyRecord(*r) for r in conn.execute(q)]

    def revoke_key(self, key_id: str) -> bool:
        with self.engine.begin() as conn:
            n = conn.execute(KEYS.update().where(
                (KEYS.c.id == key_id) & KEYS.c.revoked_at.is_(None)).values(revoked_at=time.time()))
        return bool(n.rowcount)

    def writable(self) -> bool:
        """Whether a write transaction can start now (for /readyz)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.select(_MIGRATIONS_TABLE.c.version).limit(1))
        except sa.exc.SQLAlchemyError:
            return False
        return True


@dataclass(frozen=True)
class Insert:
    """A write operation that inserts one row; neighbours in a batch go as one executemany."""

    table: sa.Table
    values: dict[str, Any]

    def __call__(self, conn: Connection) -> None:
        conn.execute(self.table.insert(), [self.values])


class _InsertCompiler:
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


MULTIROW_MAX = 64  # rows in one INSERT statement (SQLite allows 32,766 variables)


def _insert_run(ops: list[Any], i: int) -> int:
    """The end of the run of inserts from `i` on into one table with the same columns."""
    j = i + 1
    while j < len(ops) and isinstance(ops[j], Insert) and ops[j].table is ops[i].table and (
            ops[j].values.keys() == ops[i].values.keys()):
        j += 1
    return j


def _run_batch(conn: Connection, ops: list[Callable[[Connection], Any]],
               inserts: _InsertCompiler | None = None) -> list[Any]:
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


_Item = tuple[Callable[[Connection], Any], Any, Any]  # (operation, future, its loop or None)


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


def _feedback_filters(
    q: Any, request_id: str | None, reviewer: str | None, rating: str | None,
    endpoint: str | None, variant: str | None, since: float | None, until: float | None,
) -> Any:
    conds: list[Any] = []
    if request_id:
        conds.append(FEEDBACK.c.request_id == request_id)
    if reviewer:
        conds.append(FEEDBACK.c.reviewer == reviewer)
    if rating:
        conds.append(FEEDBACK.c.rating == rating)
    if endpoint:
        conds.append(REQUESTS.c.endpoint == endpoint)
    if variant:
        conds.append(REQUESTS.c.variant == variant)
    if since is not None:
        conds.append(FEEDBACK.c.updated_at >= since)
    if until is not None:
        conds.append(FEEDBACK.c.updated_at < until)
    return q.where(*conds) if conds else q


def _row(r: Any) -> dict[str, Any]:
    return dict(r._mapping)


# -- engine and migrations ------------------------------------------------------------
def _json_dumps(value: Any) -> str:
    """JSON columns as orjson writes them (a fifth of json.dumps' time); json.dumps for the
    rare value orjson refuses (an int past 64 bits)."""
    import orjson

    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def _engine(url: str) -> Engine:
    u = sa.make_url(url)
    if u.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True,
                                json_serializer=_json_dumps)
    if u.database and u.database != ":memory:":
        from pathlib import Path

        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    # WAL with synchronous=NORMAL: a committed row survives the process dying (SIGKILL
    # included); `?synchronous=full` also survives the machine losing power, at an fsync
    # per group commit (in benchmarks/gateway.py, a few tenths of a ms of CPU a request).
    sync = str(u.query.get("synchronous", "normal")).upper()
    if sync not in ("NORMAL", "FULL", "EXTRA"):
        raise StoreError(f"store URL: synchronous must be normal, full or extra, not {sync.lower()!r}")
    u = u.difference_update_query(["synchronous"])
    engine = sa.create_engine(u, connect_args={"timeout": 30, "check_same_thread": False},
                              json_serializer=_json_dumps)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling would defer BEGIN; we issue it ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={sync}")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Take the write lock at the start: no deadlock upgrading a read lock later.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def schema_version(engine: Engine) -> int:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table(_MIGRATIONS_TABLE.name):
            return 0
        v = conn.execute(sa.select(sa.func.max(_MIGRATIONS_TABLE.c.version))).scalar()
    return int(v or 0)


def migrate(engine: Engine) -> list[int]:
    """Apply the migrations this database lacks, in order; the versions applied."""
    applied: list[int] = []
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(74510021)"))  # llmops store
        _MIGRATIONS_TABLE.create(conn, checkfirst=True)
        current = int(conn.execute(sa.select(sa.func.max(_MIGRATIONS_TABLE.c.version))).scalar()
                      or 0)
        if current > len(MIGRATIONS):
            raise StoreError(
                f"the store is at schema version {current}, newer than this llmops "
                f"({len(MIGRATIONS)}); upgrade llmops")
        for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
            step(conn)
            conn.execute(_MIGRATIONS_TABLE.insert().values(version=version, applied_at=time.time()))
            applied.append(version)
    return applied


def to_jsonl(rows: Sequence[dict[str, Any]] | Iterator[dict[str, Any]]) -> Iterator[str]:
    """One JSON line per row (for exports)."""
    for row in rows:
        yield json.dumps(row, default=str, ensure_ascii=False)

