"""Dependencies as `Annotated` aliases: the gateway, and the caller's key by scope.

A route declares who may call it by its key dependency (`ClientKey`,
`ReviewerKey`, `MetricsKey`, `AdminKey`, `AnyKey`): no key or an unknown one gives
401, a role outside the scope 403, a key over its rate 429 with Retry-After. The gate
(`gate.py`) reads the scope from the dependency and checks all of it before the body is
read; the dependency then takes the key the gate accepted, and checks again only where
no gate ran.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from llmops.errors import ForbiddenError, RateLimitedError, UnauthorizedError
from llmops.serving.gate import STATE_KEY, UNLIMITED_ROLES
from llmops.serving.gateway import Gateway
from llmops.serving.keys import SCOPES, key_from_header
from llmops.serving.limits import RateLimiter
from llmops.store import KeyRecord


async def get_gateway(request: Request) -> Gateway:  # async: no thread hop per request
    gw: Gateway = request.app.state.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def _challenge(request: Request) -> dict[str, str]:
    # Browsers prompt for Basic credentials on the review pages; API clients use Bearer.
    if request.url.path.startswith("/review"):
        return {"WWW-Authenticate": 'Basic realm="llmops review", charset="UTF-8"'}
    return {"WWW-Authenticate": "Bearer"}


async def authenticate(request: Request, gw: Gateway) -> KeyRecord:
    secret = key_from_header(request.headers.get("authorization"))
    if secret is None:
        raise UnauthorizedError(
            "no API key: send 'Authorization: Bearer <key>' (llmops keys create makes one)",
            headers=_challenge(request))
    hit, record = gw.keys.cached(secret)
    if not hit:
        record = await gw.run(gw.keys.lookup, secret)
    if record is None:
        raise UnauthorizedError("invalid API key", headers=_challenge(request))
    return record


def require(scope: str, *, rate_limited: bool = True) -> Callable[..., Awaitable[KeyRecord]]:
    roles = SCOPES[scope]

    async def dep(request: Request, gw: GatewayDep) -> KeyRecord:
        passed: KeyRecord | None = request.scope.get("state", {}).get(STATE_KEY)
        if passed is not None and passed.role in roles:
            return passed  # the gate checked key, role and rate
        key = await authenticate(request, gw)
        if key.role not in roles:
            raise ForbiddenError(
                f"key {key.id} has role {key.role}; this route needs one of "
                f"{', '.join(sorted(roles))}")
        if rate_limited and key.role not in UNLIMITED_ROLES:
            wait = gw.limiter.acquire(key.id)
            if wait is not None:
                after = RateLimiter.retry_after(wait)
                raise RateLimitedError(
                    f"rate limit of {gw.limiter.rate:g} requests/s (burst {gw.limiter.burst}) "
                    f"reached for key {key.id}; retry after {after} s",
                    headers={"Retry-After": after})
        return key

    dep.llmops_scope = (scope, rate_limited)  # type: ignore[attr-defined]  # read by the gate
    return dep


ClientKey = Annotated[KeyRecord, Depends(require("chat"))]
AnyKey = Annotated[KeyRecord, Depends(require("models"))]
ReviewerKey = Annotated[KeyRecord, Depends(require("review"))]
MetricsKey = Annotated[KeyRecord, Depends(require("metrics", rate_limited=False))]
AdminKey = Annotated[KeyRecord, Depends(require("admin", rate_limited=False))]
