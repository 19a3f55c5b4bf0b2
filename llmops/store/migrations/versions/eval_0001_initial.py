"""The evaluation tables as the first release made them (its evaluation migration 1).

Revision ID: eval_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "eval_0001"
down_revision = None
branch_labels = ("eval",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_outputs",
        sa.Column("chain_hash", sa.String(64), primary_key=True),
        sa.Column("index_version", sa.String(64), primary_key=True),
        sa.Column("item_hash", sa.String(64), primary_key=True),
        sa.Column("output", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "eval_scores",
        sa.Column("output_hash", sa.String(64), primary_key=True),
        sa.Column("metric_key", sa.String(256), primary_key=True),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "evaluations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False, index=True),
        sa.Column("model", sa.String(128), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("dataset", sa.String(256), nullable=False),
        sa.Column("dataset_version", sa.String(32), nullable=False),
        sa.Column("index_version", sa.String(64)),
        sa.Column("n_items", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("judge", sa.String(256)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("chain_calls", sa.Integer, nullable=False),
        sa.Column("metric_calls", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    for table in ("evaluations", "eval_scores", "eval_outputs"):
        op.drop_table(table)
