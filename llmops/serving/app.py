"""The gateway's FastAPI app: `create_app()`; `llmops serve` runs it with uvicorn.

Start-up loads every variant's chain (readiness waits for it) and starts the
alias refresher; shutdown, after uvicorn drained the requests in flight,
finishes shadow requests and commits every pending log write.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI

import llmops
from llmops.config import Settings, get_settings
from llmops.registry import Registry, get_registry
from llmops.serving import errors
from llmops.serving.gate import KeyGate
from llmops.serving.gateway import Gateway, GatewayOptions
from llmops.serving.limits import BodySizeLimit
from llmops.serving.routes import (
    admin,
    chat,
    embeddings,
    feedback,
    health,
    models,
    review,
    signin,
)
from llmops.serving.spec import RoutesSpec, load_routes
from llmops.store import Store

WORKER_OPTIONS = "LLMOPS_SERVE_WORKER_OPTIONS"  # what a process of `serve --workers` builds
ENDPOINTS_DOC = "x-llmops-endpoints"  # in /openapi.json: what each endpoint honours now


def worker_app() -> FastAPI:
    """The app of one process of `llmops serve --workers N`: uvicorn's supervisor imports
    this in each worker; the options come from the parent (`WORKER_OPTIONS`)."""
    import json
    import os

    opts = json.loads(os.environ[WORKER_OPTIONS])
    return create_app(routes=Path(opts["routes"]) if opts["routes"] else None,
                      options=GatewayOptions(log_requests=opts["log_requests"],
                                             drain_s=opts["drain_s"], threads=opts["threads"],
                                             freeze_gc=True))


def create_app(
    *, settings: Settings | None = None, routes: RoutesSpec | Path | None = None,
    store: Store | None = None, registry: Registry | None = None,
    options: GatewayOptions | None = None,
) -> FastAPI:
    """The gateway app; every part defaults to what the settings name."""
    settings = settings or get_settings()
    spec = routes if isinstance(routes, RoutesSpec) else load_routes(routes)
    gw = Gateway.build(settings, spec, store or Store.open(settings.store_url),
                       registry or get_registry(), options)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop(gw.shutdown_budget())

    docs = settings.gateway.docs
    if docs is None:
        docs = settings.profile != "prod"  # the API's map is for developers, not the world
    app = FastAPI(title="llmops gateway", version=llmops.__version__, lifespan=lifespan,
                  description="OpenAI-compatible chat over llmops chains, with A/B routing, "
                              "a durable request log and reviewer feedback.",
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  openapi_url="/openapi.json" if docs else None)
    app.state.gateway = gw
    _document_endpoints(app, gw)
    errors.install(app)
    modules = (chat, embeddings, models, feedback, review, signin, admin, health)
    for module in modules:
        app.include_router(module.router)  # no prefixes: the gate matches their own paths
    # outermost last: keys are checked before the body is read, then its size
    app.add_middleware(BodySizeLimit, max_bytes=settings.gateway.max_body_bytes)
    app.add_middleware(KeyGate, gateway=gw,
                       routes=[r for m in modules for r in m.router.routes])
    return app


def _document_endpoints(app: FastAPI, gw: Gateway) -> None:
    """/openapi.json names, on the chat operation, each endpoint of routes.yaml with its
    variants and the request parameters it honours (as GET /v1/models does): the loaded
    chains decide, so the document is made per request on top of FastAPI's cached one."""
    import copy

    base = app.openapi

    def openapi() -> dict[str, Any]:
        schema = copy.deepcopy(base())
        op = schema["paths"]["/v1/chat/completions"]["post"]
        op[ENDPOINTS_DOC] = {
            name: {"description": ep.description, "variants": [v.label for v in ep.variants],
                   "parameters": models.parameters(gw, ep)}
            for name, ep in sorted(gw.routes.endpoints.items())}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]

