"""An adapter goes through the same gates as prompts: evaluated through the chain that uses
it, promoted by the gate. The real SmolLM2, a three-document index, three questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import llmops.chains as chains
from llmops.registry import get_registry
from tests.conftest import make_kb_project
from tests.eval.conftest import ITEMS
from tests.finetune.test_train import STYLE

pytestmark = pytest.mark.slow

GATES = """
gates:
  adapter.tiny:
    dataset: eval/qa.jsonl
    chain: chains/rag_qa.py
    compliance:
      tags: [llmops.content_hash, llmops.git_commit]
      lineage: [lineage.base_model, lineage.data_version, lineage.recipe_hash,
                lineage.training_run]
    metrics:
      hit_rate: {baseline: 0.6, tolerance: 0.1}
      context_recall: {baseline: 0.5, tolerance: 0.1}
"""


def test_an_adapter_is_gated_through_the_chain_that_uses_it(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.eval.gates import run_gate
    from llmops.eval.runner import evaluate
    from llmops.finetune import run

    root = make_kb_project(tmp_path / "project", monkeypatch, llm="backend: local")
    (root / "chains" / "rag_qa.yaml").write_text(
        (root / "chains" / "rag_qa.yaml").read_text().replace("max_tokens: 120",
                                                              "max_tokens: 24"))
    (root / "eval").mkdir()
    (root / "eval" / "qa.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    (root / "eval" / "gates.yaml").write_text(GATES)
    (root / "finetune" / "data").mkdir(parents=True)
    (root / "finetune" / "data" / "tiny.jsonl").write_text("".join(
        json.dumps({"messages": [{"role": "user", "content": q},
                                 {"role": "assistant", "content": a}]}) + "\n"
        for q, a in STYLE))
    (root / "finetune" / "tiny.yaml").write_text(
        "name: tiny\ndescription: The house style.\n"
        "data: [{jsonl: finetune/data/tiny.jsonl}]\n"
        "train: {steps: 2, batch_size: 4, eval_split: 0, max_seq_len: 256}\n")
    trained = run(root / "finetune" / "tiny.yaml", progress=False)
    reg = get_registry()
    reg.move_alias("adapter.tiny", "staging", trained.version)

    # The candidate chain pins the adapter's version; it is what the gate evaluates.
    logged = chains.log(root / "chains" / "rag_qa.py", adapter="adapter.tiny@staging")
    assert logged.lineage["adapter"] == f"adapter.tiny/{trained.version}"
    evaluate(f"chain.rag_qa/{logged.version}", root / "eval" / "qa.jsonl", progress=False)

    dry = run_gate("adapter.tiny", dry_run=True)
    by_name = {c.name: c for c in dry.checks}
    assert by_name["evaluation"].passed, by_name["evaluation"].detail
    assert by_name["lineage"].passed and by_name["signature"].passed
    assert by_name["hit_rate"].passed, by_name["hit_rate"].detail  # retrieval: all hit
    assert dry.passed and not dry.moved and "production" not in reg.get(
        "adapter.tiny", trained.version).aliases
    real = run_gate("adapter.tiny")
    assert real.passed and real.moved
    assert "production" in reg.get("adapter.tiny", trained.version).aliases
    assert reg.get("adapter.tiny", trained.version).tags["gate.decision"] == "pass"
