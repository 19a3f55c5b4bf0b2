"""The counts online evaluation reads: per variant or chain version, in a time window."""

from __future__ import annotations

import pytest

from llmops.errors import VoteRefusedError
from llmops.store import Store, VoteCounts
from tests.store.conftest import row


def test_vote_counts_group_answered_requests_and_current_votes(store: Store) -> None:
    store.log_request(row("p1", created_at=10.0))
    store.log_request(row("p2", created_at=11.0))
    store.log_request(row("p3", created_at=12.0, status=502))
    store.log_request(row("s1", created_at=10.0, variant="staging", chain_version=4))
    store.log_request(row("sh", created_at=10.0, variant="staging", chain_version=4,
                          shadow_of="p1"))
    store.log_request(row("c1", created_at=10.0, endpoint="chat", chain="chain.chat",
                          chain_version=1))
    store.add_feedback("p1", reviewer="alice", rating="up")
    store.add_feedback("p1", reviewer="alice", rating="down")  # the last vote counts
    store.add_feedback("p1", reviewer="bob", rating="up")
    store.add_feedback("p3", reviewer="bob", rating="up")  # on a failed request: nowhere
    with pytest.raises(VoteRefusedError, match="shadow"):  # a shadow takes no vote
        store.add_feedback("sh", reviewer="bob", rating="up")
    store.add_feedback("s1", reviewer="bob", rating="up")

    by_variant = sorted(store.vote_counts(by="variant", endpoint="rag-qa"), key=lambda c: c.key)
    assert by_variant == [
        VoteCounts("production", "chain.rag_qa", 3, requests=2, failed=1, votes=2, up=1),
        VoteCounts("staging", "chain.rag_qa", 4, requests=1, failed=0, votes=1, up=1),
    ]
    window = store.vote_counts(by="variant", endpoint="rag-qa", since=11.0, until=12.0)
    assert window == [VoteCounts("production", "chain.rag_qa", 3, 1, 0, 0, 0)]
    versions = sorted(store.vote_counts(by="chain_version", chain="chain.rag_qa"),
                      key=lambda c: int(c.key))
    assert [(c.key, c.requests, c.votes, c.up) for c in versions] == [(3, 2, 2, 1), (4, 1, 1, 1)]
    assert store.vote_counts(by="variant", endpoint="nope") == []
