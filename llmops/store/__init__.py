"""The request and feedback log: what the gateway served, and what reviewers thought of it.

The gateway writes it; evaluation, fine-tuning and monitoring read it through the
methods here, never with their own SQL. SQLAlchemy Core on SQLite (WAL,
`BEGIN IMMEDIATE`) by default; a PostgreSQL URL works with the same code.

- `engine.py`: the engine (SQLite pragmas and durability, PostgreSQL pool, JSON).
- `writer.py`: the group-commit writer thread (`submit`, `submit_async`).
- `schema.py`: the tables; `migrations/`: Alembic revisions, run at open.
- `requests.py`, `feedback.py`, `keys.py`, `evals.py`, `ratings.py`: one table set's
  reads and writes each, composed into `Store`.

Example:
    >>> store = Store.open()            # settings.store_url
    >>> store.log_request(RequestRow(id="chatcmpl-1", endpoint="rag-qa", ...))
    >>> store.add_feedback("chatcmpl-1", reviewer="alice", rating="up")
"""

from __future__ import annotations

import sqlalchemy as sa

from llmops.errors import StoreError, UnknownEvaluationError, UnknownRequestError
from llmops.store.evals import EvalsMixin
from llmops.store.feedback import RATINGS, FeedbackMixin, Vote
from llmops.store.keys import ROLES, KeyRecord, KeysMixin
from llmops.store.ratings import SERVED, RatingsMixin, VoteCounts
from llmops.store.requests import RequestRow, RequestsMixin, to_jsonl
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
from llmops.store.writer import COMMIT_WINDOW_S, MULTIROW_MAX, Insert

__all__ = [
    "COMMIT_WINDOW_S", "EVALUATIONS", "FEEDBACK", "HISTORY", "KEYS", "MULTIROW_MAX", "OUTPUTS",
    "RATINGS", "REQUESTS", "ROLES", "SCORES", "SERVED", "Insert", "KeyRecord", "RequestRow",
    "Store", "StoreError", "UnknownEvaluationError", "UnknownRequestError", "Vote",
    "VoteCounts", "metadata", "to_jsonl",
]


class Store(RequestsMixin, FeedbackMixin, KeysMixin, EvalsMixin, RatingsMixin):
    """The log on one SQLAlchemy URL, with a group-commit writer thread.

    Opening it brings the database's schema to head (see `migrations/runner.py`).
    """

    def __init__(self, url: str, *, max_batch: int = 256,
                 window_s: float = COMMIT_WINDOW_S) -> None:
        super().__init__(url, max_batch=max_batch, window_s=window_s)
        from llmops.store.migrations.runner import migrate  # Alembic: imported on first open

        try:
            migrate(self.engine)
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """The store at `url`, else at the settings' `store_url` (made and migrated)."""
        if url is None:
            from llmops.config import get_settings

            settings = get_settings()
            settings.ensure_home()
            assert settings.store_url is not None
            url = settings.store_url
        return cls(url)

    def writable(self) -> bool:
        """Whether a write transaction can start now (for /readyz)."""
        version = sa.table(VERSION_TABLE, sa.column("version_num"))
        try:
            with self.engine.begin() as conn:
                conn.execute(sa.select(version.c.version_num).limit(1))
        except sa.exc.SQLAlchemyError:
            return False
        return True
