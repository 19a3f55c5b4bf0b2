"""Probes and metrics: /healthz (the process answers), /readyz (it can serve), /metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from llmops.serving.deps import AdminKey, GatewayDep
from llmops.serving.schemas import errors

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (no key needed)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready; the body says why"}})
async def readyz(gw: GatewayDep) -> JSONResponse:
    """Every variant loaded, the log writable, the alias refresher alive (no key needed)."""
    live = gw.cache.snapshot()
    missing = [ref for ref in gw.cache.refs if ref not in live]
    writable = await gw.run(gw.store.writable)
    checks: dict[str, Any] = {
        "chains_loaded": not missing, "store_writable": writable,
        "refresher_alive": gw.refresher_alive(),
    }
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not ready", **checks}
    if missing:
        body["missing"] = {ref: gw.cache.errors.get(ref, "loading") for ref in missing}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses={
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}}, **errors(401, 403)})
async def metrics(key: AdminKey, gw: GatewayDep) -> Response:
    """Prometheus metrics (an admin key: scrape with `authorization: credentials`)."""
    gw.metrics.log_pending.set(gw.store.pending)
    return Response(gw.metrics.render(), media_type=gw.metrics.content_type)
