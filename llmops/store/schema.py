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
    sa.Column("created_at", sa.Float, nullable=False),  # unix seconds
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
    # Every index costs every gateway commit: shadow rows only (a few, if any), and time
    # first with what the dashboard's and monitoring's grouped reads need (covering).
    sa.Index("ix_request_log_shadow_of", "shadow_of",
             sqlite_where=sa.text("shadow_of IS NOT NULL"),
             postgresql_where=sa.text("shadow_of IS NOT NULL")),
    sa.Index("ix_request_log_stats", "created_at", "endpoint", "variant", "status",
             "shadow_of", "latency_ms", "prompt_tokens", "completion_tokens", "id"),
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

# -- monitoring (branch `monitor`) ----------------------------------------------------
WINDOWS = sa.Table(  # one row per endpoint, variant and closed time window
    "monitor_windows", metadata,
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

DRIFT = sa.Table(  # one test per endpoint, window and kind of drift
    "monitor_drift", metadata,
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

ALERTS = sa.Table(  # an alert is open until its condition no longer holds
    "monitor_alerts", metadata,
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

ACTIONS = sa.Table(  # every trigger run (or skip), with what it did and why
    "monitor_actions", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("trigger", sa.String(128), nullable=False, index=True),
    sa.Column("alert_id", sa.Integer),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # done, failed, dry-run, cooling
    sa.Column("detail", sa.Text),
)

ROLLOUTS = sa.Table(  # the state of each endpoint's rollout
    "rollouts", metadata,
    sa.Column("endpoint", sa.String(128), primary_key=True),
    sa.Column("candidate", sa.String(64), nullable=False),
    sa.Column("baseline", sa.String(64), nullable=False),
    sa.Column("step", sa.Integer, nullable=False),
    sa.Column("share", sa.Float, nullable=False),  # candidate share now, percent
    sa.Column("status", sa.String(16), nullable=False),  # running, promoted, rolled_back
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

ROLLOUT_EVENTS = sa.Table(  # every decision that changed a rollout
    "rollout_events", metadata,
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
