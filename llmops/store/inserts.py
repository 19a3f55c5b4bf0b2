"""Inserts on the writer's hot path: one multi-row INSERT per group of request rows.

`Insert` is a write operation that inserts one row; the writer sends runs of them to the
driver directly (`InsertCompiler`), the statement compiled once per table and column set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmops.errors import StoreError

MULTIROW_MAX = 64  # rows in one INSERT statement (SQLite allows 32,766 variables)


@dataclass(frozen=True)
class Insert:
    """A write operation that inserts one row; neighbours in a batch go as one executemany."""

    table: sa.Table
    values: dict[str, Any]

    def __call__(self, conn: Connection) -> None:
        conn.execute(self.table.insert(), [self.values])


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


def run_batch(conn: Connection, ops: list[Callable[[Connection], Any]],
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
