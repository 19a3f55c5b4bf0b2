"""Every index is written at every commit of the gateway: keep the ones queries use.

`endpoint` alone (a handful of values) is dropped: reports filter by time first.
`shadow_of` becomes partial: only shadow rows (a few, if any) are indexed.
(The first release's migration 2.)

Revision ID: store_0002
Revises: store_0001
"""

from __future__ import annotations

from alembic import op

revision = "store_0002"
down_revision = "store_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_request_log_endpoint")
    op.execute("DROP INDEX IF EXISTS ix_request_log_shadow_of")
    op.execute("CREATE INDEX ix_request_log_shadow_of ON request_log (shadow_of) "
               "WHERE shadow_of IS NOT NULL")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_request_log_shadow_of")
    op.execute("CREATE INDEX ix_request_log_shadow_of ON request_log (shadow_of)")
    op.execute("CREATE INDEX ix_request_log_endpoint ON request_log (endpoint)")
