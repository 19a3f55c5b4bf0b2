"""Who may call what: the authorization matrix over every route, and keys kept secret."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from llmops.serving.keys import hash_key
from llmops.serving.routes.review import _token
from llmops.store import Store
from tests.serving.conftest import auth

Q = [{"role": "user", "content": "hello"}]
ROLES = ("client", "reviewer", "admin")
OPEN = None  # no key needed

# (method, path template, path to call, json body or None, roles allowed)
MATRIX: list[tuple[str, str, str, Any, set[str] | None]] = [
    ("POST", "/v1/chat/completions", "/v1/chat/completions", {"model": "chat", "messages": Q},
     {"client", "admin"}),
    ("GET", "/v1/models", "/v1/models", None, {"client", "reviewer", "admin"}),
    ("GET", "/v1/models/{model}", "/v1/models/chat", None, {"client", "reviewer", "admin"}),
    ("POST", "/v1/feedback", "/v1/feedback", {"request_id": "x", "rating": "up"},
     {"reviewer", "admin"}),
    ("GET", "/v1/feedback", "/v1/feedback", None, {"reviewer", "admin"}),
    ("GET", "/review", "/review", None, {"reviewer", "admin"}),
    ("POST", "/review/{request_id}", "/review/x", "form", {"reviewer", "admin"}),
    ("POST", "/admin/reload", "/admin/reload", None, {"admin"}),
    ("GET", "/admin/status", "/admin/status", None, {"admin"}),
    ("GET", "/metrics", "/metrics", None, {"admin"}),
    ("GET", "/healthz", "/healthz", None, OPEN),
    ("GET", "/readyz", "/readyz", None, OPEN),
]


def _call(client: TestClient, method: str, path: str, body: Any,
          headers: dict[str, str], csrf: str = "") -> Any:
    if body == "form":
        return client.request(method, path, headers={
            **headers, "content-type": "application/x-www-form-urlencoded"},
            content=f"rating=up&csrf={csrf}", follow_redirects=False)
    return client.request(method, path, headers=headers, json=body)


def test_the_matrix_covers_every_route(client: TestClient) -> None:
    paths = client.app.openapi()["paths"]  # type: ignore[attr-defined]
    routes = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert routes == {(m, p) for m, p, *_ in MATRIX}


@pytest.mark.parametrize(("method", "route", "path", "body", "allowed"), MATRIX,
                         ids=[f"{m} {t}" for m, t, *_ in MATRIX])
def test_authorization_matrix(
    client: TestClient, keys: dict[str, str], method: str, route: str, path: str,
    body: Any, allowed: set[str] | None,
) -> None:
    gw = client.app.state.gateway  # type: ignore[attr-defined]
    store = gw.store
    for who, headers in [("none", {}), ("bad", auth("llmops-kbad-not-a-key")),
                         ("basic-bad", {"Authorization": "Basic " + base64.b64encode(
                             b"x:wrong").decode()})]:
        status = _call(client, method, path, body, headers).status_code
        if allowed is OPEN:
            assert status == 200, (who, status)
        else:
            assert status == 401, (who, status)
    for role in ROLES:
        record = store.find_key(hash_key(keys[role]))
        r = _call(client, method, path, body, auth(keys[role]), _token(gw, record))
        if allowed is OPEN or role in allowed:
            assert r.status_code not in (401, 403), (role, r.status_code, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code)
            assert r.json()["error"]["type"] == "permission_error"


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


def test_review_form_needs_the_token_of_the_key(client: TestClient, keys: dict[str, str]) -> None:
    r = client.post("/review/x", headers={**auth(keys["reviewer"]),
                    "content-type": "application/x-www-form-urlencoded"},
                    content="rating=up&csrf=forged")
    assert r.status_code == 403 and "form token" in r.json()["error"]["message"]


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
