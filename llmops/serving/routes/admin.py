"""Admin routes: force an alias refresh, see what is served."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from llmops.serving.deps import AdminKey, GatewayDep
from llmops.serving.schemas import gated

router = APIRouter(tags=["admin"])


def _status(gw: GatewayDep) -> dict[str, Any]:
    live = gw.cache.snapshot()
    return {
        "endpoints": {
            name: {v.label: {"ref": v.ref, "weight": v.weight,
                             "version": live[v.ref].version if v.ref in live else None,
                             "error": gw.cache.errors.get(v.ref)}
                   for v in ep.variants}
            for name, ep in gw.routes.endpoints.items()
        },
        "pending_log_writes": gw.store.pending,
        "in_flight": gw.in_flight,
    }


@router.post("/admin/reload", responses=gated(500))
async def reload(key: AdminKey, gw: GatewayDep) -> dict[str, Any]:
    """Resolve every alias now (without waiting for the background refresh)."""
    await gw.reload()
    return _status(gw)


@router.get("/admin/status", responses=gated())
async def status(key: AdminKey, gw: GatewayDep) -> dict[str, Any]:
    """The version each variant serves, errors of the last refresh, pending log writes."""
    return _status(gw)
