"""The store's engine: SQLite in WAL mode, or a PostgreSQL pool; JSON columns written by orjson.

On SQLite a committed row survives the process dying; `sqlite:///...db?synchronous=full`
makes it survive a power cut too. Reads run in deferred transactions (in WAL mode a reader
never blocks the writer, nor waits for it); a write transaction takes the write lock when
it begins (`BEGIN IMMEDIATE`: no deadlock upgrading a read lock later) and is asked for
with `writing(engine)` (the `llmops_write` execution option).

Statement parameters (messages, answers, comments, key hashes) never appear in error
text: the engines hide them (`hide_parameters`), so a failed write logs no user data.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmops.errors import StoreError

WRITE = "llmops_write"  # the execution option of write transactions
BUSY_TIMEOUT_MS = 30_000  # how long a write waits for SQLite's write lock (the writer: less)


def json_dumps(value: Any) -> str:
    """JSON columns as orjson writes them (a fifth of json.dumps' time); json.dumps for the
    rare value orjson refuses (an int past 64 bits)."""
    import orjson

    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def make_engine(url: str) -> Engine:
    """The engine for a store URL (SQLite file, `:memory:`, or PostgreSQL)."""
    u = sa.make_url(url)
    if u.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True,
                                json_serializer=json_dumps, hide_parameters=True)
    if u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)
    # WAL with synchronous=NORMAL: a committed row survives the process dying (SIGKILL
    # included); `?synchronous=full` also survives the machine losing power, at an fsync
    # per group commit (in benchmarks/gateway.py, a few tenths of a ms of CPU a request).
    sync = str(u.query.get("synchronous", "normal")).upper()
    if sync not in ("NORMAL", "FULL", "EXTRA"):
        raise StoreError(f"store URL: synchronous must be normal, full or extra, not {sync.lower()!r}")
    u = u.difference_update_query(["synchronous"])
    engine = sa.create_engine(u, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000,
                                               "check_same_thread": False},
                              json_serializer=json_dumps, hide_parameters=True)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # The driver's own transaction handling would defer BEGIN; we issue it ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={sync}")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # A write takes the write lock at its start (no deadlock upgrading a read lock
        # later); a read takes none, so a reviewer paging the log never stalls the writer.
        write = conn.get_execution_options().get(WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def writing(engine: Engine) -> Engine:
    """The engine for write transactions: on SQLite they begin with `BEGIN IMMEDIATE`."""
    return engine.execution_options(**{WRITE: True})


def is_busy(exc: BaseException) -> bool:
    """Whether a database error means "locked by someone else, try again" (SQLite's
    `database is locked` / `busy`, PostgreSQL's lock timeout)."""
    orig = getattr(exc, "orig", exc)
    text = str(orig).lower()
    return "database is locked" in text or "database is busy" in text or (
        getattr(orig, "sqlstate", None) in ("55P03", "57014"))


def driver_params(compiled: Any) -> Any:
    """The parameters of a compiled statement in its driver's style (`?` or `%(name)s`),
    for statements run on the driver's own cursor (rows that need no SQLAlchemy rows)."""
    if compiled.positiontup is not None:
        return tuple(compiled.params[k] for k in compiled.positiontup)
    return compiled.params


def like_pattern(text: str) -> str:
    """A LIKE pattern (escape character `\\`) matching `text` anywhere, its `%` and `_`
    taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"
