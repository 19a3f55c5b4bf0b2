"""`llmops eval run`: real chain, real index, real ragas metrics, real MLflow; the LLM is scripted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import llmops.chains as chains
import llmops.index as index
from llmops.cli import app
from llmops.config import reset_settings
from llmops.errors import EvalError
from llmops.eval.dataset import from_feedback, load_dataset
from llmops.eval.results import Results
from llmops.eval.runner import evaluate
from llmops.registry import get_registry
from tests.eval.conftest import ScriptedLLM, write_chain
from tests.eval.judge_mock import JudgeMock

runner = CliRunner()


def _log(root: Path, mode: str = "good", **kw: str) -> int:
    return chains.log(write_chain(root, mode, **kw)).version


def test_evaluation_scores_every_item_and_logs_run_tags_and_row(eval_project: Path) -> None:
    v = _log(eval_project)
    ev = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", progress=False)
    s = ev.summary
    assert ev.failures == 0 and ev.chain_calls == 3 and ScriptedLLM.calls == 3
    assert s["hit_rate"]["mean"] == 1.0 and s["context_recall"]["mean"] == 1.0
    # The scripted chain answers the reference word for word.
    assert s["string_similarity"]["mean"] == pytest.approx(1.0)
    assert s["semantic_similarity"]["mean"] == pytest.approx(1.0, abs=1e-4)
    assert ev.metric_calls == 3 * 4

    reg = get_registry()
    run = reg.client.get_run(ev.run_id)
    assert run.data.params["dataset_version"] == load_dataset("eval/qa.jsonl").version
    assert run.data.tags["llmops.eval.version"] == str(v)
    assert run.data.metrics["hit_rate"] == 1.0 and run.data.metrics["failures"] == 0
    names = {a.path for a in reg.client.list_artifacts(ev.run_id)}
    assert {"eval_items.json", "eval_metrics.png"} <= names
    table = json.loads(Path(reg.client.download_artifacts(ev.run_id, "eval_items.json"))
                       .read_text())
    assert len(table["data"]) == 3
    tags = reg.get("chain.rag_qa", v).tags
    assert tags["eval.qa.run_id"] == ev.run_id and tags["eval.qa.hit_rate"] == "1.0000"

    rows = Results().evaluations(model="chain.rag_qa")
    assert [r["id"] for r in rows] == [ev.id] and rows[0]["run_id"] == ev.run_id
    out = runner.invoke(app, ["eval", "show", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)[0]["summary"]["hit_rate"]["mean"] == 1.0


def test_repeated_evaluation_makes_no_chain_and_no_judge_calls(
    eval_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = _log(eval_project)
    with JudgeMock() as judge:
        monkeypatch.setenv("LLMOPS_EVAL__JUDGE_BASE_URL", judge.url)
        reset_settings()
        first = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", progress=False)
        assert set(first.metrics) >= {"faithfulness", "answer_relevancy", "context_precision"}
        assert first.failures == 0
        calls = (ScriptedLLM.calls, judge.calls)
        assert calls[0] == 3 and calls[1] > 0
        second = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", progress=False)
        assert (ScriptedLLM.calls, judge.calls) == calls
        assert second.chain_calls == 0 and second.metric_calls == 0
        assert second.summary == first.summary
        # A new judge model is a new metric configuration: judged again, chain not rerun.
        monkeypatch.setenv("LLMOPS_EVAL__JUDGE_MODEL", "judge-2")
        reset_settings()
        third = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", progress=False)
        assert ScriptedLLM.calls == calls[0] and judge.calls > calls[1]
        assert third.metric_calls == 3 * 3


def test_a_new_index_version_reruns_the_chain_but_not_unchanged_scores(eval_project: Path) -> None:
    v = _log(eval_project)
    first = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", progress=False)
    assert first.index_version == "1"  # the project's first build
    kb = eval_project / "data" / "kb.jsonl"
    kb.write_text(kb.read_text() + json.dumps({"id": "moss", "text": "Moss grows on the north "
                                               "side of trees in damp woods."}) + "\n")
    index.refresh(progress=False)
    again = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", progress=False)
    assert again.chain_calls == 3 and ScriptedLLM.calls == 6
    assert again.index_version == "2"
    assert all(r.output["lineage"]["index_version"] == 2 for r in again.items)  # type: ignore[index]
    # The scripted answers do not depend on the context: only the metrics that read the
    # retrieved ids (hit rate, context recall) score again, and only where they changed.
    before = {r.item.id: r.output["retrieved_ids"] for r in first.items}  # type: ignore[index]
    changed = sum(r.output["retrieved_ids"] != before[r.item.id]  # type: ignore[index]
                  for r in again.items)
    assert again.metric_calls == 2 * changed


def test_the_output_cache_keys_on_the_index_version_that_served_each_answer(
    eval_project: Path,
) -> None:
    """The index moves while the evaluation runs: answers served by the new version are
    cached under it, so a rerun on the new version repeats only the one served before."""
    v = _log(eval_project)
    kb = eval_project / "data" / "kb.jsonl"

    def refresh_after_the_first_answer(number: int) -> None:
        if number == 1:
            kb.write_text(kb.read_text() + json.dumps({"id": "moss", "text": "Moss grows on "
                                                       "damp bark."}) + "\n")
            index.refresh(progress=False)

    ScriptedLLM.on_call = refresh_after_the_first_answer
    first = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", concurrency=1, progress=False)
    ScriptedLLM.on_call = None
    served = [r.output["lineage"]["index_version"] for r in first.items]  # type: ignore[index]
    assert first.index_version == "1" and served == [1, 2, 2]
    again = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", concurrency=1, progress=False)
    assert again.index_version == "2" and again.chain_calls == 1
    assert [r.cached for r in again.items] == [False, True, True]


def test_a_metric_without_a_value_is_a_per_item_failure_never_averaged(eval_project: Path) -> None:
    v = _log(eval_project, "silent")
    ev = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", progress=False)
    s = ev.summary
    assert s["string_similarity"] == {"mean": None, "n": 0, "failures": 3}
    assert s["hit_rate"]["failures"] == 0  # retrieval still scored
    assert ev.failures == 6
    item = ev.items[0]
    assert item.scores["semantic_similarity"].error == "no answer for this item"
    res = runner.invoke(app, ["eval", "run", f"chain.rag_qa/{v}", "--dataset", "eval/qa.jsonl"])
    assert res.exit_code == 1
    assert "3 FAILED" in res.output and "tea: string_similarity: no answer" in res.output
    assert get_registry().get("chain.rag_qa", v).tags["eval.qa.string_similarity"] == "nan"


def test_a_judge_that_answers_garbage_fails_each_item(
    eval_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v = _log(eval_project)
    with JudgeMock() as judge:
        judge.garbage = True
        monkeypatch.setenv("LLMOPS_EVAL__JUDGE_BASE_URL", judge.url)
        reset_settings()
        ev = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", metrics=["faithfulness", "hit_rate"],
                      progress=False)
    assert ev.summary["faithfulness"]["failures"] == 3 and ev.summary["hit_rate"]["failures"] == 0
    assert all(r.scores["faithfulness"].error for r in ev.items)
    # Failures are not cached: a working judge scores them next time.
    with JudgeMock() as judge:
        monkeypatch.setenv("LLMOPS_EVAL__JUDGE_BASE_URL", judge.url)
        reset_settings()
        ev2 = evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", metrics=["faithfulness"],
                       progress=False)
    assert ev2.failures == 0 and ev2.chain_calls == 0


def test_judge_metrics_without_a_judge_and_unknown_metrics_are_errors(eval_project: Path) -> None:
    v = _log(eval_project)
    with pytest.raises(EvalError, match=r"need a judge model: set eval\.judge_base_url"):
        evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", metrics=["faithfulness"], progress=False)
    with pytest.raises(EvalError, match=r"unknown metric.*bleu"):
        evaluate(f"chain.rag_qa/{v}", "eval/qa.jsonl", metrics=["bleu"], progress=False)
    assert ScriptedLLM.calls == 0


@pytest.mark.parametrize(("line", "message"), [
    ("{not json", r"bad\.jsonl:2: not valid JSON"),
    ('{"id": "tea", "question": "again?"}', r"bad\.jsonl:2: id 'tea' repeats line 1"),
    ('{"id": "x", "question": "q", "answer": "a"}', r"bad\.jsonl:2: answer: unknown key"),
    ('{"id": "x", "question": "  "}', r"bad\.jsonl:2: question: must not be blank"),
    ('["a list"]', r"bad\.jsonl:2: expected a JSON object"),
])
def test_dataset_errors_name_the_file_line_and_key(tmp_path: Path, line: str, message: str) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "tea", "question": "Tea?", "reference": "Hot.", "topics": ["tea"]}\n'
                   + line + "\n")
    with pytest.raises(EvalError, match=message):
        load_dataset(bad)


def test_dataset_version_follows_content_not_formatting(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"id": "1", "question": "Q?", "reference": "R."}\n')
    b.write_text('\n{"question": "Q?",  "id": "1", "reference": "R."}\n\n')
    assert load_dataset(a).version == load_dataset(b).version
    b.write_text('{"id": "1", "question": "Q?", "reference": "R!"}\n')
    assert load_dataset(a).version != load_dataset(b).version
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(EvalError, match="has no items"):
        load_dataset(tmp_path / "empty.jsonl")


def test_reviewed_feedback_becomes_evaluation_cases(eval_project: Path, tmp_path: Path) -> None:
    from llmops.store import RequestRow, Store

    store = Store.open()
    try:
        ask = [{"role": "user", "content": "How do owls see at night?"}]
        store.log_request(RequestRow("r1", "rag-qa", 200, messages=ask, answer="Big eyes.",
                                     sources=[{"id": "kb:owls#0", "doc_id": "kb:owls"}]))
        store.log_request(RequestRow("r2", "rag-qa", 200, messages=[
            {"role": "user", "content": "Tea temperature?"}], answer="Boil it hard."))
        store.log_request(RequestRow("r3", "rag-qa", 200, messages=[
            {"role": "user", "content": "Chain oil?"}], answer="Never."))
        store.add_feedback("r1", reviewer="ann", rating="up")
        store.add_feedback("r2", reviewer="ann", rating="down", comment="About 80 degrees C.")
        store.add_feedback("r3", reviewer="bob", rating="down")
    finally:
        store.close()
    out = tmp_path / "feedback.jsonl"
    res = runner.invoke(app, ["eval", "dataset", "from-feedback", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "3 cases (2 from thumbs-down)" in res.output
    data = load_dataset(out)
    by_q = {i.question: i for i in data.items}
    assert by_q["How do owls see at night?"].reference == "Big eyes."
    assert by_q["How do owls see at night?"].topics == ("kb:owls",)
    assert by_q["Tea temperature?"].reference == "About 80 degrees C."
    assert by_q["Tea temperature?"].metadata["rejected_answer"] == "Boil it hard."
    assert by_q["Chain oil?"].reference is None
    assert from_feedback([]).items == ()


def test_a_prompt_is_evaluated_through_the_chain_its_gate_names(eval_project: Path) -> None:
    with pytest.raises(EvalError, match=r"prompt\.qa/1 is not a chain"):
        evaluate("prompt.qa/1", "eval/qa.jsonl", progress=False)
    res = runner.invoke(app, ["eval", "run", "prompt.qa@production", "-d", "eval/qa.jsonl",
                              "--json"])
    assert res.exit_code == 0, res.output
    body = json.loads(res.stdout.splitlines()[-1])
    assert body["model"] == "chain.rag_qa" and body["failures"] == 0
    info = get_registry().get("chain.rag_qa", body["version"])
    assert info.tags["lineage.prompt_version"] == "1"
