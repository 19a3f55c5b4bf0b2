"""API keys: found by hash while live, revoked once."""

from __future__ import annotations

import pytest

from llmops.store import Store, StoreError


def test_keys_are_found_by_hash_and_revoked(store: Store) -> None:
    store.add_key("k1", name="alice", role="reviewer", key_hash="h" * 64)
    found = store.find_key("h" * 64)
    assert found is not None and (found.name, found.role) == ("alice", "reviewer")
    assert [k.id for k in store.list_keys()] == ["k1"]
    assert store.revoke_key("k1") and not store.revoke_key("k1")
    assert store.find_key("h" * 64) is None
    assert store.list_keys()[0].revoked_at is not None
    with pytest.raises(StoreError, match="role must be"):
        store.add_key("k2", name="x", role="root", key_hash="g" * 64)
