"""Probes and metrics: /healthz (the process answers), /readyz (it can serve), /metrics."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from llmops.serving.deps import GatewayDep, MetricsKey
from llmops.serving.gateway import Gateway
from llmops.serving.schemas import gated

router = APIRouter(tags=["operations"])
READY_TTL_S = 1.0  # readiness is worked out at most once a second, however often it is asked


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (no key needed)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready; the body says why"}})
async def readyz(gw: GatewayDep) -> JSONResponse:
    """Every variant loaded, the store answering, the log writer committing, the alias
    refresher alive (no key needed; worked out at most once a second, no database lock)."""
    cached = gw.readiness
    if cached is None or time.monotonic() - cached[0] >= READY_TTL_S:
        async with gw.readiness_lock:  # one look at a time; the others take its answer
            cached = gw.readiness
            if cached is None or time.monotonic() - cached[0] >= READY_TTL_S:
                # a read of the store, off the event loop (a database down must not stall it)
                readable = await asyncio.get_running_loop().run_in_executor(
                    gw.key_pool, gw.store.readable)
                cached = gw.readiness = (time.monotonic(), *_readiness(gw, readable))
    _, status, body = cached
    return JSONResponse(body, status_code=status)


REPLICA = f"{socket.gethostname()}:{os.getpid()}"  # which process answered


def _readiness(gw: Gateway, readable: bool) -> tuple[int, dict[str, Any]]:
    live = gw.cache.snapshot()
    missing = [ref for ref in gw.cache.refs if ref not in live]
    writer = gw.store.watch()  # restarts a writer thread that died
    store = gw.store
    checks: dict[str, Any] = {
        "chains_loaded": not missing,
        "store_readable": readable,
        "log_writer_ok": writer.ok and not store.saturated(),
        "refresher_alive": gw.refresher_alive(),
    }
    ready = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", **checks,
                            "replica": REPLICA,
                            "limits": "redis (every replica)" if gw.shared else "this process",
                            "log_writer": {"alive": writer.alive, "pending": writer.pending,
                                           "max_pending": store.max_pending,
                                           "blocked_s": writer.blocked_s,
                                           "restarts": writer.restarts,
                                           "state": writer.describe()}}
    if missing:
        body["missing"] = {
            ref: f"archived ({gw.cache.archived[ref]}): not served" if ref in gw.cache.archived
            else "not loaded (see the gateway log)" if ref in gw.cache.errors
            else "loading" for ref in missing}
    return (200 if ready else 503), body


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **gated()})
async def metrics(key: MetricsKey, gw: GatewayDep) -> Response:
    """Prometheus metrics (a metrics or admin key: scrape with `authorization: credentials`)."""
    gw.metrics.log_pending.set(gw.store.pending)
    return Response(gw.metrics.render(), media_type=gw.metrics.content_type)
