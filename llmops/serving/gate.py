"""The gate in front of every route: who may call it, checked before any body is read.

An ASGI middleware that answers refusals itself, in microseconds, without FastAPI's
routing, body parsing or thread hops:
- a NUL byte in the path or query string: 400 (PostgreSQL refuses NUL in text later);
- no key, or one the gateway does not know: 401; failed authentications are counted
  per client address, and past `auth_failures_per_s` (burst `auth_failure_burst`) the
  address gets 429 without any key look-up; a key not shaped like ours costs no query,
  an unknown one at most one query per `miss_ttl_s`, on the gate's own thread;
- a role outside the route's scope: 403;
- the reviewer pages' session cookie (`session.py`) counts as a key on review routes
  only; a request authenticated by the browser itself (cookie or Basic) with a
  state-changing method needs the CSRF token of its session in `X-CSRF-Token`: 403;
  a browser asking for a page without a session is sent to `/signin`;
- a key over its rate: 429 with Retry-After (admin and metrics keys are not rate
  limited: operators must reach a busy gateway).

The route's scope comes from its key dependency (`deps.require`), read once at start;
the accepted key rides in the request's state, so the dependency does no second check.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from llmops.serving import session
from llmops.serving.errors import error_body
from llmops.serving.keys import SCOPES, KeyCache, hash_key, key_from_header
from llmops.serving.limits import RateLimiter
from llmops.store import KeyRecord

STATE_KEY = "llmops_key"  # the accepted KeyRecord in scope["state"]
STATE_CSRF = "llmops_csrf"  # the CSRF token of a browser's session (None for Bearer)
PAGES = ("/review", "/dashboard")  # a browser without a session is sent to /signin
UNLIMITED_ROLES = frozenset({"admin", "metrics"})


@dataclass(frozen=True)
class Rule:
    """A route that needs a key: its path pattern, methods and scope."""

    path: re.Pattern[str]
    methods: frozenset[str]
    scope: str
    rate_limited: bool


def rules_of(routes: Iterable[Any]) -> list[Rule]:
    """The rules of the app's routes: each route names its scope by its key dependency."""
    out: list[Rule] = []
    for route in routes:
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        stack, found = list(dependant.dependencies), None
        while stack and found is None:
            dep = stack.pop()
            found = getattr(dep.call, "llmops_scope", None)
            stack.extend(dep.dependencies)
        if found is not None:
            scope, limited = found
            out.append(Rule(route.path_regex, frozenset(route.methods or ()), scope, limited))
    return out


class KeyGate:
    """ASGI middleware: authentication, role and rate limits before the app runs."""

    def __init__(self, app: ASGIApp, gateway: Any, routes: list[Any]) -> None:
        self.app, self.gw = app, gateway
        self.rules = rules_of(routes)  # the routes of the gateway's routers
        self.failures: RateLimiter = gateway.auth_failures

    def _rule(self, scope: Scope) -> Rule | None:
        path, method = scope["path"], scope["method"]
        for rule in self.rules:
            if method in rule.methods and rule.path.match(path):
                return rule
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await _refuse(send, 400, "the URL holds a NUL byte", "nul_byte")
            return
        rule = self._rule(scope)
        if rule is None:  # public (health, docs) or no such route: the app answers
            await self.app(scope, receive, send)
            return
        found = await self._authenticate(scope, send, rule)
        if found is None:
            return  # refused
        key, csrf = found
        if (csrf is not None and scope["method"] not in session.SAFE_METHODS
                and not session.csrf_ok(_header(scope, session.HEADER), csrf)):
            await _refuse(send, 403, "this request needs the page's CSRF token in "
                                     "X-CSRF-Token (reload the page)", "csrf_failed")
            return
        if key.role not in SCOPES[rule.scope]:
            roles = ", ".join(sorted(SCOPES[rule.scope]))
            await _refuse(send, 403, f"key {key.id} has role {key.role}; this route needs one "
                                     f"of {roles}", "insufficient_role")
            return
        if rule.rate_limited and key.role not in UNLIMITED_ROLES:
            limiter = self.gw.limiter
            wait = await self.gw.take("rate", key.id, limiter)
            if wait is not None:
                after = RateLimiter.retry_after(wait)
                await _refuse(send, 429, f"rate limit of {limiter.rate:g} requests/s (burst "
                                         f"{limiter.burst}) reached for key {key.id}; retry "
                                         f"after {after} s", "rate_limit_exceeded",
                              {"retry-after": after})
                return
        state = scope.setdefault("state", {})
        state[STATE_KEY], state[STATE_CSRF] = key, csrf
        await self.app(scope, receive, send)

    async def _authenticate(self, scope: Scope, send: Send,
                            rule: Rule) -> tuple[KeyRecord, str | None] | None:
        """(the key, the CSRF token its requests need or None), or None when refused."""
        client = scope.get("client")
        address = client[0] if client else "?"
        authorization = _header(scope, b"authorization")
        header = authorization.decode("latin-1") if authorization is not None else None
        secret = key_from_header(header)
        cookie = session.cookie_value(scope["headers"]) if header is None else None
        found: tuple[KeyRecord, str | None] | None = None
        if secret is not None:
            record = await self._key(secret, address)
            if record is not None:  # Basic: the browser resends it on its own
                basic = header is not None and header.lstrip()[:6].lower() == "basic "
                found = record, (session.csrf_token(hash_key(secret), None) if basic else None)
        elif cookie is not None and rule.scope == "review":
            signed = await self._session(cookie, address)
            if signed is not None:
                found = signed[0], session.csrf_token(signed[1], cookie)
        if found is not None:
            return found
        wait = await self.gw.take("auth", address, self.failures)
        if wait is not None:
            after = RateLimiter.retry_after(wait)
            await _refuse(send, 429, "too many failed authentications from this address; "
                                     f"retry after {after} s", "too_many_auth_failures",
                          {"retry-after": after})
            return None
        if (secret is None and scope["method"] == "GET" and scope["path"] in PAGES
                and b"text/html" in (_header(scope, b"accept") or b"")):
            await _redirect(send, "/signin?next=" + scope["path"])  # a browser: sign in
            return None
        message = ("no API key: send 'Authorization: Bearer <key>' (llmops keys create makes "
                   "one)" if secret is None and cookie is None else
                   "the session has expired or was signed out; sign in again at /signin"
                   if secret is None else "invalid API key")
        await _refuse(send, 401, message, "invalid_api_key", _challenge(scope["path"]))
        return None

    async def _key(self, secret: str, address: str) -> KeyRecord | None:
        keys: KeyCache = self.gw.keys
        hit, record = keys.cached(secret)
        if not hit and not self.failures.exhausted(address):  # else: no look-up
            record = await asyncio.get_running_loop().run_in_executor(
                self.gw.key_pool, keys.lookup, secret)  # never the chains' threads
        return record

    async def _session(self, cookie: str, address: str) -> tuple[KeyRecord, str] | None:
        sessions: session.SessionCache = self.gw.sessions
        if sessions.expired(cookie):
            return None
        hit, found = sessions.cached(cookie)
        if not hit and not self.failures.exhausted(address):
            found = await asyncio.get_running_loop().run_in_executor(
                self.gw.key_pool, sessions.lookup, cookie)
        return found


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def _redirect(send: Send, location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode("latin-1")),
                            (b"content-length", b"0"), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": b""})


def _challenge(path: str) -> dict[str, str]:
    # Browsers prompt for Basic credentials on the review pages; API clients use Bearer.
    if path.startswith("/review"):
        return {"www-authenticate": 'Basic realm="llmops review", charset="UTF-8"'}
    return {"www-authenticate": "Bearer"}


async def _refuse(send: Send, status: int, message: str, code: str,
                  headers: dict[str, str] | None = None) -> None:
    body = orjson.dumps(error_body(status, message, code=code))
    raw = [(b"content-type", b"application/json"),
           (b"content-length", str(len(body)).encode())]
    raw += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
