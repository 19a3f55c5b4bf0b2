"""The store's tests run on SQLite and on PostgreSQL (`store_url`, from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llmops.lineage import Lineage
from llmops.store import RequestRow, Store


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def row(rid: str, **kw: object) -> RequestRow:
    """A served request with every column filled."""
    base: dict[str, object] = dict(
        id=rid, endpoint="rag-qa", status=200, variant="production", chain="chain.rag_qa",
        chain_version=3, key_id="kabc", user="u1",
        messages=[{"role": "user", "content": "What does with do?"}], answer="It manages.",
        sources=[{"id": "c1", "score": 0.9}],
        lineage=Lineage(chain="chain.rag_qa", chain_version=3, prompt_version=2, index_version=7,
                        chunk_ids=("c1",)),
        prompt_version=2, index_version=7, latency_ms=12.5, prompt_tokens=10,
        completion_tokens=3)
    base.update(kw)
    return RequestRow(**base)  # type: ignore[arg-type]
