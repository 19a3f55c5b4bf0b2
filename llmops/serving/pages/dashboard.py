"""The dashboard: per endpoint and variant, what was served and how reviewers rated it.

`dashboard_data` computes it from the store (two grouped reads and a percentile
query, see `Store.serving_summary`), with the thumbs-up rate's Wilson interval and the
A/B comparison of `llmops ab report` (difference with its interval, P(better));
`dashboard_body` renders it, every number a link to the matching review queue.
The charts are drawn by `static/dashboard.js` from `/v1/dashboard/series`.
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import urlencode

from llmops.serving.pages import e
from llmops.serving.pages.review import WINDOWS
from llmops.stats import diff_interval, prob_better, two_proportion_test, wilson_interval
from llmops.store import Store

BASELINE = "production"


def bucket_for(seconds: float) -> int:
    """A chart bucket that gives 24 to 120 points over a window of `seconds`."""
    for b in (60, 300, 900, 3600, 3 * 3600, 6 * 3600, 86400):
        if seconds / b <= 120:
            return b
    return 7 * 86400


def _compare(base: dict[str, Any], cand: dict[str, Any]) -> dict[str, Any]:
    """Candidate minus baseline thumbs-up rate, as `llmops ab report` compares them."""
    s1, n1, s2, n2 = base["up"], base["votes"], cand["up"], cand["votes"]
    low, high = diff_interval(s1, n1, s2, n2, 0.95)
    _, p_value = two_proportion_test(s1, n1, s2, n2)
    diff = s2 / n2 - s1 / n1 if n1 and n2 else math.nan
    return {"baseline": base["variant"], "candidate": cand["variant"],
            **{k: None if math.isnan(v) else v for k, v in (
                ("difference", diff), ("low", low), ("high", high), ("p_value", p_value),
                ("prob_better", prob_better(s1, n1, s2, n2)))}}


def dashboard_data(store: Store, *, since: float | None, until: float | None) -> dict[str, Any]:
    rows = store.serving_summary(since=since, until=until)
    endpoints: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        votes = r["up"] + r["down"]
        low, high = wilson_interval(r["up"], votes) if votes else (None, None)
        r.update(votes=votes, rate=r["up"] / votes if votes else None, low=low, high=high)
        endpoints.setdefault(r["endpoint"], []).append(r)
    out = []
    for name, variants in endpoints.items():
        base = next((v for v in variants if v["variant"] == BASELINE), None)
        comparisons = [_compare(base, v) for v in variants
                       if base is not None and v is not base and v["variant"] is not None]
        out.append({"endpoint": name, "variants": variants, "comparisons": comparisons})
    return {"since": since, "until": until, "endpoints": out}


def _pct(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1%}"


def _link(text: str, **query: Any) -> str:
    q = {k: v for k, v in query.items() if v is not None}
    return f'<a href="/review?{e(urlencode(q))}">{e(text)}</a>'


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def dashboard_body(data: dict[str, Any], window: str, counts_when: float) -> str:
    since, until = data["since"], data["until"]
    span = {"since": f"{since:.3f}" if since is not None else None,
            "until": f"{until:.3f}" if until is not None else None}
    windows = "".join(
        f'<option value="{w}"{" selected" if w == window else ""}>{label}</option>'
        for w, label in (("1h", "last hour"), ("24h", "last 24 hours"), ("7d", "last 7 days"),
                         ("30d", "last 30 days"), ("all", "all time")))
    sections = []
    for ep in data["endpoints"]:
        name = ep["endpoint"]
        rows = []
        for v in ep["variants"]:
            where = {"endpoint": name, "variant": v["variant"], **span}
            rate = (f'{_link(_pct(v["rate"]), rated="up", **where)}'
                    f' <small>[{_pct(v["low"])}, {_pct(v["high"])}]</small>')
            n = {k: f"{v[k]:,}" for k in ("requests", "errors", "votes", "down",
                                          "prompt_tokens", "completion_tokens")}
            rows.append(
                f'<tr><th scope="row">{e(v["variant"] or "–")}</th>'
                f'<td class="n">{_link(n["requests"], **where)}</td>'
                f'<td class="n">{_link(n["errors"], errors="true", **where)}</td>'
                f'<td class="n">{rate}</td>'
                f'<td class="n">{_link(n["votes"], rated="any", **where)}'
                f' <small>({_link(n["down"] + " down", rated="down", **where)})</small></td>'
                f'<td class="n">{_link(_ms(v["latency_p50_ms"]), **where)}</td>'
                f'<td class="n">{_link(_ms(v["latency_p95_ms"]), **where)}</td>'
                f'<td class="n">{_link(n["prompt_tokens"] + " + " + n["completion_tokens"], **where)}'
                '</td></tr>')
        comps = []
        for c in ep["comparisons"]:
            if c["difference"] is None:
                text = "no difference yet: a side has no votes"
            else:
                text = (f'{c["difference"]:+.1%} [{c["low"]:+.1%}, {c["high"]:+.1%}] (95%), '
                        f'p={c["p_value"]:.3g}, P({e(c["candidate"])} better) = '
                        f'{_pct(c["prob_better"])}')
            comps.append(f'<li><b>{e(c["candidate"])}</b> − <b>{e(c["baseline"])}</b>, '
                         f'thumbs-up rate: <span class="ab">{text}</span></li>')
        ab = f'<ul class="ab-list">{"".join(comps)}</ul>' if comps else ""
        sections.append(f"""<section class="endpoint" aria-labelledby="ep-{e(name)}">
<h2 id="ep-{e(name)}">{e(name)}</h2>
<div class="table-wrap"><table class="stats"><thead><tr><th scope="col">variant</th>
<th scope="col">requests</th><th scope="col">errors</th><th scope="col">thumbs-up (95% CI)</th>
<th scope="col">votes</th><th scope="col">p50 ms</th><th scope="col">p95 ms</th>
<th scope="col">tokens (prompt + completion)</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table></div>{ab}
<div class="charts" data-endpoint="{e(name)}"><figure><figcaption>Requests per bucket
</figcaption><div class="chart" data-kind="requests"></div></figure><figure><figcaption>
Thumbs-up rate per bucket</figcaption><div class="chart" data-kind="rate"></div></figure></div>
</section>""")
    body = "".join(sections) or '<p class="empty">No requests in this window.</p>'
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(counts_when))
    return f"""<h1>Dashboard</h1>
<form class="filters" method="get" action="/dashboard"><label>Window
<select name="window">{windows}</select></label><button type="submit">Show</button>
<span class="summary">counted at {stamp}</span></form>
<div id="series" data-since="{e(span['since'] or '')}" data-until="{e(span['until'] or '')}"
 hidden></div>{body}"""


def window_bounds(window: str, now: float) -> tuple[float | None, float]:
    seconds = WINDOWS.get(window)
    return (None if seconds is None else now - seconds), now
