"""POST /v1/feedback (a reviewer's vote) and GET /v1/feedback (votes, filtered)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response

from llmops.errors import NotFoundGatewayError
from llmops.serving.deps import GatewayDep, ReviewerKey
from llmops.serving.gateway import Gateway
from llmops.serving.schemas import FeedbackIn, FeedbackList, FeedbackOut, gated
from llmops.store import KeyRecord, UnknownRequestError

router = APIRouter(tags=["feedback"])


async def record_vote(gw: Gateway, key: KeyRecord, request_id: str, rating: str,
                      comment: str | None) -> FeedbackOut:
    """Commit one vote (the reviewer is the key's name); 404 for an unknown request id."""
    op = gw.store.feedback_op(request_id, reviewer=key.name, rating=rating,
                              comment=comment or None, key_id=key.id)
    try:
        vote = await gw.store.commit_async(op)  # shielded: a vote is never half-taken
    except UnknownRequestError as exc:
        raise NotFoundGatewayError(str(exc), param="request_id") from None
    gw.metrics.feedback.labels(rating).inc()
    return FeedbackOut(**vars(vote))  # its fields, no deep copy (asdict: 5% of a vote)


@router.post("/v1/feedback", response_model=FeedbackOut,
             responses=gated(404, 409, 413, 503))
async def post_feedback(body: FeedbackIn, key: ReviewerKey, gw: GatewayDep) -> Response:
    """Thumbs up or down on an answer, with an optional comment; the last vote wins."""
    vote = await record_vote(gw, key, body.request_id, body.rating, body.comment)
    # built and checked as FeedbackOut above: serialized once here, not validated again
    return Response(vote.model_dump_json(), media_type="application/json")


@router.get("/v1/feedback", response_model=FeedbackList, responses=gated())
async def list_feedback(
    key: ReviewerKey,
    gw: GatewayDep,
    request_id: Annotated[str | None, Query(max_length=64)] = None,
    reviewer: Annotated[str | None, Query(max_length=128)] = None,
    rating: Literal["up", "down"] | None = None,
    endpoint: Annotated[str | None, Query(max_length=128)] = None,
    variant: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[float | None, Query(description="unix seconds", ge=0, le=1e11)] = None,
    until: Annotated[float | None, Query(description="unix seconds", ge=0, le=1e11)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> FeedbackList:
    """Current votes (one per reviewer and request), newest first, with their request."""
    rows = await gw.run(lambda: gw.store.list_feedback(
        request_id=request_id, reviewer=reviewer, rating=rating, endpoint=endpoint,
        variant=variant, since=since, until=until, limit=limit + 1, offset=offset))
    data = [FeedbackOut.model_validate({k: v for k, v in r.items() if k != "key_id"})
            for r in rows[:limit]]
    return FeedbackList(data=data, has_more=len(rows) > limit)
