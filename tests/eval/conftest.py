"""A small project for evaluation tests: three documents, a RAG chain whose LLM is scripted.

The `scripted` backend answers from the dataset by the chain's `llm.model`:
`good` answers the reference, `poor` an unrelated sentence, `silent` nothing
(so reference-based metrics fail). It counts its calls.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from llmops.config import reset_settings
from llmops.llm import LLM, Generation, Messages, register_backend
from tests.conftest import make_kb_project

REPO = Path(__file__).resolve().parents[2]

ITEMS = [
    {"id": "tea", "question": "At what temperature should I brew green tea?",
     "reference": "Brew green tea at about 80 degrees Celsius for two to three minutes.",
     "topics": ["tea"]},
    {"id": "bikes", "question": "How often should I oil my bicycle chain?",
     "reference": "Clean and oil the chain every few hundred kilometres.", "topics": ["kb:bikes"]},
    {"id": "owls", "question": "When do owls hunt?",
     "reference": "Owls hunt at night, seeing well in dim light.", "topics": ["owls"]},
]


@register_backend("scripted")
class ScriptedLLM(LLM):
    calls = 0
    on_call: Callable[[int], None] | None = None  # a test's hook, given the call's number
    _lock = threading.Lock()

    def generate(self, messages: Messages, *, max_tokens: int | None = None,
                 temperature: float | None = None, seed: int | None = None) -> Generation:
        with ScriptedLLM._lock:
            ScriptedLLM.calls += 1
            number = ScriptedLLM.calls
        if ScriptedLLM.on_call is not None:
            ScriptedLLM.on_call(number)
        user = messages[-1]["content"]
        mode = self.spec.model or "good"
        text = ""
        if mode == "good":
            text = next((i["reference"] for i in ITEMS if i["question"] in user), "I do not know.")
        elif mode == "poor":
            text = "Bananas are yellow and grow in bunches."
        return Generation(text, f"scripted:{mode}", 10, len(text.split()))


def write_chain(root: Path, mode: str, *, description: str | None = None) -> Path:
    """chains/rag_qa.yaml with the scripted LLM in `mode`; returns the chain file."""
    text = "".join(line for line in (REPO / "chains" / "rag_qa.yaml").read_text()
                   .splitlines(keepends=True) if "repetition_penalty" not in line)  # local only
    text = text.replace("backend: local", f"backend: scripted\n  model: {mode}").replace(
        "k: 3", "k: 2")
    if description is not None:
        head, _, rest = text.partition("description: >-")
        body = rest.split("\nprompt:", 1)[1]
        text = f"{head}description: {json.dumps(description)}\nprompt:{body}"
    (root / "chains" / "rag_qa.yaml").write_text(text)
    return root / "chains" / "rag_qa.py"


@pytest.fixture
def eval_project(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project: the three documents indexed, prompt.qa at production, the dataset, gates."""
    root = make_kb_project(tmp_path / "project", monkeypatch,
                           llm="backend: scripted\n  model: good")
    (root / "eval").mkdir()
    (root / "eval" / "qa.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    (root / "eval" / "gates.yaml").write_text(GATES)
    monkeypatch.chdir(root)
    ScriptedLLM.calls = 0
    ScriptedLLM.on_call = None
    return root


GATES = """
gates:
  chain.rag_qa:
    dataset: eval/qa.jsonl
    compliance:
      description: true
      tags: [chain.tag.domain]
      lineage: [lineage.prompt, lineage.prompt_version, lineage.index_collection]
      signature: true
      evaluation: true
    metrics:
      hit_rate: {baseline: 0.6, tolerance: 0.1}
      semantic_similarity: {baseline: 0.5, tolerance: 0.05}
      string_similarity: {baseline: 0.3, tolerance: 0.05}
  prompt.qa:
    dataset: eval/qa.jsonl
    chain: chains/rag_qa.py
    metrics:
      hit_rate: {baseline: 0.6, tolerance: 0.1}
      semantic_similarity: {baseline: 0.5, tolerance: 0.05}
"""


@pytest.fixture
def url(store_url: str, home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh store URL (SQLite, or a PostgreSQL schema of its own), set in the settings."""
    monkeypatch.setenv("LLMOPS_STORE_URL", store_url)
    reset_settings()
    return store_url
