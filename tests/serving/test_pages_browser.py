"""The reviewer pages in a real browser: Debian's chromium, driven by Playwright.

A gateway under uvicorn on loopback; a reviewer signs in with a key, finds the
answer a client just got, votes it down with a comment by keyboard, and the vote is
in the store under the reviewer's name. Hostile answers stay text; the pages' headers
hold; screenshots of /review and /dashboard (laptop and phone) go to
`test-artifacts/` (or $LLMOPS_TEST_ARTIFACTS).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmops.store import RequestRow, Store
from tests.serving.conftest import REPO, Server, auth

CHROMIUM = os.environ.get("LLMOPS_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("LLMOPS_TEST_ARTIFACTS", REPO / "test-artifacts"))
SIZES = {"laptop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
HOSTILE = [
    "<script>alert('xss-script')</script>",
    "<img src=x onerror=\"alert('xss-img')\">",
    "<a href=\"javascript:alert('xss-link')\">click me</a>",
    "</textarea><script>alert('xss-textarea')</script>",
    "<svg onload=\"alert('xss-svg')\"></svg><iframe src=\"http://evil.example/\"></iframe>",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def server(make_app: Any, keys: dict[str, str]) -> Iterator[Server]:
    with Server(make_app()) as srv:
        yield srv


def ask(srv: Server, key: str, question: str) -> str:
    r = httpx.post(f"{srv.url}/v1/chat/completions", headers=auth(key), timeout=30,
                   json={"model": "chat", "messages": [{"role": "user", "content": question}]})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def sign_in(browser: Any, srv: Server, key: str, size: str = "laptop") -> Any:
    """A new browser context signed in with `key`; returns its page (on /review)."""
    context = browser.new_context(viewport=SIZES[size])
    page = context.new_page()
    page.goto(f"{srv.url}/review")
    assert page.url.startswith(f"{srv.url}/signin"), page.url  # no session: sign in first
    page.fill("#key", key)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def test_a_reviewer_signs_in_and_votes_down_with_a_comment_by_keyboard(
        browser: Any, server: Server, keys: dict[str, str]) -> None:
    older = ask(server, keys["client"], "What is a list comprehension?")
    rid = ask(server, keys["client"], "What does the with statement do?")
    page = sign_in(browser, server, keys["reviewer"])
    assert page.url == f"{server.url}/review"
    cookie = next(c for c in page.context.cookies() if c["name"] == "llmops_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert keys["reviewer"] not in cookie["value"]  # the session, never the key itself

    item = page.locator(f"#item-{rid}")
    assert "What does the with statement do?" in item.inner_text()
    page.keyboard.press("j")  # the newest answer: the one the client just got
    assert "current" in (item.get_attribute("class") or "")
    page.keyboard.press("c")
    page.keyboard.type("The with statement manages a context: enter, then exit.")
    page.keyboard.press("Escape")
    page.keyboard.press("d")
    status = item.locator(".status")
    status.filter(has_text="saved").wait_for(timeout=10_000)
    assert item.locator("button.down").get_attribute("aria-pressed") == "true"

    votes = Store.open().list_feedback(request_id=rid)
    assert [(v["reviewer"], v["rating"], v["comment"]) for v in votes] == [
        ("reviewer-1", "down", "The with statement manages a context: enter, then exit.")]
    assert Store.open().list_feedback(request_id=older) == []

    page.keyboard.press("j")  # the next one down is the older answer
    assert "current" in (page.locator(f"#item-{older}").get_attribute("class") or "")
    page.keyboard.press("u")
    page.locator(f"#item-{older} .status").filter(has_text="saved").wait_for(timeout=10_000)
    assert [v["rating"] for v in Store.open().list_feedback(request_id=older)] == ["up"]

    page.reload()  # the votes are there after a reload, without a page of their own
    again = page.locator(f"#item-{rid}")
    assert again.locator("button.down").get_attribute("aria-pressed") == "true"
    assert "with a comment" in again.locator(".status").inner_text()
    assert "Corrected answer" in again.locator(".comment-box label").inner_text()
    page.keyboard.press("?")
    assert page.locator("#keys").is_visible()
    page.keyboard.press("Escape")

    # the filters narrow the queue: unreviewed by me leaves neither
    page.goto(f"{server.url}/review?mine=true")
    assert page.locator(f"#item-{rid}").count() == 0
    assert page.locator(f"#item-{older}").count() == 0
    page.context.close()


def test_a_client_key_cannot_sign_in(browser: Any, server: Server,
                                     keys: dict[str, str]) -> None:
    page = sign_in(browser, server, keys["client"])
    assert page.url.startswith(f"{server.url}/signin")
    assert "cannot sign in" in page.locator(".error").inner_text()
    assert not [c for c in page.context.cookies() if c["name"] == "llmops_session"]
    page.goto(f"{server.url}/review")
    assert page.url.startswith(f"{server.url}/signin")  # still no session
    page.context.close()


def test_hostile_answers_do_nothing_when_shown(browser: Any, server: Server,
                                               keys: dict[str, str]) -> None:
    store = Store.open()
    now = time.time()
    for i, text in enumerate(HOSTILE):
        store.log_request(RequestRow(
            id=f"chatcmpl-hostile{i}", endpoint="chat", variant="production", status=200,
            chain="chain.chat", chain_version=1, created_at=now + i,
            messages=[{"role": "user", "content": text}], answer=text,
            sources=[{"id": f"doc{i}#0", "title": text, "score": 0.5, "snippet": text}]))
        store.add_feedback(f"chatcmpl-hostile{i}", reviewer="reviewer-1", rating="down",
                           comment=text)
    dialogs: list[str] = []
    requests: list[str] = []
    page = sign_in(browser, server, keys["reviewer"])
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("request", lambda r: requests.append(r.url))
    response = page.goto(f"{server.url}/review")
    page.wait_for_load_state("networkidle")
    for i, text in enumerate(HOSTILE):
        item = page.locator(f"#item-chatcmpl-hostile{i}")
        assert text in item.locator(".answer .text").inner_text()  # shown as text
        assert item.locator("textarea").input_value() == text  # the comment, as text
        item.locator(".sources summary").click()
    page.mouse.move(5, 5)
    page.wait_for_timeout(300)
    assert page.locator("script:not([src])").count() == 0  # no script but our files
    assert page.locator("main img, main iframe, main a[href^=javascript]").count() == 0
    assert dialogs == []
    assert not [u for u in requests if not u.startswith(server.url)], requests
    assert not [u for u in requests if u.endswith("/x")], requests
    headers = response.all_headers()
    csp = headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "same-origin"
    page.context.close()


def test_screenshots_of_review_and_dashboard(browser: Any, server: Server,
                                             keys: dict[str, str]) -> None:
    questions = ["What does the with statement do?", "How do I read a file line by line?",
                 "What is a generator?", "How do decorators work?"]
    ids = [ask(server, keys["client"], q) for q in questions * 3]
    store = Store.open()
    for i, rid in enumerate(ids[:9]):
        store.add_feedback(rid, reviewer=f"r{i % 3}", rating="up" if i % 4 else "down",
                           comment="Use `with open(path) as f:`" if i == 4 else None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for size in SIZES:
        page = sign_in(browser, server, keys["reviewer"], size)
        page.keyboard.press("j")
        page.screenshot(path=str(ARTIFACTS / f"review-{size}.png"), full_page=False)
        page.goto(f"{server.url}/dashboard")
        page.locator(".charts[data-drawn=true]").first.wait_for(timeout=10_000)
        chart = page.locator('.charts[data-endpoint="chat"] .chart[data-kind=requests] svg')
        assert chart.locator("circle").count() >= 1  # drawn from the served series
        page.screenshot(path=str(ARTIFACTS / f"dashboard-{size}.png"), full_page=True)
        page.context.close()
    for name in ("review", "dashboard"):
        for size in SIZES:
            shot = ARTIFACTS / f"{name}-{size}.png"
            assert shot.stat().st_size > 10_000, shot  # a page, not a blank
