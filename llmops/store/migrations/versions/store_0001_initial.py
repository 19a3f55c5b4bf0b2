"""The request log, feedback and keys as the first release made them (its migration 1).

Revision ID: store_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "store_0001"
down_revision = None
branch_labels = ("store",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "request_log",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False, index=True),
        sa.Column("endpoint", sa.String(128), nullable=False, index=True),
        sa.Column("variant", sa.String(64)),
        sa.Column("chain", sa.String(128)),
        sa.Column("chain_version", sa.Integer),
        sa.Column("key_id", sa.String(32)),
        sa.Column("user", sa.String(256)),
        sa.Column("shadow_of", sa.String(64), index=True),
        sa.Column("stream", sa.Boolean, nullable=False),
        sa.Column("messages", sa.JSON),
        sa.Column("answer", sa.Text),
        sa.Column("sources", sa.JSON),
        sa.Column("lineage", sa.JSON),
        sa.Column("prompt_version", sa.Integer),
        sa.Column("index_version", sa.String(64)),
        sa.Column("latency_ms", sa.Float),
        sa.Column("prompt_tokens", sa.Integer),
        sa.Column("completion_tokens", sa.Integer),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("error", sa.Text),
    )
    op.create_table(
        "feedback",
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("reviewer", sa.String(128), primary_key=True),
        sa.Column("key_id", sa.String(32)),
        sa.Column("rating", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False, index=True),
        sa.Column("votes", sa.Integer, nullable=False),
    )
    op.create_table(
        "feedback_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(64), nullable=False, index=True),
        sa.Column("reviewer", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(32)),
        sa.Column("rating", sa.String(8), nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )


def downgrade() -> None:
    for table in ("api_keys", "feedback_history", "feedback", "request_log"):
        op.drop_table(table)
