"""The store's tables as the newest migration leaves them, for queries.

The migrations under `migrations/versions/` make and change them; a test checks that
a database migrated to head matches this metadata. A change here needs a revision.
"""

from __future__ import annotations

import sqlalchemy as sa

VERSION_TABLE = "llmops_alembic_version"  # not `alembic_version`: MLflow may share the database

metadata = sa.MetaData()

REQUESTS = sa.Table(  # one row per served (or failed) chat request
    "request_log", metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("created_at", sa.Float, nullable=False, index=True),  # unix seconds
    sa.Column("endpoint", sa.String(128), nullable=False),
    sa.Column("variant", sa.String(64)),
    sa.Column("chain", sa.String(128)),
    sa.Column("chain_version", sa.Integer),
    sa.Column("key_id", sa.String(32)),
    sa.Column("user", sa.String(256)),
    sa.Column("shadow_of", sa.String(64)),
    sa.Column("stream", sa.Boolean, nullable=False, default=False),
    sa.Column("messages", sa.JSON),
    sa.Column("answer", sa.Text),
    sa.Column("sources", sa.JSON),
    sa.Column("lineage", sa.JSON),  # Lineage.to_dict()
    sa.Column("prompt_version", sa.Integer),
    sa.Column("index_version", sa.Integer),
    sa.Column("latency_ms", sa.Float),
    sa.Column("prompt_tokens", sa.Integer),
    sa.Column("completion_tokens", sa.Integer),
    sa.Column("status", sa.Integer, nullable=False),  # HTTP status; 0 while streaming
    sa.Column("error", sa.Text),
    # Only shadow rows (a few, if any) are indexed: every index costs every gateway commit.
    sa.Index("ix_request_log_shadow_of", "shadow_of",
             sqlite_where=sa.text("shadow_of IS NOT NULL"),
             postgresql_where=sa.text("shadow_of IS NOT NULL")),
)

FEEDBACK = sa.Table(  # the current vote: one row per reviewer and request
    "feedback", metadata,
    sa.Column("request_id", sa.String(64), primary_key=True),
    sa.Column("reviewer", sa.String(128), primary_key=True),
    sa.Column("key_id", sa.String(32)),
    sa.Column("rating", sa.String(8), nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False, index=True),
    sa.Column("votes", sa.Integer, nullable=False),
)

HISTORY = sa.Table(  # every vote ever cast
    "feedback_history", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("request_id", sa.String(64), nullable=False, index=True),
    sa.Column("reviewer", sa.String(128), nullable=False),
    sa.Column("key_id", sa.String(32)),
    sa.Column("rating", sa.String(8), nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
)

KEYS = sa.Table(
    "api_keys", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float),
)

OUTPUTS = sa.Table(  # one chain answer per (chain content hash, index version, item hash)
    "eval_outputs", metadata,
    sa.Column("chain_hash", sa.String(64), primary_key=True),
    sa.Column("index_version", sa.String(64), primary_key=True),
    sa.Column("item_hash", sa.String(64), primary_key=True),
    sa.Column("output", sa.JSON, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

SCORES = sa.Table(  # one finite score per (output hash, metric key)
    "eval_scores", metadata,
    sa.Column("output_hash", sa.String(64), primary_key=True),
    sa.Column("metric_key", sa.String(256), primary_key=True),
    sa.Column("metric", sa.String(64), nullable=False),
    sa.Column("value", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

EVALUATIONS = sa.Table(  # one row per `llmops eval run`
    "evaluations", metadata,
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
