"""The same gateway code on SQLite and on PostgreSQL: a logged answer, a vote on it."""

from __future__ import annotations

from typing import Any

from llmops.store import Store


def test_the_gateway_logs_and_takes_votes_on_either_database(
    store_url: str, make_app: Any, keys: dict[str, str],
) -> None:
    """Keys made in the store under test (the `keys` fixture's live in the default store)."""
    from fastapi.testclient import TestClient

    from llmops.serving.keys import create_key

    store = Store(store_url)
    client_key = create_key(store, name="c", role="client")[1]
    reviewer_key = create_key(store, name="r", role="reviewer")[1]
    with TestClient(make_app(store=store)) as c:
        r = c.post("/v1/chat/completions", headers={"Authorization": f"Bearer {client_key}"},
                   json={"model": "chat", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200
        rid = r.json()["id"]
        v = c.post("/v1/feedback", headers={"Authorization": f"Bearer {reviewer_key}"},
                   json={"request_id": rid, "rating": "up"})
        assert v.status_code == 200
    check = Store(store_url)
    logged = check.get_request(rid)
    assert logged is not None and logged["status"] == 200
    assert [f["reviewer"] for f in check.list_feedback(request_id=rid)] == ["r"]
    check.close()
