"""`request_log.index_version` becomes an INTEGER: the index version is a number everywhere.

Values that are integers in another spelling (" 7", "07", "7.0") become that integer;
values that are not integers at all become NULL (the request's lineage JSON still
holds what was recorded). SQLite cannot change a column's type: the table is copied
(Alembic's batch mode, values cast); PostgreSQL casts in place.

Revision ID: store_0003
Revises: store_0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "store_0003"
down_revision = "store_0002"
branch_labels = None
depends_on = None

_INT32 = 2**31  # PostgreSQL's INTEGER
_SHADOW_INDEX = ("CREATE INDEX ix_request_log_shadow_of ON request_log (shadow_of) "
                 "WHERE shadow_of IS NOT NULL")


def upgrade() -> None:
    bind = op.get_bind()
    t = sa.table("request_log", sa.column("index_version", sa.String))
    found = bind.execute(sa.select(t.c.index_version).distinct().where(
        t.c.index_version.is_not(None))).scalars().all()
    for old in found:  # a handful of distinct values: one UPDATE each that needs one
        new = _as_int(old)
        if new is None or str(new) != old:
            bind.execute(t.update().where(t.c.index_version == old).values(
                index_version=None if new is None else str(new)))
    if bind.dialect.name == "sqlite":
        # The partial index is dropped and made again as migration store_0002 made it:
        # the copy would otherwise depend on how well reflection reads its WHERE clause.
        op.execute("DROP INDEX IF EXISTS ix_request_log_shadow_of")
        with op.batch_alter_table("request_log", recreate="always") as batch:
            batch.alter_column("index_version", type_=sa.Integer,
                               existing_type=sa.String(64), existing_nullable=True)
        op.execute(_SHADOW_INDEX)
    else:
        op.alter_column("request_log", "index_version", type_=sa.Integer,
                        existing_type=sa.String(64), existing_nullable=True,
                        postgresql_using="index_version::integer")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP INDEX IF EXISTS ix_request_log_shadow_of")
        with op.batch_alter_table("request_log", recreate="always") as batch:
            batch.alter_column("index_version", type_=sa.String(64),
                               existing_type=sa.Integer, existing_nullable=True)
        op.execute(_SHADOW_INDEX)
    else:
        op.alter_column("request_log", "index_version", type_=sa.String(64),
                        existing_type=sa.Integer, existing_nullable=True)


def _as_int(value: str) -> int | None:
    """The integer a stored string spells, or None."""
    text = value.strip()
    try:
        n = int(text)
    except ValueError:
        try:
            f = float(text)
        except ValueError:
            return None
        if not f.is_integer():
            return None
        n = int(f)
    return n if -_INT32 <= n < _INT32 else None
