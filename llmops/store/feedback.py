"""Votes: each reviewer's current thumbs up or down on an answer, and every vote ever cast."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from llmops.errors import StoreError, UnknownRequestError, VoteRefusedError
from llmops.store.requests import row_dict
from llmops.store.schema import FEEDBACK, HISTORY, REQUESTS
from llmops.store.writer import Writer

RATINGS = ("up", "down")


@dataclass(frozen=True)
class Vote:
    """The outcome of one feedback post."""

    request_id: str
    reviewer: str
    rating: str
    comment: str | None
    created_at: float
    updated_at: float
    votes: int
    # the request voted on
    endpoint: str | None = None
    variant: str | None = None
    chain: str | None = None
    chain_version: int | None = None

    @property
    def replaced(self) -> bool:
        return self.votes > 1


class FeedbackMixin(Writer):
    """Recording votes through the writer, reading them back joined with their requests."""

    def feedback_op(
        self, request_id: str, *, reviewer: str, rating: str, comment: str | None = None,
        key_id: str | None = None, now: float | None = None,
    ) -> Callable[[Connection], Vote]:
        """The vote as a write operation: history row plus upsert of the current vote."""
        if rating not in RATINGS:
            raise StoreError(f"rating must be one of {', '.join(RATINGS)}, not {rating!r}")

        def op(conn: Connection) -> Vote:
            ts = time.time() if now is None else now
            stmts = _vote_statements(conn.dialect.name)
            found = conn.execute(stmts.request, {"id": request_id}).first()
            if found is None:
                raise UnknownRequestError(f"no request with id {request_id!r} in the log")
            req = dict(found._mapping)  # the request voted on
            if req.pop("shadow_of") is not None:
                raise VoteRefusedError(f"request {request_id!r} is a shadow answer, never "
                                       "served to a user; vote on the served answer")
            if req.pop("status") == 0:
                raise VoteRefusedError(f"request {request_id!r} is still streaming; vote "
                                       "when its answer has finished")
            values = {"request_id": request_id, "reviewer": reviewer, "key_id": key_id,
                      "rating": rating, "comment": comment}
            conn.execute(stmts.history, {**values, "created_at": ts})
            current = conn.execute(stmts.upsert, {**values, "created_at": ts, "updated_at": ts,
                                                  "votes": 1}).one()
            return Vote(request_id, reviewer, rating, comment, current.created_at, ts,
                        current.votes, **req)

        return op

    def add_feedback(self, request_id: str, *, reviewer: str, rating: str,
                     comment: str | None = None, key_id: str | None = None) -> Vote:
        """Record a vote (the reviewer's last vote wins; every vote stays in the history)."""
        result: Vote = self.submit(self.feedback_op(
            request_id, reviewer=reviewer, rating=rating, comment=comment, key_id=key_id)).result()
        return result

    def list_feedback(
        self, *, request_id: str | None = None, reviewer: str | None = None,
        rating: str | None = None, endpoint: str | None = None, variant: str | None = None,
        since: float | None = None, until: float | None = None, limit: int = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Current votes joined with their request, newest first."""
        q = sa.select(
            FEEDBACK, REQUESTS.c.endpoint, REQUESTS.c.variant, REQUESTS.c.chain,
            REQUESTS.c.chain_version,
        ).join(REQUESTS, REQUESTS.c.id == FEEDBACK.c.request_id)
        q = _feedback_filters(q, request_id, reviewer, rating, endpoint, variant, since, until)
        q = q.order_by(FEEDBACK.c.updated_at.desc(), FEEDBACK.c.request_id, FEEDBACK.c.reviewer)
        with self.engine.connect() as conn:
            return [row_dict(r) for r in conn.execute(q.limit(limit).offset(offset))]

    def feedback_history(self, request_id: str) -> list[dict[str, Any]]:
        q = sa.select(HISTORY).where(HISTORY.c.request_id == request_id).order_by(HISTORY.c.id)
        with self.engine.connect() as conn:
            return [row_dict(r) for r in conn.execute(q)]

    def export_feedback(
        self, *, endpoint: str | None = None, since: float | None = None,
        rating: str | None = None, variant: str | None = None, until: float | None = None,
        batch: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Each current vote with its whole request (messages, answer, sources, lineage)."""
        q = sa.select(
            FEEDBACK.c.request_id, FEEDBACK.c.reviewer, FEEDBACK.c.rating, FEEDBACK.c.comment,
            FEEDBACK.c.updated_at.label("rated_at"), FEEDBACK.c.votes,
            *[c for c in REQUESTS.c if c.name != "id"],
        ).join(REQUESTS, REQUESTS.c.id == FEEDBACK.c.request_id)
        q = _feedback_filters(q, None, None, rating, endpoint, variant, since, until)
        q = q.order_by(FEEDBACK.c.updated_at, FEEDBACK.c.request_id, FEEDBACK.c.reviewer)
        offset = 0
        while True:
            with self.engine.connect() as conn:
                rows = [row_dict(r) for r in conn.execute(q.limit(batch).offset(offset))]
            yield from rows
            if len(rows) < batch:
                return
            offset += batch


@dataclass(frozen=True)
class _VoteStatements:
    request: Any  # the request voted on
    history: Any  # the vote, appended to the history
    upsert: Any  # the current vote, inserted or replaced; returns created_at and votes


@functools.cache
def _vote_statements(dialect: str) -> _VoteStatements:
    """A vote's statements, built once per dialect: a vote is on the writer's thread, where
    building and hashing statements anew cost more than SQLite's own work."""
    from sqlalchemy.dialects import postgresql, sqlite

    request = sa.select(
        REQUESTS.c.endpoint, REQUESTS.c.variant, REQUESTS.c.chain, REQUESTS.c.chain_version,
        REQUESTS.c.status, REQUESTS.c.shadow_of,
    ).where(REQUESTS.c.id == sa.bindparam("id"))
    insert: Any = (postgresql if dialect == "postgresql" else sqlite).insert(FEEDBACK)
    upsert = insert.on_conflict_do_update(
        index_elements=[FEEDBACK.c.request_id, FEEDBACK.c.reviewer],
        set_={"rating": insert.excluded.rating, "comment": insert.excluded.comment,
              "key_id": insert.excluded.key_id, "updated_at": insert.excluded.updated_at,
              "votes": FEEDBACK.c.votes + 1},
    ).returning(FEEDBACK.c.created_at, FEEDBACK.c.votes)
    return _VoteStatements(request, HISTORY.insert(), upsert)


def _feedback_filters(
    q: Any, request_id: str | None, reviewer: str | None, rating: str | None,
    endpoint: str | None, variant: str | None, since: float | None, until: float | None,
) -> Any:
    conds: list[Any] = []
    if request_id:
        conds.append(FEEDBACK.c.request_id == request_id)
    if reviewer:
        conds.append(FEEDBACK.c.reviewer == reviewer)
    if rating:
        conds.append(FEEDBACK.c.rating == rating)
    if endpoint:
        conds.append(REQUESTS.c.endpoint == endpoint)
    if variant:
        conds.append(REQUESTS.c.variant == variant)
    if since is not None:
        conds.append(FEEDBACK.c.updated_at >= since)
    if until is not None:
        conds.append(FEEDBACK.c.updated_at < until)
    return q.where(*conds) if conds else q
