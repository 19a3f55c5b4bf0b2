"""The reviewer pages: `/review` (the queue) and `/dashboard`, and the dashboard's data.

Browsers sign in at `/signin` (a session cookie); scripts may send the key as Bearer or
as Basic credentials. Votes go through `POST /v1/feedback` (the page's script sends
the CSRF token of its session). Every page read is a store read on the gateway's
threads; rendering escapes every value from the log.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse

from llmops.serving.deps import GatewayDep, ReviewerKey
from llmops.serving.gate import STATE_CSRF
from llmops.serving.pages import SECURITY_HEADERS, page
from llmops.serving.pages.dashboard import (
    bucket_for,
    dashboard_body,
    dashboard_data,
    window_bounds,
)
from llmops.serving.pages.review import queue_body, to_filter
from llmops.serving.schemas import gated

router = APIRouter(tags=["review"])
PAGE = 20
Window = Literal["1h", "24h", "7d", "30d", "all"]
Seconds = Annotated[float | None, Query(description="unix seconds", ge=0, le=1e11)]


def _csrf(request: Request) -> str | None:
    csrf: str | None = request.scope.get("state", {}).get(STATE_CSRF)
    return csrf


@router.get("/review", response_class=HTMLResponse, responses=gated(400))
async def review_page(
    request: Request, key: ReviewerKey, gw: GatewayDep,
    endpoint: Annotated[str | None, Query(max_length=128)] = None,
    variant: Annotated[str | None, Query(max_length=64)] = None,
    chain_version: Annotated[int | None, Query(ge=1, le=10**9)] = None,
    rated: Literal["up", "down", "any", "none", ""] | None = None,
    mine: bool = False, comment: bool = False, errors: bool = False,
    window: Literal["1h", "24h", "7d", "30d", ""] | None = None,
    since: Seconds = None, until: Seconds = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> HTMLResponse:
    """The queue of served answers, newest first, filtered; the reviewer's own votes."""
    params: dict[str, Any] = {
        "endpoint": endpoint, "variant": variant, "chain_version": chain_version,
        "rated": rated, "mine": mine, "comment": comment, "errors": errors, "window": window,
        "since": since, "until": until, "q": q, "cursor": cursor}
    filt = to_filter(params, key.name)
    result = await gw.run(lambda: gw.store.review_queue(filt, cursor=cursor, limit=PAGE,
                                                        reviewer=key.name))
    endpoints = sorted(gw.routes.endpoints)
    return page("Review", queue_body(result, params, endpoints), key=key, csrf=_csrf(request),
                active="review", scripts=("review.js",))


@router.get("/dashboard", response_class=HTMLResponse, responses=gated())
async def dashboard_page(request: Request, key: ReviewerKey, gw: GatewayDep,
                         window: Window = "7d") -> HTMLResponse:
    """Per endpoint and variant: volume, errors, thumbs-up rate, latency, tokens; A/B."""
    now = time.time()
    since, until = window_bounds(window, now)
    data = await gw.run(lambda: dashboard_data(gw.store, since=since, until=until))
    return page("Dashboard", dashboard_body(data, window, now), key=key, csrf=_csrf(request),
                active="dashboard", scripts=("dashboard.js",))


@router.get("/v1/dashboard", responses=gated())
async def dashboard_json(key: ReviewerKey, gw: GatewayDep, since: Seconds = None,
                         until: Seconds = None) -> JSONResponse:
    """The dashboard's numbers as JSON (the page shows the same)."""
    data = await gw.run(lambda: dashboard_data(gw.store, since=since, until=until))
    return JSONResponse(data, headers=SECURITY_HEADERS)


@router.get("/v1/dashboard/series", responses=gated())
async def dashboard_series(key: ReviewerKey, gw: GatewayDep, since: Seconds = None,
                           until: Seconds = None) -> JSONResponse:
    """Requests and votes per time bucket, endpoint and variant (the dashboard's charts)."""
    end = until if until is not None else time.time()
    start = since if since is not None else end - 30 * 86400
    bucket = bucket_for(max(end - start, 60.0))
    rows = await gw.run(lambda: gw.store.serving_series(bucket_s=bucket, since=start,
                                                        until=until))
    return JSONResponse({"bucket_s": bucket, "since": start, "until": end, "data": rows},
                        headers=SECURITY_HEADERS)
