"""End to end: the `rag-qa` endpoint through the running gateway, on a real index.

The RAG chain retrieves from a Chroma index of three documents (real embedding
model) and asks the `openai` backend pointed at the mock upstream. The answer's
sources and lineage come back to the client and land in the request log row.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from llmops.config import reset_settings
from tests.conftest import make_kb_project
from tests.mock_openai import MockOpenAI
from tests.serving.conftest import Server

QUESTION = "At what temperature should I brew green tea?"


@pytest.fixture
def rag_gateway(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                mock_upstream: MockOpenAI) -> Iterator[tuple[Server, str, int, MockOpenAI]]:
    import llmops.chains as chains
    from llmops.serving.app import create_app
    from llmops.serving.keys import create_key
    from llmops.serving.spec import RoutesSpec
    from llmops.store import Store

    llm = (f"backend: openai\n  base_url: {mock_upstream.base_url}\n  model: mock\n"
           "  max_retries: 0")
    root = make_kb_project(tmp_path / "project", monkeypatch, llm=llm, k=2)
    version = chains.log(root / "chains" / "rag_qa.py").version
    chains.promote("rag_qa", version, "production")
    store = Store.open()
    key = create_key(store, name="client-1", role="client")[1]
    routes = RoutesSpec.model_validate({"endpoints": {"rag-qa": {
        "variants": [{"ref": "chain.rag_qa@production", "weight": 100}],
        "limits": {"max_tokens": 128, "timeout_s": 30}}}})
    mock_upstream.state.bodies.clear()
    with Server(create_app(routes=routes, store=store)) as server:
        yield server, key, version, mock_upstream
    reset_settings()


def test_rag_answer_brings_its_sources_and_lineage_into_the_log(
    rag_gateway: tuple[Server, str, int, MockOpenAI],
) -> None:
    import llmops.index as index
    from llmops.store import Store

    server, key, version, mock = rag_gateway
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="rag-qa", messages=[{"role": "user", "content": QUESTION}], user="alice")
    resp = raw.parse()
    sent = mock.state.bodies[-1]["messages"][-1]["content"]  # the context reached the LLM
    assert "80 degrees" in sent and QUESTION in sent
    assert resp.choices[0].message.content == f"mock answer ({len(sent)} chars asked)"
    sources = (resp.model_extra or {})["sources"]
    assert len(sources) == 2 and sources[0]["title"] == "Brewing green tea"
    assert sources[0]["id"].startswith("kb:tea")
    assert raw.headers["x-llmops-chain"] == f"chain.rag_qa/{version}"

    row = Store.open().get_request(resp.id)
    assert row is not None and row["status"] == 200 and row["endpoint"] == "rag-qa"
    assert (row["chain"], row["chain_version"]) == ("chain.rag_qa", version)
    assert row["index_version"] == index.current_version() == 1
    assert row["sources"] == sources and row["answer"] == resp.choices[0].message.content
    lineage = row["lineage"]
    assert lineage["chunk_ids"] == [s["id"] for s in sources]
    assert lineage["index_version"] == index.current_version()
    assert lineage["index_collection"] == "small-kb" and lineage["chain_version"] == version
    assert lineage["backend"] == "openai" and lineage["prompt"] == "prompt.qa"
    assert lineage["prompt_tokens"] == 10  # the server's own count
    assert lineage["completion_tokens"] == len(resp.choices[0].message.content.split())


def test_rag_async_invoke_carries_the_contexts_the_llm_saw(
    rag_gateway: tuple[Server, str, int, MockOpenAI],
) -> None:
    import llmops.chains as chains
    from llmops.llm import openai as llm

    chain = chains.load("rag_qa@production")
    assert chain.blocking  # retrieval runs on a thread, not on the event loop

    async def ask() -> Any:
        try:
            return await chain.ainvoke(QUESTION)
        finally:
            await llm.aclose()

    result = asyncio.run(ask())
    expected = chain.invoke(QUESTION)
    assert result.contexts == expected.contexts and len(result.contexts) == 2
    assert result.contexts[0].startswith("[Brewing green tea]") and "80 degrees" in (
        result.contexts[0])
    assert result.sources == expected.sources
    assert result.lineage.chunk_ids == expected.lineage.chunk_ids
