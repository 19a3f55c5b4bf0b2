"""Signing in to the reviewer pages with a key, signing out, and the pages' static files.

`POST /signin` takes a reviewer or admin key from a form and answers with the session
cookie (`session.py`); a client or metrics key cannot sign in. Failed attempts count
against the address's failed-authentication limit, as a bad key on the API does.
"""

from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from llmops.errors import NotFoundGatewayError, RateLimitedError
from llmops.serving import session
from llmops.serving.deps import GatewayDep, ReviewerKey
from llmops.serving.keys import SCOPES, hash_key
from llmops.serving.limits import RateLimiter
from llmops.serving.pages import SECURITY_HEADERS, e, page, static_response
from llmops.serving.schemas import errors, gated

router = APIRouter(tags=["review"])


def _next(target: str | None) -> str:
    """Only a path on this gateway (no scheme, no host, no protocol-relative URL)."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/review"


def _form(message: str = "", target: str = "/review") -> str:
    error = f'<p class="error" role="alert">{e(message)}</p>' if message else ""
    return f"""<div class="signin"><h1>Sign in to review</h1>{error}
<form method="post" action="/signin"><input type="hidden" name="next" value="{e(target)}">
<label for="key">Reviewer key</label>
<input id="key" name="key" type="password" autocomplete="current-password" required
 autofocus spellcheck="false" placeholder="llmops-k…">
<button type="submit">Sign in</button></form>
<p class="hint">A reviewer or admin key (<code>llmops keys create --role reviewer</code>).
The session lasts {session.MAX_AGE_S // 3600} hours.</p></div>"""


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


@router.get("/signin", response_class=HTMLResponse, responses=errors(400))
async def signin_page(next: Annotated[str | None, Query(max_length=400)] = None) -> HTMLResponse:
    """The sign-in form."""
    return page("Sign in", _form(target=_next(next)))


@router.post("/signin", response_class=HTMLResponse,
             responses={303: {"description": "signed in: the session cookie is set"},
                        401: {"description": "not a valid key (the form again)"},
                        403: {"description": "a key that may not review (the form again)"},
                        **errors(400, 413, 429)})
async def signin(request: Request, gw: GatewayDep) -> Response:
    """Form fields `key` and `next`: a reviewer or admin key opens a session."""
    body = await request.body()
    form = parse_qs(body.decode("utf-8", "replace"), max_num_fields=4)
    secret = form.get("key", [""])[0].strip()
    target = _next(form.get("next", [None])[0])
    client = request.client
    address = client.host if client else "?"
    failures: RateLimiter = gw.auth_failures
    record = None
    if secret and "\x00" not in secret and not failures.exhausted(address):
        record = await asyncio.get_running_loop().run_in_executor(
            gw.key_pool, gw.keys.lookup, secret)
    if record is None:
        wait = await gw.take("auth", address, failures)
        if wait is not None:
            raise RateLimitedError("too many failed sign-ins from this address; retry after "
                                 f"{RateLimiter.retry_after(wait)} s",
                                 headers={"Retry-After": RateLimiter.retry_after(wait)})
        return page("Sign in", _form("That key is not valid.", target), status=401)
    if record.role not in SCOPES["review"]:
        return page("Sign in", _form(f"A {record.role} key cannot sign in: use a reviewer "
                                     "or admin key.", target), status=403)
    cookie = session.make_session(record, hash_key(secret))
    return RedirectResponse(target, status_code=303, headers={
        **SECURITY_HEADERS,
        "set-cookie": session.set_cookie_header(cookie, secure=_secure(request))})


@router.post("/signout", status_code=204, response_class=Response, responses=gated())
async def signout(request: Request, key: ReviewerKey) -> Response:
    """End the browser's session (needs the page's CSRF token, as every POST of a page)."""
    return Response(status_code=204, headers={
        **SECURITY_HEADERS, "set-cookie": session.clear_cookie_header(secure=_secure(request))})


@router.get("/static/{name}", include_in_schema=False)
async def static(name: Annotated[str, Path(max_length=64)]) -> Response:
    found = static_response(name)
    if found is None:
        raise NotFoundGatewayError(f"no static file {name!r}")
    return found
