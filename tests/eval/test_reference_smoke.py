"""The smoke evaluation of the reference chain: the local SmolLM2, the Python-docs index, no judge.

This is what `make demo` runs before it serves, and what CI runs: the real
model answers the five smoke questions, ragas scores them, and the reference
gate moves production on a first deployment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import llmops.chains as chains
import llmops.prompts as prompts
from llmops.cli import app
from llmops.registry import get_registry

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_smoke_evaluation_and_gate_of_the_reference_chain(python_docs_home: Path) -> None:
    prompts.push()
    prompts.promote("qa", 1, "production")
    v = chains.log(REPO / "chains" / "rag_qa.py").version
    reg = get_registry()
    reg.move_alias("chain.rag_qa", "staging", v)
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "run", "chain.rag_qa@staging", "--dataset",
                              str(REPO / "eval" / "qa_smoke.jsonl"), "--json", "--items"])
    assert res.exit_code == 0, res.output
    ev = json.loads(res.stdout.splitlines()[-1])
    assert ev["n_items"] == 5 and ev["failures"] == 0 and ev["chain_calls"] == 5
    assert ev["metrics"]["hit_rate"]["mean"] >= 0.8
    assert all(item["answer"].strip() for item in ev["items"])
    assert 0.0 < ev["metrics"]["semantic_similarity"]["mean"] <= 1.0

    gate = runner.invoke(app, ["gate", "chain.rag_qa", "--json"])
    assert gate.exit_code == 0, gate.output
    decision = json.loads(gate.stdout.splitlines()[-1])
    assert decision["passed"] and decision["moved"] and decision["production"] is None
    assert {a: x.version for x in reg.list_versions("chain.rag_qa")
            for a in x.aliases}["production"] == v

    again = runner.invoke(app, ["eval", "run", "chain.rag_qa@production", "--dataset",
                                str(REPO / "eval" / "qa_smoke.jsonl"), "--json"])
    assert json.loads(again.stdout.splitlines()[-1])["chain_calls"] == 0
