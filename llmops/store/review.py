"""Reads for the reviewer pages: the review queue (filtered, by cursor) and the dashboard.

The queue holds served answers newest first, without shadow copies or streams still
in progress, and pages by a cursor (the last row's time and id), so page 500 costs
what page 1 does. The dashboard's counts come from a few grouped queries over the
time window; latency percentiles are computed in the database (window functions).
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from llmops.errors import BadRequestError
from llmops.store.engine import driver_params, like_pattern
from llmops.store.requests import row_dict
from llmops.store.schema import FEEDBACK, REQUESTS
from llmops.store.writer import Writer

Rated = Literal["up", "down", "any", "none"]


@dataclass(frozen=True)
class QueueFilter:
    """What a reviewer asks the queue for; every field narrows it (None: no filter)."""

    endpoint: str | None = None
    variant: str | None = None
    chain_version: int | None = None
    unreviewed_by: str | None = None  # not yet voted on by this reviewer
    rated: Rated | None = None  # has a vote that is up / down / any, or has none at all
    has_comment: bool = False  # some reviewer left a comment
    errors: bool = False  # failed requests only (status 400 and above)
    since: float | None = None  # unix seconds, served at or after
    until: float | None = None  # served before
    text: str | None = None  # in the conversation or the answer, case-insensitive


@dataclass(frozen=True)
class QueuePage:
    rows: list[dict[str, Any]]
    next_cursor: str | None  # None: this is the last page
    votes: dict[str, dict[str, Any]] = field(default_factory=dict)  # request id -> my vote


def encode_cursor(created_at: float, request_id: str) -> str:
    raw = f"{created_at!r}|{request_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """(created_at, id) of the last row of the previous page; BadRequestError if mangled."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, rid = raw.partition("|")
        value = float(at)
        if not rid or not math.isfinite(value):
            raise ValueError(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequestError("cursor is not one this gateway handed out; start from the "
                              "first page", param="cursor") from None
    return value, rid


class ReviewMixin(Writer):
    def review_queue(self, filt: QueueFilter, *, cursor: str | None = None, limit: int = 20,
                     reviewer: str | None = None) -> QueuePage:
        """One page of the queue, newest first, and `reviewer`'s own votes on its rows."""
        r, f = REQUESTS, FEEDBACK
        conds: list[Any] = [r.c.shadow_of.is_(None), r.c.status != 0]
        for column, value in ((r.c.endpoint, filt.endpoint), (r.c.variant, filt.variant),
                              (r.c.chain_version, filt.chain_version)):
            if value is not None:
                conds.append(column == value)
        if filt.since is not None:
            conds.append(r.c.created_at >= filt.since)
        if filt.until is not None:
            conds.append(r.c.created_at < filt.until)
        if filt.errors:
            conds.append(r.c.status >= 400)
        voted = sa.select(f.c.request_id).where(f.c.request_id == r.c.id)
        if filt.unreviewed_by is not None:
            conds.append(~voted.where(f.c.reviewer == filt.unreviewed_by).exists())
        if filt.rated in ("up", "down"):
            conds.append(voted.where(f.c.rating == filt.rated).exists())
        elif filt.rated == "any":
            conds.append(voted.exists())
        elif filt.rated == "none":
            conds.append(~voted.exists())
        if filt.has_comment:
            conds.append(voted.where(f.c.comment.is_not(None), f.c.comment != "").exists())
        if filt.text:
            pattern = like_pattern(filt.text)
            conds.append(sa.or_(sa.cast(r.c.messages, sa.Text).ilike(pattern, escape="\\"),
                                r.c.answer.ilike(pattern, escape="\\")))
        if cursor is not None:
            at, rid = decode_cursor(cursor)
            conds.append(sa.or_(r.c.created_at < at,
                                sa.and_(r.c.created_at == at, r.c.id < rid)))
        q = (sa.select(r).where(*conds).order_by(r.c.created_at.desc(), r.c.id.desc())
             .limit(limit + 1))
        with self.engine.connect() as conn:
            rows = [row_dict(x) for x in conn.execute(q)]
            more = len(rows) > limit
            rows = rows[:limit]
            votes: dict[str, dict[str, Any]] = {}
            if reviewer is not None and rows:
                mine = sa.select(f.c.request_id, f.c.rating, f.c.comment, f.c.updated_at).where(
                    f.c.reviewer == reviewer, f.c.request_id.in_([x["id"] for x in rows]))
                votes = {v.request_id: dict(v._mapping) for v in conn.execute(mine)}
        last = rows[-1] if rows else None
        nxt = encode_cursor(last["created_at"], last["id"]) if more and last else None
        return QueuePage(rows, nxt, votes)

    def serving_summary(self, *, since: float | None = None,
                        until: float | None = None) -> list[dict[str, Any]]:
        """Per (endpoint, variant): requests, errors, tokens, latency p50/p95 of answers,
        and the current votes (up, down) on answered requests. Shadows excluded.

        The counts and latencies read only the narrow covering index `ix_request_log_stats`
        (never the wide rows); votes start from the feedback table (fewer rows than
        requests); percentiles are nearest-rank, sorted here.
        """
        r, f = REQUESTS, FEEDBACK
        conds = _window(since, until)
        groups = (
            sa.select(r.c.endpoint, r.c.variant, sa.func.count().label("requests"),
                      sa.func.sum(sa.case((r.c.status >= 400, 1), else_=0)).label("errors"),
                      sa.func.sum(r.c.prompt_tokens).label("prompt_tokens"),
                      sa.func.sum(r.c.completion_tokens).label("completion_tokens"))
            .where(*conds).group_by(r.c.endpoint, r.c.variant))
        votes = (
            sa.select(r.c.endpoint, r.c.variant,
                      sa.func.sum(sa.case((f.c.rating == "up", 1), else_=0)).label("up"),
                      sa.func.sum(sa.case((f.c.rating == "down", 1), else_=0)).label("down"))
            .select_from(f.join(r, r.c.id == f.c.request_id))
            .where(*conds, r.c.status == 200).group_by(r.c.endpoint, r.c.variant))
        latencies = sa.select(r.c.endpoint, r.c.variant, r.c.latency_ms).where(
            *conds, r.c.status == 200, r.c.latency_ms.is_not(None))
        out: dict[tuple[str, str | None], dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for g in conn.execute(groups):
                out[(g.endpoint, g.variant)] = {
                    "endpoint": g.endpoint, "variant": g.variant, "requests": int(g.requests),
                    "errors": int(g.errors or 0), "prompt_tokens": int(g.prompt_tokens or 0),
                    "completion_tokens": int(g.completion_tokens or 0), "up": 0, "down": 0,
                    "latency_p50_ms": None, "latency_p95_ms": None}
            for v in conn.execute(votes):
                if (v.endpoint, v.variant) in out:
                    out[(v.endpoint, v.variant)].update(up=int(v.up or 0), down=int(v.down or 0))
            lat: dict[tuple[str, str | None], list[float]] = {}
            compiled = latencies.compile(conn)  # the driver's own rows: ~100,000 of them
            cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(str(compiled), driver_params(compiled))
                for e, v, ms in cursor:
                    lat.setdefault((e, v), []).append(ms)
            finally:
                cursor.close()
        for key, values in lat.items():
            if key in out:
                values.sort()
                out[key].update(latency_p50_ms=nearest_rank(values, 50),
                                latency_p95_ms=nearest_rank(values, 95))
        return sorted(out.values(), key=lambda g: (g["endpoint"], g["variant"] or ""))

    def serving_series(self, *, bucket_s: int, since: float,
                       until: float | None = None) -> list[dict[str, Any]]:
        """Per time bucket (its start, unix seconds), endpoint and variant: requests, and
        the current up and down votes on the requests served in the bucket."""
        if bucket_s < 1:
            raise BadRequestError("bucket_s must be at least 1", param="bucket_s")
        r, f = REQUESTS, FEEDBACK
        conds = _window(since, until)
        if self.engine.dialect.name == "sqlite":  # CAST truncates there; it rounds elsewhere
            bucket = sa.cast(r.c.created_at / bucket_s, sa.Integer)
        else:
            bucket = sa.cast(sa.func.floor(r.c.created_at / bucket_s), sa.BigInteger)
        volume = (sa.select(bucket.label("b"), r.c.endpoint, r.c.variant,
                            sa.func.count().label("requests"))
                  .where(*conds).group_by(bucket, r.c.endpoint, r.c.variant))
        votes = (sa.select(bucket.label("b"), r.c.endpoint, r.c.variant,
                           sa.func.sum(sa.case((f.c.rating == "up", 1), else_=0)).label("up"),
                           sa.func.count().label("votes"))
                 .select_from(f.join(r, r.c.id == f.c.request_id))
                 .where(*conds, r.c.status == 200).group_by(bucket, r.c.endpoint, r.c.variant))
        out: dict[tuple[int, str, str | None], dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for x in conn.execute(volume):
                out[(int(x.b), x.endpoint, x.variant)] = {
                    "t": int(x.b) * bucket_s, "endpoint": x.endpoint, "variant": x.variant,
                    "requests": int(x.requests), "up": 0, "down": 0}
            for v in conn.execute(votes):
                g = out.get((int(v.b), v.endpoint, v.variant))
                if g is not None:
                    g.update(up=int(v.up or 0), down=int(v.votes) - int(v.up or 0))
        return sorted(out.values(), key=lambda g: (g["t"], g["endpoint"], g["variant"] or ""))


def nearest_rank(ordered: list[float], p: int) -> float:
    """The nearest-rank percentile of sorted values: the value at rank ceil(p * n / 100)."""
    return ordered[max(1, -(-p * len(ordered) // 100)) - 1]


def _window(since: float | None, until: float | None) -> list[Any]:
    """Served rows (no shadows, no streams in progress) in [since, until)."""
    r = REQUESTS
    conds: list[Any] = [r.c.shadow_of.is_(None), r.c.status != 0]
    if since is not None:
        conds.append(r.c.created_at >= since)
    if until is not None:
        conds.append(r.c.created_at < until)
    return conds

