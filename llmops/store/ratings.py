"""Counts for online evaluation: answered requests and their current votes, per group.

Counted: requests the gateway answered (status 200) that are not shadow copies, and
the current vote of each reviewer on them (a reviewer who changes a vote counts once,
with the last rating); a vote on a failed request counts nowhere. `since`/`until`
(unix seconds) select requests by the time they were served. The statistics live in
`llmops.eval.online`; the database aggregates here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa

from llmops.store.schema import FEEDBACK, REQUESTS
from llmops.store.writer import Writer

SERVED = 200  # HTTP status of an answered request


@dataclass(frozen=True)
class VoteCounts:
    """One (key, chain, chain version) group: its requests and the votes on them."""

    key: str | int  # the variant, or the chain version, as grouped by
    chain: str | None
    chain_version: int | None
    requests: int  # answered (status 200), shadows excluded
    failed: int  # status 400 and above, shadows excluded
    votes: int  # current votes on the answered requests
    up: int


class RatingsMixin(Writer):
    def vote_counts(
        self, *, by: Literal["variant", "chain_version"], endpoint: str | None = None,
        chain: str | None = None, since: float | None = None, until: float | None = None,
    ) -> list[VoteCounts]:
        """Counts per (`by`, chain, chain version) of the requests served in [since, until).

        Args:
            by: group by the request's variant, or by its chain version.
            endpoint: only requests to this endpoint.
            chain: only requests served by this registered chain (`chain.<name>`).

        Example:
            >>> store.vote_counts(by="variant", endpoint="rag-qa", since=time.time() - 86400)
        """
        r, f = REQUESTS, FEEDBACK
        key = r.c[by]
        conds: list[Any] = [r.c.shadow_of.is_(None), key.is_not(None)]
        if endpoint is not None:
            conds.append(r.c.endpoint == endpoint)
        if chain is not None:
            conds.append(r.c.chain == chain)
        if since is not None:
            conds.append(r.c.created_at >= since)
        if until is not None:
            conds.append(r.c.created_at < until)
        served = r.c.status == SERVED
        # Votes join only answered requests: a vote on a failed request counts nowhere.
        joined = r.outerjoin(f, sa.and_(f.c.request_id == r.c.id, served))
        q = (
            sa.select(
                key.label("key"), r.c.chain, r.c.chain_version,
                sa.func.count(sa.distinct(sa.case((served, r.c.id)))).label("requests"),
                sa.func.count(sa.distinct(sa.case((r.c.status >= 400, r.c.id)))).label("failed"),
                sa.func.count(f.c.request_id).label("votes"),
                sa.func.coalesce(sa.func.sum(sa.case((f.c.rating == "up", 1), else_=0)), 0)
                .label("up"),
            )
            .select_from(joined)
            .where(*conds)
            .group_by(key, r.c.chain, r.c.chain_version)
        )
        with self.engine.connect() as conn:
            return [VoteCounts(row.key, row.chain, row.chain_version, int(row.requests),
                               int(row.failed), int(row.votes), int(row.up))
                    for row in conn.execute(q)]
