"""The review queue page: filters, one article per served answer, a vote box each."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from llmops.serving.pages import THUMB_DOWN, THUMB_UP, e
from llmops.store import QueueFilter, QueuePage

WINDOWS = {"1h": 3600, "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400}
RATED = (("", "any or none"), ("up", "rated up"), ("down", "rated down"),
         ("any", "has a vote"), ("none", "no vote yet"))


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def window_since(window: str | None, now: float | None = None) -> float | None:
    seconds = WINDOWS.get(window or "")
    return None if seconds is None else (time.time() if now is None else now) - seconds


def _option(value: str, label: str, current: Any) -> str:
    sel = " selected" if str(current or "") == value else ""
    return f'<option value="{e(value)}"{sel}>{e(label)}</option>'


def _check(name: str, label: str, on: bool) -> str:
    return (f'<label class="check"><input type="checkbox" name="{name}" value="true"'
            f'{" checked" if on else ""}> {e(label)}</label>')


def filters_form(params: dict[str, Any], endpoints: list[str]) -> str:
    ep = "".join(_option(v, label, params.get("endpoint"))
                 for v, label in [("", "all endpoints"), *((x, x) for x in endpoints)])
    rated = "".join(_option(v, label, params.get("rated")) for v, label in RATED)
    window = "".join(_option(v, label, params.get("window")) for v, label in (
        ("", "any time"), ("1h", "last hour"), ("24h", "last 24 hours"),
        ("7d", "last 7 days"), ("30d", "last 30 days")))
    hidden = "".join(f'<input type="hidden" name="{k}" value="{e(params[k])}">'
                     for k in ("since", "until") if params.get(k) is not None)
    return f"""<form class="filters" method="get" action="/review" role="search">
<label>Endpoint <select name="endpoint">{ep}</select></label>
<label>Variant <input name="variant" value="{e(params.get('variant'))}" size="10"></label>
<label>Chain version <input name="chain_version" type="number" min="1"
 value="{e(params.get('chain_version'))}" class="num"></label>
<label>Votes <select name="rated">{rated}</select></label>
<label>Time <select name="window">{window}</select></label>
<label class="grow">Search <input type="search" name="q" value="{e(params.get('q'))}"
 placeholder="words in the question or answer"></label>
{_check("mine", "unreviewed by me", bool(params.get("mine")))}
{_check("comment", "has a comment", bool(params.get("comment")))}
{_check("errors", "errors only", bool(params.get("errors")))}
{hidden}<button type="submit">Apply</button> <a href="/review" class="reset">Clear</a>
</form>"""


def _messages(messages: Any) -> str:
    out = []
    for m in messages or []:
        if not isinstance(m, dict):
            continue
        role = str(m.get("role") or "?")
        content = m.get("content")
        if isinstance(content, list):  # content parts: their text
            content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        text = f'<div class="msg role-{e(role)}"><span class="role">{e(role)}</span>' \
               f'<p class="text">{e(content)}</p></div>'
        if role == "system":
            text = f'<details class="system"><summary>system prompt</summary>{text}</details>'
        out.append(text)
    return "".join(out)


def _sources(sources: Any) -> str:
    items = []
    for s in sources or []:
        if not isinstance(s, dict):
            continue
        score = s.get("score")
        score_text = f"{score:.3f}" if isinstance(score, (int, float)) else e(score)
        items.append(
            f'<li><span class="title">{e(s.get("title") or s.get("source") or "untitled")}</span>'
            f' <span class="score" title="similarity score">{score_text}</span>'
            f' <code class="chunk">{e(s.get("id"))}</code>'
            f'<p class="text">{e(s.get("snippet"))}</p></li>')
    if not items:
        return ""
    return (f'<details class="sources"><summary>{len(items)} retrieved source'
            f'{"s" if len(items) != 1 else ""}</summary><ol>{"".join(items)}</ol></details>')


def _facts(r: dict[str, Any]) -> str:
    lin = r.get("lineage") or {}
    facts = [("endpoint", r.get("endpoint")), ("variant", r.get("variant")),
             ("chain", f"{r.get('chain') or '?'} v{r.get('chain_version') or '?'}")]
    if lin.get("prompt") or r.get("prompt_version"):
        facts.append(("prompt", f"{lin.get('prompt') or ''} v{r.get('prompt_version') or '?'}"))
    if r.get("index_version") is not None:
        facts.append(("index", f"v{r['index_version']}"))
    if lin.get("adapter"):
        facts.append(("adapter", f"{lin['adapter']} v{lin.get('adapter_version') or '?'}"))
    if r.get("latency_ms") is not None:
        facts.append(("latency", f"{r['latency_ms']:.0f} ms"))
    if r.get("prompt_tokens") is not None or r.get("completion_tokens") is not None:
        facts.append(("tokens", f"{r.get('prompt_tokens') or 0} + "
                                f"{r.get('completion_tokens') or 0}"))
    if r.get("status") != 200:
        facts.append(("status", r.get("status")))
    dl = "".join(f"<div><dt>{e(k)}</dt><dd>{e(v)}</dd></div>" for k, v in facts)
    return f'<dl class="facts">{dl}</dl>'


def article(r: dict[str, Any], vote: dict[str, Any] | None, n: int) -> str:
    rid = r["id"]
    rating = (vote or {}).get("rating") or ""
    comment = (vote or {}).get("comment") or ""
    answer = r.get("answer") if r.get("status") == 200 else (r.get("error") or r.get("answer"))
    label = ("Corrected answer (optional; fine-tuning learns from it)" if rating == "down"
             else "Comment (optional; on a thumbs-down, the corrected answer)")
    mine = (f"your vote: {rating}" + (" · with a comment" if comment else "")) if rating else \
        "not voted yet"
    return f"""<li class="item" id="item-{e(rid)}" data-id="{e(rid)}" data-rating="{e(rating)}"
 tabindex="-1" aria-label="answer {n}">
<header class="meta"><time>{e(when(r.get('created_at')))}</time>
<code class="rid">{e(rid)}</code></header>
{_facts(r)}
<div class="conversation">{_messages(r.get('messages'))}</div>
<div class="msg answer{' failed' if r.get('status') != 200 else ''}"><span class="role">answer</span>
<p class="text">{e(answer)}</p></div>
{_sources(r.get('sources'))}
<div class="vote">
<button type="button" class="up" data-rating="up" aria-pressed="{str(rating == 'up').lower()}"
 title="thumbs up (u)" aria-label="thumbs up">{THUMB_UP}<span>Good</span></button>
<button type="button" class="down" data-rating="down"
 aria-pressed="{str(rating == 'down').lower()}" title="thumbs down (d)"
 aria-label="thumbs down">{THUMB_DOWN}
<span>Bad</span></button>
<button type="button" class="ghost comment-toggle" title="comment (c)">Comment</button>
<span class="status" role="status">{e(mine)}</span>
</div>
<div class="comment-box"{'' if comment else ' hidden'}>
<label for="c-{e(rid)}">{e(label)}</label>
<textarea id="c-{e(rid)}" rows="3" maxlength="4000">{e(comment)}</textarea>
<p class="hint">Press <kbd>u</kbd> or <kbd>d</kbd> after <kbd>Esc</kbd>, or
<kbd>Ctrl</kbd>+<kbd>Enter</kbd>, to save the vote with this text.</p>
</div>
</li>"""


def queue_body(page: QueuePage, params: dict[str, Any], endpoints: list[str]) -> str:
    items = "".join(article(r, page.votes.get(r["id"]), i + 1) for i, r in enumerate(page.rows))
    if not items:
        filtered = any(v not in (None, "", False) for k, v in params.items() if k != "cursor")
        empty = ("Nothing matches these filters." if filtered else
                 "The queue is empty: no answers have been served yet.")
        listing = f'<p class="empty">{empty}</p>'
    else:
        listing = f'<ol class="queue">{items}</ol>'
    pager = []
    if params.get("cursor"):
        first = {k: v for k, v in params.items() if k != "cursor" and v not in (None, "", False)}
        pager.append(f'<a href="/review?{e(urlencode(first))}">Newest</a>')
    if page.next_cursor:
        nxt = {**{k: v for k, v in params.items() if v not in (None, "", False)},
               "cursor": page.next_cursor}
        pager.append(f'<a href="/review?{e(urlencode(nxt))}" rel="next">Older</a>')
    return f"""<h1>Review answers</h1>
{filters_form(params, endpoints)}
<p class="summary">{len(page.rows)} answer{'s' if len(page.rows) != 1 else ''} on this page ·
press <kbd>?</kbd> for the keys</p>
{listing}
<nav class="pager" aria-label="pages of the queue">{' '.join(pager)}</nav>
<dialog id="keys" aria-label="keyboard shortcuts"><h2>Keys</h2><dl class="keys">
<div><dt><kbd>j</kbd> / <kbd>k</kbd></dt><dd>next / previous answer</dd></div>
<div><dt><kbd>u</kbd> / <kbd>d</kbd></dt><dd>vote up / down (with the comment box's text)</dd></div>
<div><dt><kbd>c</kbd></dt><dd>write a comment (on a thumbs-down: the corrected answer)</dd></div>
<div><dt><kbd>Ctrl</kbd>+<kbd>Enter</kbd></dt><dd>in the comment: save it with the vote</dd></div>
<div><dt><kbd>Esc</kbd></dt><dd>leave the comment box, close this help</dd></div>
<div><dt><kbd>?</kbd></dt><dd>this help</dd></div></dl>
<form method="dialog"><button>Close</button></form></dialog>"""


def to_filter(params: dict[str, Any], reviewer: str) -> QueueFilter:
    since = params.get("since")
    if since is None:
        since = window_since(params.get("window"))
    return QueueFilter(
        endpoint=params.get("endpoint") or None, variant=params.get("variant") or None,
        chain_version=params.get("chain_version"),
        unreviewed_by=reviewer if params.get("mine") else None,
        rated=params.get("rated") or None, has_comment=bool(params.get("comment")),
        errors=bool(params.get("errors")), since=since, until=params.get("until"),
        text=(params.get("q") or "").strip() or None)
