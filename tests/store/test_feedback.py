"""Votes: the last one per reviewer counts, every one stays in the history."""

from __future__ import annotations

import pytest

from llmops.store import Store, StoreError, UnknownRequestError, to_jsonl
from tests.store.conftest import row


def test_last_vote_wins_per_reviewer_and_history_is_kept(store: Store) -> None:
    store.log_request(row("r1"))
    first = store.add_feedback("r1", reviewer="alice", rating="up")
    second = store.add_feedback("r1", reviewer="alice", rating="down", comment="wrong")
    store.add_feedback("r1", reviewer="bob", rating="up")
    assert (first.votes, second.votes, second.replaced) == (1, 2, True)
    assert second.created_at == first.created_at
    assert (second.endpoint, second.variant, second.chain, second.chain_version) == (
        "rag-qa", "production", "chain.rag_qa", 3)
    current = {(f["reviewer"], f["rating"]) for f in store.list_feedback(request_id="r1")}
    assert current == {("alice", "down"), ("bob", "up")}
    assert [h["rating"] for h in store.feedback_history("r1")] == ["up", "down", "up"]
    with pytest.raises(UnknownRequestError):
        store.add_feedback("missing", reviewer="alice", rating="up")
    with pytest.raises(StoreError, match="rating must be"):
        store.add_feedback("r1", reviewer="alice", rating="meh")
    assert UnknownRequestError.http_status == 404


@pytest.mark.parametrize(("filters", "expected"), [
    ({}, {"a", "b", "c"}),
    ({"rating": "down"}, {"b"}),
    ({"reviewer": "bob"}, {"c"}),
    ({"endpoint": "chat"}, {"c"}),
    ({"variant": "staging"}, {"b"}),
    ({"request_id": "a"}, {"a"}),
])
def test_feedback_filters(store: Store, filters: dict[str, str], expected: set[str]) -> None:
    store.log_request(row("a"))
    store.log_request(row("b", variant="staging"))
    store.log_request(row("c", endpoint="chat"))
    store.add_feedback("a", reviewer="alice", rating="up")
    store.add_feedback("b", reviewer="alice", rating="down")
    store.add_feedback("c", reviewer="bob", rating="up")
    assert {f["request_id"] for f in store.list_feedback(**filters)} == expected  # type: ignore[arg-type]


def test_export_joins_votes_with_their_requests(store: Store) -> None:
    for i in range(5):
        store.log_request(row(f"r{i}"))
        store.add_feedback(f"r{i}", reviewer="alice", rating="up" if i % 2 else "down")
    out = list(store.export_feedback(batch=2))
    assert [o["request_id"] for o in out] == [f"r{i}" for i in range(5)]
    assert out[0]["answer"] == "It manages." and out[0]["lineage"]["index_version"] == 7
    assert out[0]["index_version"] == 7
    assert len(list(store.export_feedback(rating="up"))) == 2
    lines = list(to_jsonl(out))
    assert len(lines) == 5 and '"request_id": "r0"' in lines[0]
