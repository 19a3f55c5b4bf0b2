"""The request and feedback log: what the gateway served, and what reviewers thought of it.

The gateway writes it; evaluation, fine-tuning and monitoring read it through the
methods here, never with their own SQL. SQLAlchemy Core on SQLite (WAL,
reads deferred, writes `BEGIN IMMEDIATE`) by default; a PostgreSQL URL works with the same code.

- `engine.py`: the engine (SQLite pragmas and durability, PostgreSQL pool, JSON).
- `writer.py`: the group-commit writer thread (`submit`, `submit_async`); `handover.py`:
  its outcomes handed to the waiting threads and event loops.
- `schema.py`: the tables; `migrations/`: Alembic revisions, run at open.
- `requests.py`, `feedback.py`, `keys.py`, `evals.py`, `ratings.py`: one table set's
  reads and writes each, composed into `Store`; `review.py`: the reviewer pages' reads; `monitoring.py`:
  metrics per window, drift results, alerts and trigger runs; `rollouts.py`: rollout state.

Example:
    >>> store = Store.open()            # settings.store_url
    >>> store.log_request(RequestRow(id="chatcmpl-1", endpoint="rag-qa", ...))
    >>> store.add_feedback("chatcmpl-1", reviewer="alice", rating="up")
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from llmops.errors import StoreError, UnknownEvaluationError, UnknownRequestError
from llmops.store.evals import EvalsMixin
from llmops.store.feedback import RATINGS, FeedbackMixin, Vote
from llmops.store.inserts import MULTIROW_MAX, Insert
from llmops.store.keys import ROLES, KeyRecord, KeysMixin
from llmops.store.monitoring import REFUSALS, MonitoringMixin
from llmops.store.ratings import SERVED, RatingsMixin, VoteCounts
from llmops.store.requests import RequestRow, RequestsMixin, to_jsonl
from llmops.store.review import QueueFilter, QueuePage, ReviewMixin
from llmops.store.rollouts import RolloutsMixin
from llmops.store.schema import (
    EVALUATIONS,
    FEEDBACK,
    HISTORY,
    KEYS,
    OUTPUTS,
    REQUESTS,
    SCORES,
    VERSION_TABLE,
    metadata,
)
from llmops.store.writer import COMMIT_TIMEOUT_S, COMMIT_WINDOW_S, MAX_PENDING, WriterState

__all__ = [
    "COMMIT_TIMEOUT_S",
    "COMMIT_WINDOW_S",
    "EVALUATIONS",
    "FEEDBACK",
    "HISTORY",
    "KEYS",
    "MAX_PENDING",
    "MULTIROW_MAX",
    "OUTPUTS",
    "RATINGS",
    "REFUSALS",
    "REQUESTS",
    "ROLES",
    "SCORES",
    "SERVED",
    "Insert",
    "KeyRecord",
    "QueueFilter",
    "QueuePage",
    "RequestRow",
    "Store",
    "StoreError",
    "UnknownEvaluationError",
    "UnknownRequestError",
    "Vote",
    "VoteCounts",
    "WriterState",
    "metadata",
    "to_jsonl",
]


class Store(RequestsMixin, FeedbackMixin, KeysMixin, EvalsMixin, RatingsMixin, ReviewMixin,
            MonitoringMixin, RolloutsMixin):
    """The log on one SQLAlchemy URL, with a group-commit writer thread.

    Opening it brings the database's schema to head (see `migrations/runner.py`).
    """

    def __init__(self, url: str, *, max_batch: int = 256, window_s: float = COMMIT_WINDOW_S,
                 commit_timeout_s: float = COMMIT_TIMEOUT_S,
                 max_pending: int = MAX_PENDING) -> None:
        super().__init__(url, max_batch=max_batch, window_s=window_s,
                         commit_timeout_s=commit_timeout_s, max_pending=max_pending)
        from llmops.store.migrations.runner import migrate  # Alembic: imported on first open

        try:
            migrate(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def open(cls, url: str | None = None, **options: Any) -> Store:
        """The store at `url`, else at the settings' `store_url` (made and migrated)."""
        if url is None:
            from llmops.config import get_settings

            settings = get_settings()
            settings.ensure_home()
            assert settings.store_url is not None
            url = settings.store_url
        return cls(url, **options)

    def readable(self) -> bool:
        """Whether the database answers a read now (no lock taken; for /readyz)."""
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.select(version.c.version_num).limit(1))
        except sa.exc.SQLAlchemyError:
            return False
        return True
