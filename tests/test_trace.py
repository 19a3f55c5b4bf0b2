"""`llmops trace REQUEST_ID`: one answer's lineage, from the request log and the registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import llmops.chains as chains
from llmops.cli import app
from llmops.lineage import Lineage
from llmops.registry import get_registry
from llmops.store import RequestRow, Store
from llmops.trace import format_trace, trace
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
    lineage = result.lineage
    lineage = lineage if isinstance(lineage, Lineage) else Lineage.from_dict(lineage)
    assert body["index"]["chunks"] == list(lineage.chunk_ids)
    assert [f["rating"] for f in body["feedback"]] == ["down"]

    missing = runner.invoke(app, ["trace", "nope"])
    assert missing.exit_code == 1 and "no request 'nope' in the request log" in missing.output


def test_trace_of_versions_this_registry_does_not_hold(home: Path) -> None:
    store = Store.open()
    try:
        store.log_request(RequestRow(
            "req-2", "chat", 502, chain="chain.gone", chain_version=4, error="upstream failed",
            lineage=Lineage(chain="chain.gone", chain_version=4, prompt="prompt.gone",
                            prompt_version=2, backend="openai", base_model="gpt-x",
                            adapter="adapter.tone", adapter_version=3)))
    finally:
        store.close()

    out = trace("req-2")
    assert out["chain"] == {"ref": "chain.gone/4", "missing": "not in this registry"}
    assert out["prompt"] == {"ref": "prompt.gone/2", "missing": "not in this registry"}
    assert out["index"] == {"collection": None, "version": None, "chunks": []}
    assert out["model"] == {"backend": "openai", "base_model": "gpt-x", "adapter": "adapter.tone/3"}
    lines = format_trace(out)
    assert lines[0].startswith("request req-2 at ") and lines[0].endswith(
        ": status 502 (upstream failed)")
    assert "  chain  chain.gone/4" in lines
    assert "  index  None vNone: no chunks" in lines
    assert "  model  gpt-x (openai), adapter adapter.tone/3" in lines
