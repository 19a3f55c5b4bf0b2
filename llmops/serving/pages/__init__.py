"""The reviewer pages (`/signin`, `/review`, `/dashboard`): HTML, CSS, scripts and icons.

Rendered on the server, every value from the log escaped as text; the scripts
(`static/`) only move the focus, send votes and draw the charts, building DOM nodes
(never HTML strings). Everything is served by the gateway itself, under a strict
Content-Security-Policy: no inline script or style, no CDN, no framing.
"""

from __future__ import annotations

from html import escape
from importlib import resources
from typing import Any

from fastapi.responses import HTMLResponse, Response

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".svg": "image/svg+xml"}


def e(value: Any) -> str:
    """A value as HTML text (quotes escaped too: safe in attributes)."""
    return escape("" if value is None else str(value), quote=True)


def static_file(name: str) -> tuple[bytes, str] | None:
    """(content, media type) of a file shipped in `static/`, or None (no paths: one name)."""
    suffix = name[name.rfind("."):] if "." in name else ""
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in _TYPES:
        return None
    path = resources.files(__package__).joinpath("static", name)
    if not path.is_file():
        return None
    return path.read_bytes(), _TYPES[suffix]


def static_response(name: str) -> Response | None:
    found = static_file(name)
    if found is None:
        return None
    headers = {**SECURITY_HEADERS, "cache-control": "no-cache"}
    return Response(found[0], media_type=found[1], headers=headers)


# Icons drawn as inline SVG paths: no emoji font, no image request.
THUMB_UP = ('<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">'
            '<path d="M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3a1.5 1.5 0 0 0-.4-1'
            'L13.2 1 6.6 7.6A2 2 0 0 0 6 9v10a2 2 0 0 0 2 2h9a2 2 0 0 0 1.8-1.2l3-7.1c.1-.2'
            '.2-.5.2-.7v-2z"/></svg>')
THUMB_DOWN = ('<svg class="icon" viewBox="0 0 24 24" aria-hidden="true" focusable="false">'
              '<path d="M22 3h-4v12h4V3zM2 14a2 2 0 0 0 2 2h6.3l-1 4.6v.3c0 .4.2.8.4 1'
              'L10.8 23l6.6-6.6A2 2 0 0 0 18 15V5a2 2 0 0 0-2-2H7a2 2 0 0 0-1.8 1.2l-3 '
              '7.1c-.1.2-.2.5-.2.7v2z"/></svg>')


def page(title: str, body: str, *, key: Any = None, csrf: str | None = None,
         active: str = "", scripts: tuple[str, ...] = (), status: int = 200,
         headers: dict[str, str] | None = None) -> HTMLResponse:
    """A whole page: the bar (who is signed in, the pages, sign out) around `body`."""
    nav = ""
    if key is not None:
        links = "".join(
            f'<a href="{href}"{" aria-current=page" if name == active else ""}>{label}</a>'
            for name, href, label in (("review", "/review", "Review"),
                                      ("dashboard", "/dashboard", "Dashboard")))
        nav = (f'<nav class="pages" aria-label="pages">{links}</nav>'
               f'<span class="who">{e(key.name)} <small>({e(key.role)})</small></span>'
               '<button type="button" id="signout" class="ghost">Sign out</button>')
    meta = f'<meta name="csrf-token" content="{e(csrf)}">' if csrf else ""
    tags = "".join(f'<script src="/static/{e(s)}" defer></script>'
                   for s in ("common.js", *scripts))
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · llmops</title>{meta}
<link rel="stylesheet" href="/static/llmops.css">{tags}</head>
<body><a class="skip" href="#main">Skip to content</a>
<header class="top"><a class="brand" href="/review">llmops</a>{nav}</header>
<main id="main" tabindex="-1">{body}</main></body></html>"""
    return HTMLResponse(html, status_code=status, headers={**SECURITY_HEADERS,
                                                             **(headers or {})})
