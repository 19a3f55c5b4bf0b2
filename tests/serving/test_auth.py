"""Who may call what: the authorization matrix over every route, and keys kept secret."""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.serving.keys import hash_key
from llmops.store import Store
from tests.serving.conftest import auth

Q = [{"role": "user", "content": "hello"}]
ROLES = ("client", "reviewer", "admin", "metrics")
OPEN = None  # no key needed
RID = "{rid}"  # in a path or body: the id of a request answered before the call
Check = Callable[[Any, str, str], bool]  # (response, caller's key name or "", rid) -> ok


def _chat_answer(r: Any, who: str, rid: str) -> bool:
    choice = r.json()["choices"][0]
    return r.json()["object"] == "chat.completion" and bool(choice["message"]["content"])


def _models(r: Any, who: str, rid: str) -> bool:
    body = r.json()
    return body["object"] == "list" and [m["id"] for m in body["data"]] == [
        "chat", "flaky", "mock", "shadowed", "embeddings"]


def _embedded(r: Any, who: str, rid: str) -> bool:
    body = r.json()
    return body["model"] == "embeddings" and len(body["data"][0]["embedding"]) == 384


def _model(r: Any, who: str, rid: str) -> bool:
    return r.json()["id"] == "chat" and r.json()["variants"] == ["production", "staging"]


def _vote(r: Any, who: str, rid: str) -> bool:
    body = r.json()
    return (body["object"], body["request_id"], body["reviewer"], body["rating"],
            body["votes"]) == ("feedback", rid, who, "up", 1)


def _no_votes(r: Any, who: str, rid: str) -> bool:
    return r.json() == {"object": "list", "data": [], "has_more": False}


def _review_page(r: Any, who: str, rid: str) -> bool:
    return (r.headers["content-type"].startswith("text/html") and "Review answers" in r.text
            and rid in r.text and f'<span class="who">{who} ' in r.text)


def _dashboard_page(r: Any, who: str, rid: str) -> bool:
    return (r.headers["content-type"].startswith("text/html") and "<h2 id=\"ep-chat\">chat"
            in r.text and f'<span class="who">{who} ' in r.text)


def _dashboard_json(r: Any, who: str, rid: str) -> bool:
    chat = next(e for e in r.json()["endpoints"] if e["endpoint"] == "chat")
    return sum(v["requests"] for v in chat["variants"]) >= 1


def _series(r: Any, who: str, rid: str) -> bool:
    return sum(p["requests"] for p in r.json()["data"] if p["endpoint"] == "chat") >= 1


def _signin_form(r: Any, who: str, rid: str) -> bool:
    return 'name="key" type="password"' in r.text


def _signin_refused(r: Any, who: str, rid: str) -> bool:
    return "That key is not valid." in r.text and "set-cookie" not in r.headers


def _signed_out(r: Any, who: str, rid: str) -> bool:
    return r.headers["set-cookie"].startswith("llmops_session=; Max-Age=0;")


def _served(r: Any, who: str, rid: str) -> bool:
    chat = r.json()["endpoints"]["chat"]
    return (chat["production"]["version"], chat["staging"]["version"]) == (1, 2)


def _metrics(r: Any, who: str, rid: str) -> bool:
    return (r.headers["content-type"].startswith("text/plain")
            and 'llmops_requests_total{endpoint="chat"' in r.text)


def _health(r: Any, who: str, rid: str) -> bool:
    return r.json() == {"status": "ok"}


def _ready(r: Any, who: str, rid: str) -> bool:
    return r.json()["status"] == "ready"


# (method, path template, path to call, json body or None, roles allowed,
#  status and check of an allowed call)
MATRIX: list[tuple[str, str, str, Any, set[str] | None, int, Check]] = [
    ("POST", "/v1/chat/completions", "/v1/chat/completions", {"model": "chat", "messages": Q},
     {"client", "admin"}, 200, _chat_answer),
    ("POST", "/v1/embeddings", "/v1/embeddings", {"model": "embeddings", "input": "hi",
     "encoding_format": "float"}, {"client", "admin"}, 200, _embedded),
    ("GET", "/v1/models", "/v1/models", None, {"client", "reviewer", "admin"}, 200, _models),
    ("GET", "/v1/models/{model}", "/v1/models/chat", None, {"client", "reviewer", "admin"},
     200, _model),
    ("POST", "/v1/feedback", "/v1/feedback", {"request_id": RID, "rating": "up"},
     {"reviewer", "admin"}, 200, _vote),
    ("GET", "/v1/feedback", "/v1/feedback", None, {"reviewer", "admin"}, 200, _no_votes),
    ("GET", "/review", "/review", None, {"reviewer", "admin"}, 200, _review_page),
    ("GET", "/dashboard", "/dashboard", None, {"reviewer", "admin"}, 200, _dashboard_page),
    ("GET", "/v1/dashboard", "/v1/dashboard", None, {"reviewer", "admin"}, 200, _dashboard_json),
    ("GET", "/v1/dashboard/series", "/v1/dashboard/series", None, {"reviewer", "admin"}, 200,
     _series),
    ("GET", "/signin", "/signin", None, OPEN, 200, _signin_form),
    ("POST", "/signin", "/signin", "form", OPEN, 401, _signin_refused),
    ("POST", "/signout", "/signout", None, {"reviewer", "admin"}, 204, _signed_out),
    ("POST", "/admin/reload", "/admin/reload", None, {"admin"}, 200, _served),
    ("GET", "/admin/status", "/admin/status", None, {"admin"}, 200, _served),
    ("GET", "/metrics", "/metrics", None, {"metrics", "admin"}, 200, _metrics),
    ("GET", "/healthz", "/healthz", None, OPEN, 200, _health),
    ("GET", "/readyz", "/readyz", None, OPEN, 200, _ready),
]


def _call(client: TestClient, method: str, path: str, body: Any,
          headers: dict[str, str]) -> Any:
    if body == "form":  # a sign-in form without a key
        return client.request(method, path, headers={
            **headers, "content-type": "application/x-www-form-urlencoded"},
            content="key=&next=/review", follow_redirects=False)
    return client.request(method, path, headers=headers, json=body)


def _openai_error(r: Any, status: int, type_: str, code: str) -> None:
    """`r` is an OpenAI error: the status, and exactly the four fields of the body."""
    assert r.status_code == status, (r.status_code, r.text)
    err = r.json()["error"]
    assert set(r.json()) == {"error"} and set(err) == {"message", "type", "param", "code"}
    assert (err["type"], err["code"], err["param"]) == (type_, code, None), err
    assert isinstance(err["message"], str) and err["message"]


def test_the_matrix_covers_every_route(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    routes = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert routes == {(m, p) for m, p, *_ in MATRIX}


@pytest.mark.parametrize(("method", "route", "path", "body", "allowed", "ok", "check"), MATRIX,
                         ids=[f"{m} {t}" for m, t, *_ in MATRIX])
def test_authorization_matrix(
    client: TestClient, keys: dict[str, str], method: str, route: str, path: str,
    body: Any, allowed: set[str] | None, ok: int, check: Check,
) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    store = gw.store
    answered = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                           json={"model": "chat", "messages": Q})
    assert answered.status_code == 200, answered.text
    rid = answered.json()["id"]
    path = path.replace(RID, rid)
    if isinstance(body, dict):
        body = {k: rid if v == RID else v for k, v in body.items()}
    for who, headers in [("none", {}), ("bad", auth("llmops-kbad-not-a-key")),
                         ("basic-bad", {"Authorization": "Basic " + base64.b64encode(
                             b"x:wrong").decode()})]:
        r = _call(client, method, path, body, headers)
        if allowed is OPEN:
            assert r.status_code == ok and check(r, "", rid), (who, r.status_code, r.text)
        else:
            _openai_error(r, 401, "authentication_error", "invalid_api_key")
            assert r.headers["www-authenticate"].startswith(
                "Basic" if route.startswith("/review") else "Bearer"), who
    for role in ROLES:
        record = store.find_key(hash_key(keys[role]))
        r = _call(client, method, path, body, auth(keys[role]))
        if allowed is OPEN or role in allowed:
            assert r.status_code == ok, (role, r.status_code, r.text)
            assert check(r, record.name, rid), (role, r.text[:2000])
        else:
            _openai_error(r, 403, "permission_error", "insufficient_role")
            assert f"role {role}" in r.json()["error"]["message"], (role, r.text)


def test_401_bodies_are_openai_errors_with_a_challenge(client: TestClient) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"]["type"] == "authentication_error"
    assert r.json()["error"]["code"] == "invalid_api_key"
    page = client.get("/review")
    assert page.headers["www-authenticate"].startswith("Basic")


def test_basic_auth_works_for_browsers(client: TestClient, keys: dict[str, str]) -> None:
    token = base64.b64encode(f"alice:{keys['reviewer']}".encode()).decode()
    r = client.get("/review", headers={"Authorization": f"Basic {token}"})
    assert r.status_code == 200 and "Review answers" in r.text


def test_basic_credentials_need_the_csrf_token_to_change_anything(
        client: TestClient, keys: dict[str, str]) -> None:
    """A browser resends Basic credentials on its own: a vote needs the page's token."""
    token = base64.b64encode(f"alice:{keys['reviewer']}".encode()).decode()
    basic = {"Authorization": f"Basic {token}"}
    body = {"request_id": "x", "rating": "up"}
    r = client.post("/v1/feedback", headers=basic, json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "csrf_failed"
    page = client.get("/review", headers=basic).text
    csrf = page.split('name="csrf-token" content="')[1].split('"')[0]
    r = client.post("/v1/feedback", headers={**basic, "X-CSRF-Token": csrf}, json=body)
    assert r.status_code == 404  # past the gate: the request id is unknown
    # a Bearer key is not sent by a browser on its own: no token needed
    assert client.post("/v1/feedback", headers=auth(keys["reviewer"]),
                       json=body).status_code == 404


def test_a_revoked_key_stops_working(make_app: Any, keys: dict[str, str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_GATEWAY__REFRESH_INTERVAL_S", "0.05")
    from llmops.config import reset_settings

    reset_settings()
    with TestClient(make_app()) as c:
        assert c.get("/v1/models", headers=auth(keys["client"])).status_code == 200
        store = Store.open()
        kid = store.find_key(hash_key(keys["client"])).id  # type: ignore[union-attr]
        assert store.revoke_key(kid)
        import time

        time.sleep(0.1)  # past the key cache's lifetime (the refresh interval)
        assert c.get("/v1/models", headers=auth(keys["client"])).status_code == 401


def test_keys_never_appear_in_rows_logs_or_error_bodies(
    client: TestClient, keys: dict[str, str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    bodies = []
    r = client.post("/v1/chat/completions", headers=auth(keys["client"]),
                    json={"model": "chat", "messages": Q})
    bodies.append(r.text)
    for key in keys.values():
        for path in ("/v1/chat/completions", "/v1/feedback", "/admin/reload"):
            bodies.append(client.post(path, headers=auth(key), json={"model": "x"}).text)
    bodies.append(client.get("/v1/models", headers=auth(keys["client"] + "x")).text)
    store = client.app.state.gateway.store  # type: ignore[attr-defined]
    dump = repr(store.list_requests(limit=1000)) + repr(store.list_keys())
    everything = "\n".join(bodies) + caplog.text + dump
    for key in keys.values():
        secret = key.split("-", 2)[2]  # llmops-<id>-<secret>; the secret may hold '-' too
        assert secret not in everything
