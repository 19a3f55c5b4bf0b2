"""Dependencies as `Annotated` aliases: the gateway, and the caller's key by scope.

A route declares who may call it by its key dependency (`ClientKey`,
`ReviewerKey`, `MetricsKey`, `AdminKey`, `AnyKey`): no key or an unknown one gives
401, a role outside the scope 403, a key over its rate 429 with Retry-After. The gate
(`gate.py`) reads the scope from the dependency and checks all of it before the body is
read; the dependency hands the route the key the gate accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from llmops.errors import UnauthorizedError
from llmops.serving.gate import STATE_KEY
from llmops.serving.gateway import Gateway
from llmops.serving.keys import SCOPES
from llmops.store import KeyRecord


async def get_gateway(request: Request) -> Gateway:  # async: no thread hop per request
    gw: Gateway = request.app.state.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def require(scope: str, *, rate_limited: bool = True) -> Callable[..., Awaitable[KeyRecord]]:
    """The key dependency of a route of `scope`: the key that the gate accepted for it.

    The gate (`gate.py`) reads `llmops_scope` from this dependency and does every check
    (key, role, rate) before the body is read; a request here without the gate's key
    never passed the gate (an app built without it), and is refused.
    """
    roles = SCOPES[scope]

    async def dep(request: Request) -> KeyRecord:
        key: KeyRecord | None = request.scope.get("state", {}).get(STATE_KEY)
        if key is None or key.role not in roles:
            raise UnauthorizedError("no key was checked for this request",
                                    headers={"WWW-Authenticate": "Bearer"})
        return key

    dep.llmops_scope = (scope, rate_limited)  # type: ignore[attr-defined]  # read by the gate
    return dep


ClientKey = Annotated[KeyRecord, Depends(require("chat"))]
AnyKey = Annotated[KeyRecord, Depends(require("models"))]
ReviewerKey = Annotated[KeyRecord, Depends(require("review"))]
MetricsKey = Annotated[KeyRecord, Depends(require("metrics", rate_limited=False))]
AdminKey = Annotated[KeyRecord, Depends(require("admin", rate_limited=False))]
