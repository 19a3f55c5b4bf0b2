"""Probes and metrics: /healthz (the process answers), /readyz (it can serve), /metrics."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from llmops.serving.deps import GatewayDep, MetricsKey
from llmops.serving.gateway import Gateway
from llmops.serving.schemas import errors

router = APIRouter(tags=["operations"])
READY_TTL_S = 1.0  # readiness is worked out at most once a second, however often it is asked


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (no key needed)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready; the body says why"}})
async def readyz(gw: GatewayDep) -> JSONResponse:
    """Every variant loaded, the log writer committing, the alias refresher alive (no key
    needed; worked out at most once a second, and it takes no database lock)."""
    now = time.monotonic()
    cached = gw.readiness
    if cached is None or now - cached[0] >= READY_TTL_S:
        cached = gw.readiness = (now, *_readiness(gw))
    _, status, body = cached
    return JSONResponse(body, status_code=status)


def _readiness(gw: Gateway) -> tuple[int, dict[str, Any]]:
    live = gw.cache.snapshot()
    missing = [ref for ref in gw.cache.refs if ref not in live]
    writer = gw.store.watch()  # restarts a writer thread that died
    store = gw.store
    checks: dict[str, Any] = {
        "chains_loaded": not missing,
        "log_writer_ok": writer.ok and not store.saturated(),
        "refresher_alive": gw.refresher_alive(),
    }
    ready = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", **checks,
                            "log_writer": {"alive": writer.alive, "pending": writer.pending,
                                           "max_pending": store.max_pending,
                                           "blocked_s": writer.blocked_s,
                                           "restarts": writer.restarts,
                                           "state": writer.describe()}}
    if missing:
        body["missing"] = {ref: "not loaded (see the gateway log)" if ref in gw.cache.errors
                           else "loading" for ref in missing}
    return (200 if ready else 503), body


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(401, 403)})
async def metrics(key: MetricsKey, gw: GatewayDep) -> Response:
    """Prometheus metrics (a metrics or admin key: scrape with `authorization: credentials`)."""
    gw.metrics.log_pending.set(gw.store.pending)
    return Response(gw.metrics.render(), media_type=gw.metrics.content_type)
