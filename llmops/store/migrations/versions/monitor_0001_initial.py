"""The monitoring tables: metrics per window, drift tests, alerts, trigger runs, rollouts.

Revision ID: monitor_0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "monitor_0001"
down_revision = None
branch_labels = ("monitor",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "monitor_windows",
        sa.Column("endpoint", sa.String(128), primary_key=True),
        sa.Column("variant", sa.String(64), primary_key=True),  # "" for rows without one
        sa.Column("window_s", sa.Integer, primary_key=True),
        sa.Column("window_start", sa.Float, primary_key=True),  # unix seconds
        sa.Column("requests", sa.Integer, nullable=False),
        sa.Column("errors", sa.Integer, nullable=False),
        sa.Column("refusals", sa.Integer, nullable=False),  # answers that decline to answer
        sa.Column("empty", sa.Integer, nullable=False),  # answered with no text
        sa.Column("latency_p50_ms", sa.Float),
        sa.Column("latency_p95_ms", sa.Float),
        sa.Column("latency_p99_ms", sa.Float),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("votes", sa.Integer, nullable=False),
        sa.Column("up", sa.Integer, nullable=False),
        sa.Column("top1_mean", sa.Float),  # best retrieved chunk's similarity, mean
        sa.Column("top1_p10", sa.Float),
        sa.Column("low_similarity", sa.Integer, nullable=False),  # best chunk under the floor
        sa.Column("retrieved", sa.Integer, nullable=False),  # answers with retrieved chunks
        sa.Column("answer_chars_mean", sa.Float),
        sa.Column("computed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "monitor_drift",
        sa.Column("endpoint", sa.String(128), primary_key=True),
        sa.Column("window_s", sa.Integer, primary_key=True),
        sa.Column("window_start", sa.Float, primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),  # query
        sa.Column("statistic", sa.Float),  # NULL: the test was not run (no embedder)
        sa.Column("p_value", sa.Float),
        sa.Column("n_current", sa.Integer, nullable=False),
        sa.Column("n_reference", sa.Integer, nullable=False),
        sa.Column("detail", sa.JSON),
        sa.Column("computed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "monitor_alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("endpoint", sa.String(128), nullable=False),
        sa.Column("variant", sa.String(64), nullable=False),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("window_start", sa.Float, nullable=False),
        sa.Column("opened_at", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.Float),
        sa.Column("message", sa.Text, nullable=False),
        sa.Index("ix_monitor_alerts_open", "rule", "endpoint", "variant", "resolved_at"),
    )
    op.create_table(
        "monitor_actions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("trigger", sa.String(128), nullable=False, index=True),
        sa.Column("alert_id", sa.Integer),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),  # done, failed, dry-run, cooling
        sa.Column("detail", sa.Text),
    )
    op.create_table(
        "rollouts",
        sa.Column("endpoint", sa.String(128), primary_key=True),
        sa.Column("candidate", sa.String(64), nullable=False),
        sa.Column("baseline", sa.String(64), nullable=False),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("share", sa.Float, nullable=False),  # candidate share now, percent
        sa.Column("status", sa.String(16), nullable=False),  # running, promoted, rolled_back
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("endpoint", sa.String(128), nullable=False, index=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("share", sa.Float, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("lam", sa.Float),
        sa.Column("difference", sa.Float),
        sa.Column("candidate_votes", sa.Integer, nullable=False),
        sa.Column("baseline_votes", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollout_events")
    op.drop_table("rollouts")
    op.drop_table("monitor_actions")
    op.drop_table("monitor_alerts")
    op.drop_table("monitor_drift")
    op.drop_table("monitor_windows")
