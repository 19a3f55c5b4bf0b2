"""Locks that hold across processes and hosts: PostgreSQL advisory locks.

The embedded default locks with files under `LLMOPS_HOME/locks`, which is exact on one
host only: two promoters on two hosts against one shared registry would both take
"the" lock. When the settings name a PostgreSQL database (`lock_url`, or else the
registry's or the log's database when it is PostgreSQL: `Settings.lock_database_url`),
the registry's writes and the index refresh lock on it instead:

- a session-level advisory lock (`pg_try_advisory_lock`) keyed by a 64-bit hash of
  the lock's name (`registry:chain.rag_qa`, `index:python-docs`), on a connection
  held for as long as the lock is;
- the database releases it when that connection ends, so a holder killed with SIGKILL
  (or a host that vanishes: TCP keepalive) frees it without anyone cleaning up;
- waiting polls every 50 ms up to the timeout (0: try once), then raises `LockTimeout`
  with the name and, from `pg_locks`, the database process that holds it.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llmops.errors import LlmopsError

_engines: dict[str, Any] = {}
_engines_guard = threading.Lock()
POLL_S = 0.05


class LockTimeout(LlmopsError):
    """A lock another process holds was not released in time."""


def lock_key(name: str) -> int:
    """The advisory lock key of `name`: a signed 64-bit hash (PostgreSQL's bigint)."""
    digest = hashlib.blake2b(f"llmops:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def postgres_url(url: str) -> str:
    """`url` with the psycopg (3) driver that llmops installs, whatever driver it named."""
    import sqlalchemy as sa

    u = sa.make_url(url)
    if u.get_backend_name() != "postgresql":
        raise ValueError(f"locks across hosts need PostgreSQL, not {u.get_backend_name()}")
    return u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def _engine(url: str) -> Any:
    import sqlalchemy as sa

    with _engines_guard:
        if url not in _engines:
            # AUTOCOMMIT: a session-level advisory lock outlives transactions, and no
            # transaction is left open on the connection that holds it
            _engines[url] = sa.create_engine(
                postgres_url(url), pool_size=1, max_overflow=16, pool_pre_ping=True,
                isolation_level="AUTOCOMMIT",
                connect_args={"keepalives": 1, "keepalives_idle": 30,
                              "keepalives_interval": 10, "keepalives_count": 3})
        return _engines[url]


@contextmanager
def advisory_lock(url: str, name: str, *, timeout: float | None = 120.0) -> Iterator[None]:
    """Hold the advisory lock `name` in the PostgreSQL database at `url`.

    `timeout`: seconds to wait (0: try once; None: wait for ever), then LockTimeout.
    """
    import sqlalchemy as sa

    key = lock_key(name)
    conn = _engine(url).connect()
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
            if deadline is not None and time.monotonic() >= deadline:
                raise LockTimeout(f"lock {name!r} is held by {_holder(conn, key)}"
                                  + (f"; waited {timeout:g} s" if timeout else ""))
            time.sleep(POLL_S)
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        conn.close()


def _holder(conn: Any, key: int) -> str:
    """Who holds advisory lock `key`: the database process, its client and since when."""
    import sqlalchemy as sa

    hi, lo = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    row = conn.execute(sa.text(
        "SELECT l.pid, a.client_addr, a.backend_start FROM pg_locks l "
        "LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = :hi "
        "AND l.objid::bigint = :lo LIMIT 1"), {"hi": hi, "lo": lo}).first()
    if row is None:
        return "another process (released since)"
    client = row.client_addr or "a local socket"
    since = f"{row.backend_start:%Y-%m-%d %H:%M:%S}" if row.backend_start else "?"
    return f"database process {row.pid} (client {client}, connected {since})"
