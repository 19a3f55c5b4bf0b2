"""Request rows: written through the writer, read back as dicts, lineage typed on the way in."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path

from llmops.lineage import Lineage
from llmops.store import REQUESTS, RequestRow, Store
from tests.store.conftest import row


def test_request_rows_round_trip_with_lineage(store: Store) -> None:
    store.log_request(row("r1"))
    got = store.get_request("r1")
    assert got is not None
    assert got["messages"][0]["content"] == "What does with do?"
    assert got["chain_version"] == 3 and got["index_version"] == 7
    assert got["lineage"] == row("r1").lineage.to_dict()  # type: ignore[union-attr]
    assert Lineage.from_dict(got["lineage"]) == row("r1").lineage
    assert store.get_request("nope") is None
    store.submit(store.update_request_op("r1", status=504, error="slow")).result()
    assert store.get_request("r1")["status"] == 504  # type: ignore[index]


def test_a_lineage_dict_is_stored_as_the_typed_record(store: Store) -> None:
    """Rows built from a chain's dict lineage store what Lineage.to_dict() gives."""
    legacy = {"index_version": "7", "llm_backend": "local", "chunk_ids": ["c1"], "n": 1}
    store.log_request(row("d1", lineage=legacy, index_version=None))
    got = store.get_request("d1")
    assert got is not None and got["lineage"] == Lineage.from_dict(legacy).to_dict()
    assert got["lineage"]["index_version"] == 7 and got["lineage"]["backend"] == "local"
    assert got["lineage"]["extra"] == {"n": 1}
    store.log_request(row("d2", lineage=None))
    assert store.get_request("d2")["lineage"] is None  # type: ignore[index]


def test_list_requests_newest_first_without_shadows_or_rated(store: Store) -> None:
    for i in range(4):
        store.log_request(row(f"r{i}", created_at=100.0 + i))
    store.log_request(row("sh", created_at=200.0, shadow_of="r0"))
    store.log_request(row("other", created_at=50.0, endpoint="chat"))
    store.add_feedback("r2", reviewer="alice", rating="up")
    assert [r["id"] for r in store.list_requests()] == ["r3", "r2", "r1", "r0", "other"]
    assert [r["id"] for r in store.list_requests(include_shadow=True, limit=2)] == ["sh", "r3"]
    assert [r["id"] for r in store.list_requests(endpoint="chat")] == ["other"]
    assert [r["id"] for r in store.list_requests(unrated_by="alice", endpoint="rag-qa")] == [
        "r3", "r1", "r0"]
    assert [r["id"] for r in store.list_requests(limit=2, offset=1)] == ["r2", "r1"]
    assert store.count_requests() == 6
    assert store.endpoints() == ["chat", "rag-qa"]


def test_multirow_inserts_store_what_sqlalchemy_would(tmp_path: Path) -> None:
    path = tmp_path / "requests.db"
    store = Store(f"sqlite:///{path}")
    one = RequestRow(id="x", endpoint="rag-qa", status=200, created_at=1.5, stream=True,
                     messages=[{"role": "user", "content": "café?"}], answer="oui",
                     sources=[], lineage=Lineage(chunk_ids=("kb:tea#0",), extra={"n": 1}),
                     index_version=4, latency_ms=2.5)

    async def grouped() -> None:  # one group: one multi-row INSERT by the driver directly
        await asyncio.gather(*(store.submit_async(store.insert_request_op(
            dataclasses.replace(one, id=f"a{i}"))) for i in range(3)))

    asyncio.run(grouped())
    with store.engine.begin() as conn:  # SQLAlchemy Core's own insert, for comparison
        conn.execute(REQUESTS.insert(), [store.insert_request_op(
            dataclasses.replace(one, id="b")).values])
    store.close()
    raw = {r[0]: r[1:] for r in sqlite3.connect(path).execute("SELECT * FROM request_log")}
    assert raw["a0"] == raw["a1"] == raw["a2"] == raw["b"]  # JSON, booleans and NULLs alike
    back = Store(f"sqlite:///{path}")
    got = back.get_request("a2")
    back.close()
    assert got is not None and got["messages"] == one.messages
    assert Lineage.from_dict(got["lineage"]) == one.lineage and got["index_version"] == 4
    assert got["stream"] is True and got["error"] is None and got["sources"] == []


def test_the_stored_lineage_is_exactly_to_dict() -> None:
    """The store builds Lineage.to_dict() field by field (no deep copy): the two stay equal."""
    from llmops.store.requests import _lineage_json

    full = Lineage(chain="chain.rag_qa", chain_version=3, chain_hash="h", prompt="prompt.qa",
                   prompt_version=2, index_collection="docs", index_version=7,
                   chunk_ids=("a", "b"), backend="local", base_model="m", adapter="adapter.qa",
                   adapter_version=2, prompt_tokens=4, completion_tokens=5, latency_ms=1.5,
                   finish_reason="stop", fallback_from="staging", extra={"k": {"n": [1]}})
    for lin in (full, Lineage(), full.with_(extra={})):
        assert _lineage_json(lin) == lin.to_dict()
    assert _lineage_json(full.to_dict()) == full.to_dict()
    assert _lineage_json(None) is None
