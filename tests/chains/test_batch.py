"""Batch prediction with a registered chain: in process and through `spark_udf` (local[2]),
over the real index and the real embedding model; the LLM is llmops' fake backend."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import llmops.chains as chains
import llmops.index as index
from llmops.chains.batch import predict
from llmops.errors import ChainError, EvalError
from tests.conftest import make_kb_project

QUESTIONS = ["At what temperature should I brew green tea?", "When do owls hunt?",
             "How often should I oil my bicycle chain?"]
DOCS = ["kb:tea", "kb:owls", "kb:bikes"]


@pytest.fixture
def logged(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    root = make_kb_project(tmp_path / "project", monkeypatch)
    version = chains.log(root / "chains" / "rag_qa.py").version
    chains.promote("rag_qa", version, "production")
    return version


def _check(out: pd.DataFrame, version: int) -> None:
    assert list(out["question"]) == QUESTIONS  # the input's order and columns stay
    assert out["error"].isna().all()
    assert all(isinstance(a, str) and a for a in out["answer"])
    assert [s[0]["doc_id"] for s in out["sources"]] == DOCS
    assert (out["chain_version"] == version).all()
    for lin, sources in zip(out["lineage"], out["sources"], strict=True):
        assert lin["chain"] == "chain.rag_qa" and lin["chain_version"] == version
        assert lin["index_version"] == index.current_version()
        assert list(lin["chunk_ids"]) == [s["id"] for s in sources]


def test_batch_predict_in_process(logged: int) -> None:
    frame = pd.DataFrame({"question": QUESTIONS, "user": ["a", "b", "c"]})
    out = predict("rag_qa@production", frame)
    _check(out, logged)
    assert list(out["user"]) == ["a", "b", "c"]
    assert "contexts" not in out
    with_contexts = predict("rag_qa@production", frame, contexts=True)
    assert all("degrees" in " ".join(c) for c in with_contexts["contexts"][:1])


def test_a_failing_row_is_recorded_and_the_others_answer(logged: int) -> None:
    frame = pd.DataFrame({"question": [QUESTIONS[0], None, QUESTIONS[1]]})
    out = predict("rag_qa@production", frame)
    assert out["error"][0] is None and out["error"][2] is None
    assert "question" in out["error"][1]
    assert out["answer"][1] is None and out["answer"][0] and out["answer"][2]


def test_a_frame_without_questions_is_refused_by_its_columns(logged: int) -> None:
    with pytest.raises(ChainError, match=r"\['prompt'\].*'question'"):
        predict("rag_qa@production", pd.DataFrame({"prompt": ["hi"]}))
    with pytest.raises(ChainError, match="unknown batch engine 'dask'"):
        predict("rag_qa@production", pd.DataFrame({"question": ["hi"]}), engine="dask")  # type: ignore[arg-type]


@pytest.mark.spark
def test_batch_predict_on_spark_matches_in_process(logged: int) -> None:
    frame = pd.DataFrame({"question": QUESTIONS, "user": ["a", "b", "c"]})
    local = predict("rag_qa@production", frame, contexts=True)
    spark = predict("rag_qa@production", frame, engine="spark", contexts=True)
    _check(spark, logged)
    assert list(spark["answer"]) == list(local["answer"])
    assert list(spark["contexts"]) == list(local["contexts"])
    assert [s[0] for s in spark["sources"]] == [s[0] for s in local["sources"]]
    failing = predict("rag_qa@production", pd.DataFrame({"question": [QUESTIONS[1], None]}),
                      engine="spark")
    assert failing["error"][0] is None and "question" in failing["error"][1]
    messages = pd.DataFrame({"messages": [[{"role": "user", "content": QUESTIONS[1]}]]})
    chat = predict("rag_qa@production", messages, engine="spark")
    assert chat["sources"][0][0]["doc_id"] == "kb:owls" and chat["error"][0] is None


def test_chain_predict_cli_writes_every_row(logged: int, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from llmops.cli import app

    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"question": q, "ticket": i}) + "\n"
                           for i, q in enumerate(QUESTIONS)))
    dst = tmp_path / "out" / "answers.jsonl"
    res = CliRunner().invoke(app, ["chains", "predict", "rag_qa@production", "-i", str(src),
                                   "-o", str(dst)])
    assert res.exit_code == 0, res.output
    assert f"3 rows answered by chain.rag_qa/{logged} (pandas), 0 failed" in res.output
    rows = [json.loads(line) for line in dst.read_text().splitlines()]
    assert [r["ticket"] for r in rows] == [0, 1, 2]
    assert [r["sources"][0]["doc_id"] for r in rows] == DOCS
    src.write_text('{"question": "ok"}\n[1, 2]\n')
    bad = CliRunner().invoke(app, ["chains", "predict", "rag_qa@production", "-i", str(src),
                                   "-o", str(dst)])
    assert bad.exit_code != 0 and "in.jsonl:2" in bad.output


@pytest.mark.spark
def test_evaluation_answers_on_spark_as_in_process(logged: int, tmp_path: Path) -> None:
    from llmops.eval.results import Results
    from llmops.eval.runner import evaluate

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"id": d.split(":")[1], "question": q,
                                        "reference": q, "topics": [d]}) + "\n"
                            for q, d in zip(QUESTIONS, DOCS, strict=True)))
    runs = {}
    for engine in ("pandas", "spark"):
        runs[engine] = evaluate("chain.rag_qa@production", data, engine=engine, log=False,
                                metrics=["hit_rate", "context_recall"], progress=False,
                                results=Results(f"sqlite:///{tmp_path / engine}.db"))
    spark, local = runs["spark"], runs["pandas"]
    assert spark.chain_calls == 3 and spark.failures == 0
    assert spark.summary["hit_rate"]["mean"] == 1.0
    for a, b in zip(spark.items, local.items, strict=True):
        assert a.output is not None and b.output is not None
        assert a.output["answer"] == b.output["answer"]
        assert a.output["contexts"] == b.output["contexts"] and a.output["contexts"]
        assert a.output["retrieved_ids"] == b.output["retrieved_ids"]
        assert {m: s.value for m, s in a.scores.items()} == {m: s.value for m, s in b.scores.items()}
    with pytest.raises(EvalError, match="unknown engine 'ray'"):
        evaluate("chain.rag_qa@production", data, engine="ray")
