"""The review page: served answers with their question and retrieved context, and a vote form.

Server-rendered HTML, no JavaScript. Browsers authenticate with Basic auth
(any user name, the reviewer key as password); every form carries a token
bound to the key, so another site cannot vote in a reviewer's name.
"""

from __future__ import annotations

import hashlib
import hmac
from html import escape
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from llmops.errors import BadRequestError, ForbiddenError
from llmops.serving.deps import GatewayDep, ReviewerKey
from llmops.serving.gateway import Gateway
from llmops.serving.routes.feedback import record_vote
from llmops.serving.schemas import gated
from llmops.store import KeyRecord

router = APIRouter(tags=["review"])
PAGE = 20

_CSS = """body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
article{border:1px solid #ccc;border-radius:6px;padding:1rem;margin:1rem 0}
.q{font-weight:600}.a{white-space:pre-wrap;background:#f6f8fa;padding:.5rem}
details{margin:.5rem 0}small{color:#666}.vote{color:#064}textarea{width:100%}"""


def _token(gw: Gateway, key: KeyRecord) -> str:
    return hmac.new(gw.csrf_secret, key.id.encode(), hashlib.sha256).hexdigest()[:32]


def _question(messages: Any) -> str:
    users = [m.get("content", "") for m in messages or [] if m.get("role") == "user"]
    return users[-1] if users else ""


def _article(r: dict[str, Any], vote: dict[str, Any] | None, token: str) -> str:
    rid = escape(r["id"])
    sources = "".join(
        f"<li><b>{escape(str(s.get('title') or s.get('id')))}</b> "
        f"<small>{escape(str(s.get('score', '')))}</small><br>{escape(s.get('snippet') or '')}</li>"
        for s in r.get("sources") or [])
    mine = (f"<p class=vote>your vote: {escape(vote['rating'])}"
            f"{' — ' + escape(vote['comment']) if vote.get('comment') else ''}</p>") if vote else ""
    return f"""<article id="{rid}">
<small>{rid} · {escape(r['endpoint'])} · {escape(r.get('variant') or '')} ·
{escape(str(r.get('chain') or ''))}/{escape(str(r.get('chain_version') or ''))}</small>
<p class=q>{escape(_question(r.get('messages')))}</p>
<div class=a>{escape(r.get('answer') or r.get('error') or '')}</div>
<details><summary>retrieved context ({len(r.get('sources') or [])})</summary><ol>{sources}</ol></details>
{mine}<form method=post action="/review/{rid}">
<input type=hidden name=csrf value="{token}">
<textarea name=comment rows=2 placeholder="comment (optional)"></textarea>
<button name=rating value=up>👍 up</button> <button name=rating value=down>👎 down</button>
</form></article>"""


@router.get("/review", response_class=HTMLResponse, responses=gated())
async def review_page(
    key: ReviewerKey, gw: GatewayDep,
    endpoint: Annotated[str | None, Query(max_length=128)] = None,
    unrated: bool = False,
    offset: Annotated[int, Query(ge=0, le=10**9)] = 0,
) -> HTMLResponse:
    """Recent answers, newest first, with the reviewer's own votes."""
    rows = await gw.run(lambda: gw.store.list_requests(
        endpoint=endpoint, limit=PAGE, offset=offset,
        unrated_by=key.name if unrated else None))
    ids = {r["id"] for r in rows}
    votes = await gw.run(lambda: gw.store.list_feedback(reviewer=key.name, limit=10_000))
    mine = {v["request_id"]: v for v in votes if v["request_id"] in ids}
    token = _token(gw, key)
    query = {k: v for k, v in {"endpoint": endpoint, "unrated": "true" if unrated else None,
                               "offset": offset + PAGE}.items() if v is not None}
    more = f'<p><a href="/review?{escape(urlencode(query))}">older</a></p>' if len(
        rows) == PAGE else ""
    body = "".join(_article(r, mine.get(r["id"]), token) for r in rows) or "<p>nothing to review</p>"
    html = f"""<!doctype html><html><head><meta charset=utf-8><title>llmops review</title>
<style>{_CSS}</style></head><body><h1>Review answers</h1>
<p><small>signed in as {escape(key.name)} ({escape(key.role)}) ·
<a href="/review?unrated=true">unrated only</a> · <a href="/review">all</a></small></p>
{body}{more}</body></html>"""
    return HTMLResponse(html)


@router.post("/review/{request_id}", response_class=RedirectResponse, status_code=303,
             responses=gated(404, 409, 413, 503))
async def review_vote(request_id: str, request: Request, key: ReviewerKey,
                      gw: GatewayDep) -> RedirectResponse:
    """The vote form's target (application/x-www-form-urlencoded: rating, comment, csrf)."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    given = form.get("csrf", [""])[0].encode("utf-8")  # bytes: any text compares, none raises
    if not hmac.compare_digest(given, _token(gw, key).encode()):
        raise ForbiddenError("the form token is missing or stale; reload /review")
    if any("\x00" in v for values in form.values() for v in values):
        raise BadRequestError("the form holds a NUL byte")
    rating = form.get("rating", [""])[0]
    if rating not in ("up", "down"):
        raise BadRequestError("rating must be up or down", param="rating")
    comment = form.get("comment", [""])[0].strip()[:4000]
    await record_vote(gw, key, request_id, rating, comment)
    return RedirectResponse(f"/review#{request_id}", status_code=303)
