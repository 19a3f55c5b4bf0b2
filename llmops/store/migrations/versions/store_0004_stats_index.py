"""The request log's time index becomes a narrow covering index.

`ix_request_log_created_at` (time only) is replaced by `ix_request_log_stats`: time
first, so everything that used the old one (the review queue newest first, time
windows) still can, then the columns the dashboard's and monitoring's grouped reads
need (endpoint, variant, status, shadow, latency, tokens, id). Those reads then scan
~80-byte index entries instead of ~2 KB rows, and a commit still writes the same
number of index entries as before.

Revision ID: store_0004
Revises: store_0003
"""

from __future__ import annotations

from alembic import op

revision = "store_0004"
down_revision = "store_0003"
branch_labels = None
depends_on = None

COLUMNS = ["created_at", "endpoint", "variant", "status", "shadow_of", "latency_ms",
           "prompt_tokens", "completion_tokens", "id"]


def upgrade() -> None:
    op.create_index("ix_request_log_stats", "request_log", COLUMNS)
    op.drop_index("ix_request_log_created_at", "request_log")


def downgrade() -> None:
    op.create_index("ix_request_log_created_at", "request_log", ["created_at"])
    op.drop_index("ix_request_log_stats", "request_log")
