"""The reviewer pages over HTTP: sessions and CSRF, the queue's filters and cursor, and
the dashboard's numbers against an independent count of the rows written."""

from __future__ import annotations

import math
import re
import time
from html import unescape
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.serving.keys import hash_key
from llmops.stats import wilson_interval
from llmops.store import RequestRow, Store
from tests.serving.conftest import auth


def signed_in(client: TestClient, key: str) -> str:
    """Sign in with `key` on `client` (its cookie jar keeps the session); the CSRF token."""
    r = client.post("/signin", data={"key": key, "next": "/review"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review", r.text
    page = client.get("/review")
    assert page.status_code == 200
    return re.search(r'name="csrf-token" content="([0-9a-f]+)"', page.text).group(1)  # type: ignore[union-attr]


def rows(store: Store, n: int, **kw: Any) -> list[str]:
    now = time.time()
    ids = []
    for i in range(n):
        rid = f"chatcmpl-t{i:04d}"
        store.log_request(RequestRow(**{
            "id": rid, "endpoint": "chat", "variant": "production", "status": 200,
            "chain": "chain.chat", "chain_version": 1, "created_at": now - 1000 + i,
            "messages": [{"role": "user", "content": f"question {i}"}],
            "answer": f"answer {i}", **kw}))
        ids.append(rid)
    return ids


def test_sign_in_sets_a_strict_http_only_cookie_and_it_opens_review_routes_only(
        client: TestClient, keys: dict[str, str]) -> None:
    r = client.post("/signin", data={"key": keys["reviewer"], "next": "//evil.example/x"},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/review"  # never off-site
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; over TLS it is Secure (below)
    assert keys["reviewer"] not in cookie
    assert client.get("/review").status_code == 200
    assert client.get("/dashboard").status_code == 200
    # the cookie is no API key: chat and admin routes still want a Bearer key
    assert client.post("/v1/chat/completions", json={"model": "chat", "messages": [
        {"role": "user", "content": "hi"}]}).status_code == 401
    assert client.get("/admin/status").status_code == 401


def test_over_tls_the_cookie_is_secure(make_app: Any, keys: dict[str, str]) -> None:
    with TestClient(make_app(), base_url="https://testserver") as c:
        r = c.post("/signin", data={"key": keys["reviewer"]}, follow_redirects=False)
        assert r.status_code == 303 and "; Secure" in r.headers["set-cookie"]


def test_votes_by_cookie_need_the_csrf_token_any_replica_can_check(
        client: TestClient, make_app: Any, keys: dict[str, str]) -> None:
    rid = rows(Store.open(), 1)[0]
    csrf = signed_in(client, keys["reviewer"])
    body = {"request_id": rid, "rating": "down", "comment": "the right answer is 42"}
    r = client.post("/v1/feedback", json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    r = client.post("/v1/feedback", json=body, headers={"X-CSRF-Token": "0" * 40})
    assert r.status_code == 403
    r = client.post("/v1/feedback", json=body, headers={"X-CSRF-Token": csrf})
    assert r.status_code == 200 and r.json()["reviewer"] == "reviewer-1"
    # another gateway process on the same store takes the same cookie and token
    with TestClient(make_app()) as replica:
        replica.cookies.update(client.cookies)
        r = replica.post("/v1/feedback", json={**body, "rating": "up"},
                         headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200 and r.json()["votes"] == 2
    # signing out ends the browser's session (the cookie is cleared)
    out = client.post("/signout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204 and "Max-Age=0" in out.headers["set-cookie"]
    assert client.get("/review", follow_redirects=False).status_code == 401


def test_a_forged_or_expired_session_is_refused(client: TestClient,
                                                keys: dict[str, str]) -> None:
    from llmops.serving.session import COOKIE, make_session

    store = Store.open()
    record = store.find_key(hash_key(keys["reviewer"]))
    assert record is not None
    good = make_session(record, hash_key(keys["reviewer"]))
    forged = good[:-4] + ("0000" if not good.endswith("0000") else "1111")
    expired = make_session(record, hash_key(keys["reviewer"]), now=time.time() - 10**6)
    other = store.find_key(hash_key(keys["client"]))
    assert other is not None
    client_session = make_session(other, hash_key(keys["client"]))  # a client key's session
    for value, status in ((good, 200), (forged, 401), (expired, 401), ("junk", 401),
                          (client_session, 403)):
        client.cookies.set(COOKIE, value)
        assert client.get("/review", follow_redirects=False).status_code == status, value


def test_a_browser_without_a_session_is_sent_to_sign_in(client: TestClient) -> None:
    r = client.get("/review", headers={"Accept": "text/html"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/signin?next=/review"
    form = client.get("/signin?next=/dashboard")
    assert 'value="/dashboard"' in form.text
    assert form.headers["content-security-policy"].startswith("default-src 'self'")


def test_the_queue_pages_by_cursor_newest_first(client: TestClient,
                                                keys: dict[str, str]) -> None:
    ids = rows(Store.open(), 45)
    seen: list[str] = []
    url = "/review"
    while url:
        page = client.get(url, headers=auth(keys["reviewer"])).text
        seen += re.findall(r'<li class="item" id="item-([^"]+)"', page)
        nxt = re.search(r'<a href="(/review\?[^"]+)" rel="next">', page)
        url = unescape(nxt.group(1)) if nxt else ""
    assert seen == ids[::-1]
    bad = client.get("/review?cursor=bm90LWEtY3Vyc29y", headers=auth(keys["reviewer"]))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cursor"


def test_the_queue_filters(client: TestClient, keys: dict[str, str]) -> None:
    store = Store.open()
    ids = rows(store, 6)
    store.log_request(RequestRow(id="chatcmpl-err", endpoint="chat", variant="staging",
                                 status=500, chain="chain.chat", chain_version=2,
                                 messages=[{"role": "user", "content": "Zebra?"}],
                                 error="upstream failed"))
    store.add_feedback(ids[0], reviewer="reviewer-1", rating="down", comment="wrong")
    store.add_feedback(ids[1], reviewer="someone", rating="up")

    def shown(**params: Any) -> list[str]:
        page = client.get("/review", headers=auth(keys["reviewer"]), params=params)
        assert page.status_code == 200, page.text
        return sorted(re.findall(r'<li class="item" id="item-([^"]+)"', page.text))

    assert shown(rated="down") == [ids[0]]
    assert shown(rated="up") == [ids[1]]
    assert shown(rated="any") == sorted(ids[:2])
    assert shown(rated="none") == sorted([*ids[2:], "chatcmpl-err"])
    assert shown(comment="true") == [ids[0]]
    assert shown(mine="true") == sorted([*ids[1:], "chatcmpl-err"])
    assert shown(errors="true") == ["chatcmpl-err"]
    assert shown(variant="staging") == shown(chain_version=2) == ["chatcmpl-err"]
    assert shown(q="zebra") == ["chatcmpl-err"]  # in the question, any case
    assert shown(q="ANSWER 3") == [ids[3]]
    assert shown(q="100%") == []  # LIKE's wildcards are literal text
    assert shown(endpoint="chat", window="1h") == sorted([*ids, "chatcmpl-err"])
    assert shown(until=time.time() - 10**5) == []
    empty = client.get("/review", headers=auth(keys["reviewer"]), params={"q": "nothing-x"})
    assert "Nothing matches these filters." in empty.text


def test_an_empty_queue_says_so(client: TestClient, keys: dict[str, str]) -> None:
    page = client.get("/review", headers=auth(keys["reviewer"]))
    assert "The queue is empty" in page.text


def _nearest_rank(values: list[float], p: int) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p * len(ordered) / 100)) - 1]


def test_the_dashboard_numbers_match_the_rows_written(client: TestClient,
                                                      keys: dict[str, str]) -> None:
    store = Store.open()
    now = time.time()
    written: list[dict[str, Any]] = []
    for i in range(60):
        variant = "production" if i % 3 else "staging"
        row = {"id": f"chatcmpl-d{i:03d}", "endpoint": "dash", "variant": variant,
               "status": 500 if i % 11 == 0 else 200, "latency_ms": float((i * 37) % 101),
               "prompt_tokens": 10 + i, "completion_tokens": i % 7, "created_at": now - i * 60,
               "chain": "chain.chat", "chain_version": 1 if variant == "production" else 2}
        store.log_request(RequestRow(**row, messages=[{"role": "user", "content": "q"}],
                                     answer="a"))
        written.append(row)
    votes: dict[str, list[str]] = {}
    for i, row in enumerate(written[:40]):
        for who in ("ann", "bob")[: 1 + i % 2]:
            rating = "up" if (i * 7 + len(who)) % 4 else "down"
            store.add_feedback(row["id"], reviewer=who, rating=rating)
            votes.setdefault(row["id"], []).append(rating)
    store.log_request(RequestRow(id="chatcmpl-shadow", endpoint="dash", variant="staging",
                                 status=200, shadow_of=written[0]["id"], latency_ms=1e6))

    data = client.get("/v1/dashboard", headers=auth(keys["reviewer"])).json()
    dash = next(e for e in data["endpoints"] if e["endpoint"] == "dash")
    got = {v["variant"]: v for v in dash["variants"]}
    for variant in ("production", "staging"):
        mine = [r for r in written if r["variant"] == variant]
        served = [r for r in mine if r["status"] == 200]
        ratings = [x for r in served for x in votes.get(r["id"], [])]
        up = ratings.count("up")
        g = got[variant]
        assert g["requests"] == len(mine)
        assert g["errors"] == len(mine) - len(served)
        assert (g["up"], g["down"], g["votes"]) == (up, len(ratings) - up, len(ratings))
        assert g["rate"] == pytest.approx(up / len(ratings))
        assert 0 < up < len(ratings)
        assert (g["low"], g["high"]) == pytest.approx(wilson_interval(up, len(ratings)))
        assert g["latency_p50_ms"] == _nearest_rank([r["latency_ms"] for r in served], 50)
        assert g["latency_p95_ms"] == _nearest_rank([r["latency_ms"] for r in served], 95)
        assert g["prompt_tokens"] == sum(r["prompt_tokens"] for r in mine)
        assert g["completion_tokens"] == sum(r["completion_tokens"] for r in mine)
    (cmp,) = dash["comparisons"]
    assert (cmp["baseline"], cmp["candidate"]) == ("production", "staging")
    assert cmp["difference"] == pytest.approx(got["staging"]["rate"] - got["production"]["rate"])
    assert 0 < cmp["prob_better"] < 1

    page = client.get("/dashboard", headers=auth(keys["reviewer"])).text
    prod = got["production"]
    assert f">{prod['requests']:,}</a>" in page
    assert f">{prod['rate']:.1%}</a>" in page
    assert "P(staging better)" in page
    link = unescape(re.search(r'<a href="(/review\?[^"]*variant=staging[^"]*)">', page)
                    .group(1))  # type: ignore[union-attr]
    linked = client.get(link, headers=auth(keys["reviewer"])).text
    assert len(re.findall(r'<li class="item"', linked)) == min(20, got["staging"]["requests"])

    series = client.get("/v1/dashboard/series", headers=auth(keys["reviewer"])).json()
    points = [p for p in series["data"] if p["endpoint"] == "dash"]
    assert sum(p["requests"] for p in points) == len(written)
    assert sum(p["up"] + p["down"] for p in points) == sum(g["votes"] for g in got.values())
