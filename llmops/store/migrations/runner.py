"""One Alembic runner for every table the store holds, run when a store opens.

The revisions live in `versions/`, in two branches of one version table
(`llmops_alembic_version`): `store` (request log, feedback, keys) and `eval` (the
evaluation tables). No alembic.ini or env.py is read: the runner drives Alembic's
`EnvironmentContext` on the store's own engine.

A database already at head costs one read of the version table. Otherwise the
runner takes the database's write lock (`BEGIN IMMEDIATE` on SQLite,
`pg_advisory_xact_lock` on PostgreSQL), looks again, and upgrades every branch in
that one transaction: two processes opening one new store migrate it once.

A database made before Alembic, with the tables `schema_migrations` (versions 1-2)
and `eval_schema_migrations` (version 1), is adopted: the matching revisions are
stamped, then the rest applied; its old version tables get a version past what the
old code knows, so an older llmops refuses it instead of misreading it.

To write a revision (the id is the branch and the next number):
    >>> from alembic import command
    >>> command.revision(config(), "what changes", head="store@head", rev_id="store_0004")
"""

from __future__ import annotations

import functools
import time
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from llmops.errors import StoreError
from llmops.store.engine import writing
from llmops.store.schema import VERSION_TABLE

HERE = Path(__file__).resolve().parent
LOCK_ID = 74510021  # the advisory lock of llmops' store migrations on PostgreSQL
# The versions of the tables that tracked migrations before Alembic, and their revisions.
LEGACY = {
    "schema_migrations": {1: "store_0001", 2: "store_0002"},
    "eval_schema_migrations": {1: "eval_0001"},
}


def config() -> Config:
    """An Alembic config for the revisions in this package (for `alembic.command`)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("version_table", VERSION_TABLE)
    return cfg


@functools.cache
def script() -> ScriptDirectory:
    """The revisions (read once per process)."""
    return ScriptDirectory(str(HERE))


@functools.cache
def head_revisions() -> frozenset[str]:
    """The newest revision of each branch."""
    return frozenset(script().get_heads())


@functools.cache
def _known() -> frozenset[str]:
    return frozenset(r.revision for r in script().walk_revisions())


def current_revisions(conn: Connection | Engine) -> frozenset[str]:
    """The revisions a database is at (empty before the first migration)."""
    if isinstance(conn, Engine):
        with conn.connect() as c:
            return current_revisions(c)
    return frozenset(_context(conn).get_current_heads())


def migrate(engine: Engine, target: str = "heads") -> list[str]:
    """Bring the database to head (or to `target`); the revisions applied, in order.

    Raises:
        StoreError: the database is newer than this llmops (a revision it does not know).
    """
    heads = head_revisions()
    if target == "heads":
        with engine.connect() as conn:
            if current_revisions(conn) == heads:
                return []
    applied: list[str] = []
    with writing(engine).begin() as conn:  # the write lock from the start
        _lock(conn)
        ctx = _context(conn)
        current = set(ctx.get_current_heads())
        if not current:
            legacy = _legacy_revisions(conn)
            if legacy:
                for revision in legacy.values():  # each a branch of its own
                    ctx.stamp(script(), revision)
                _retire_legacy_tables(conn, legacy)
                current = set(ctx.get_current_heads())
        unknown = sorted(current - _known())
        if unknown:
            raise StoreError(
                f"the store is at schema revision {', '.join(unknown)}, newer than this "
                f"llmops (heads {', '.join(sorted(heads))}); upgrade llmops")
        if target == "heads" and current == heads:
            return []  # another process migrated it meanwhile

        def upgrade(rev: Any, _ctx: MigrationContext) -> Any:
            return script()._upgrade_revs(target, rev)

        def done(ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any],
                 run_args: Mapping[str, Any]) -> None:  # called with keywords
            applied.append(str(step.up_revision_id))

        with EnvironmentContext(config(), script(), fn=upgrade) as env:
            env.configure(connection=conn, version_table=VERSION_TABLE,
                          on_version_apply=done)
            env.run_migrations()
    return applied


def _lock(conn: Connection) -> None:
    """The database's write lock, held until the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
    elif conn.dialect.name == "sqlite":
        dbapi: Any = conn.connection.dbapi_connection
        if not dbapi.in_transaction:  # the store's engine has begun one already (immediate)
            dbapi.execute("BEGIN IMMEDIATE")


def _context(conn: Connection) -> MigrationContext:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})


def _legacy_revisions(conn: Connection) -> dict[str, str]:
    """The revision each old version table of a database made before Alembic stands for."""
    tables = set(sa.inspect(conn).get_table_names())
    found: dict[str, str] = {}
    for table, revisions in LEGACY.items():
        if table not in tables:
            continue
        version = int(conn.execute(sa.text(f"SELECT MAX(version) FROM {table}")).scalar() or 0)
        if version > max(revisions):
            raise StoreError(
                f"the store's {table} is at version {version}, newer than this llmops "
                f"({max(revisions)}); upgrade llmops")
        if version:
            found[table] = revisions[version]
    return found


def _retire_legacy_tables(conn: Connection, tables: dict[str, str]) -> None:
    """A version past the old code's last: an older llmops refuses this database."""
    for table in tables:
        revisions = LEGACY[table]
        conn.execute(sa.text(f"INSERT INTO {table} (version, applied_at) VALUES (:v, :t)"),
                     {"v": max(revisions) + 1, "t": time.time()})
