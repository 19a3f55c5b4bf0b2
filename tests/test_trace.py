"""`llmops trace REQUEST_ID`: one answer's lineage, from the request log and the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import llmops.chains as chains
from llmops.cli import app
from llmops.registry import get_registry
from llmops.store import RequestRow, Store
from tests.conftest import make_kb_project

runner = CliRunner()


def test_trace_prints_the_lineage_of_a_logged_answer(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_kb_project(tmp_path / "project", monkeypatch)
    v = chains.log(root / "chains" / "rag_qa.py").version
    get_registry().move_alias("chain.rag_qa", "staging", v)
    result = chains.load(f"chain.rag_qa/{v}").invoke("When do owls hunt?")
    store = Store.open()
    try:
        store.log_request(RequestRow(
            "req-1", "rag-qa", 200, variant="staging", chain="chain.rag_qa", chain_version=v,
            user="u1", key_id="k1", messages=[{"role": "user", "content": "When do owls hunt?"}],
            answer=result.answer, sources=result.sources, lineage=result.lineage,
            latency_ms=12.0))
        store.add_feedback("req-1", reviewer="ann", rating="down", comment="too vague")
    finally:
        store.close()

    res = runner.invoke(app, ["trace", "req-1"])
    assert res.exit_code == 0, res.output
    chunk = result.sources[0]["id"]
    assert "endpoint rag-qa, variant staging, key k1, user u1" in res.output
    assert f"chain  chain.rag_qa/{v}, aliases staging" in res.output
    assert "prompt prompt.qa/1, aliases production" in res.output
    assert f"index  small-kb v1: {chunk}" in res.output
    assert "vote   down by ann" in res.output and "too vague" in res.output

    body = json.loads(runner.invoke(app, ["trace", "req-1", "--json"]).output)
    assert body["chain"]["ref"] == f"chain.rag_qa/{v}" and body["index"]["version"] == 1
    assert body["index"]["chunks"] == result.lineage["chunk_ids"]
    assert [f["rating"] for f in body["feedback"]] == ["down"]

    missing = runner.invoke(app, ["trace", "nope"])
    assert missing.exit_code == 1 and "no request 'nope' in the request log" in missing.output
