"""Promotion gates against a real MLflow registry, real index and real metrics."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import llmops.chains as chains
import llmops.eval.gates as gates
import llmops.prompts as prompts
from llmops.cli import app
from llmops.errors import GateError
from llmops.eval.gates import run_gate
from llmops.eval.runner import evaluate
from llmops.registry import get_registry
from llmops.store import RequestRow, Store
from tests.eval.conftest import write_chain

runner = CliRunner()
NAME = "chain.rag_qa"


def _candidate(root: Path, mode: str = "good", *, evaluate_it: bool = True,
               description: str | None = None) -> int:
    """Log the chain in `mode`, point staging at it, and (by default) evaluate it."""
    v = chains.log(write_chain(root, mode, description=description)).version
    reg = get_registry()
    reg.move_alias(NAME, "staging", v)
    if evaluate_it:
        evaluate(f"{NAME}/{v}", "eval/qa.jsonl", progress=False)
    return v


def _aliases() -> dict[str, int]:
    return {a: v.version for v in get_registry().list_versions(NAME) for a in v.aliases}


def _production(root: Path, mode: str = "good") -> int:
    v = _candidate(root, mode, description=f"the {mode} chain")
    assert run_gate(NAME).passed
    return v


def test_first_deployment_passes_against_the_baselines_and_moves_production(
    eval_project: Path,
) -> None:
    v = _candidate(eval_project)
    d = run_gate(NAME)
    assert d.passed and d.moved and not d.archived and d.production is None
    assert _aliases()["production"] == v
    numbers = {c.name: c.numbers for c in d.checks if c.group == "comparison"}
    assert numbers["hit_rate"] == {"candidate": 1.0, "baseline": 0.6}
    info = get_registry().get(NAME, v)
    assert info.tags["gate.decision"] == "pass" and info.tags["gate.against"] == "baselines"
    assert info.tags["gate.evaluation_run"] == d.evaluation_run
    assert {c["name"] for c in json.loads(info.tags["gate.checks"])} >= {
        "description", "signature", "evaluation", "hit_rate", "semantic_similarity"}
    assert "### Gate PASS" in info.description and "[x] comparison/hit_rate" in info.description
    last = get_registry().history(NAME)[-1]
    assert (last.alias, last.to_version) == ("production", v)
    assert last.reason.startswith(f"gate PASS {NAME}/{v} against baselines")
    assert d.evaluation_run is not None and d.evaluation_run in last.reason


def test_a_better_or_equal_candidate_replaces_production(eval_project: Path) -> None:
    first = _production(eval_project)
    second = _candidate(eval_project, description="the same answers, a new description")
    d = run_gate(NAME)
    assert d.passed and d.production == first and _aliases()["production"] == second
    sim = next(c for c in d.checks if c.name == "semantic_similarity")
    assert sim.numbers["production"] == pytest.approx(sim.numbers["candidate"])


def test_a_worse_candidate_fails_on_the_metric_and_is_archived(eval_project: Path) -> None:
    first = _production(eval_project)
    worse = _candidate(eval_project, "poor")
    res = runner.invoke(app, ["gate", NAME, "--candidate", "staging"])
    assert res.exit_code == 1, res.output
    assert "FAIL  comparison/semantic_similarity" in res.output
    assert f"{NAME}/{worse} archived" in res.output
    info = get_registry().get(NAME, worse)
    assert info.archived and info.tags["gate.decision"] == "fail"
    assert "semantic_similarity" in info.tags["llmops.archived_reason"]
    assert _aliases()["production"] == first
    with pytest.raises(GateError, match="archived"):
        run_gate(NAME, candidate=str(worse))


def test_a_nan_metric_fails_closed(eval_project: Path) -> None:
    _production(eval_project)
    silent = _candidate(eval_project, "silent")
    d = run_gate(NAME)
    assert not d.passed and d.archived
    failed = {c.name: c.detail for c in d.failures}
    assert failed["semantic_similarity"] == "candidate semantic_similarity is NaN or missing"
    assert "hit_rate" not in failed
    assert get_registry().get(NAME, silent).archived


def test_compliance_failures_block_the_gate(eval_project: Path) -> None:
    v = _candidate(eval_project, evaluate_it=False)
    reg = get_registry()
    reg.set_description(NAME, v, "")
    reg.client.delete_model_version_tag(NAME, str(v), "chain.tag.domain")
    d = run_gate(NAME)
    failed = {c.name: c.detail for c in d.failures}
    assert failed["description"] == "the version has no description"
    assert failed["tags"] == "missing chain.tag.domain"
    assert failed["evaluation"].startswith(f"{NAME}/{v} has no evaluation on qa@")
    assert "llmops eval run" in failed["evaluation"]
    assert d.archived and "production" not in _aliases()


def test_dry_run_prints_the_decision_and_changes_nothing(eval_project: Path) -> None:
    _production(eval_project)
    worse = _candidate(eval_project, "poor")
    reg = get_registry()
    before = (reg.get(NAME, worse), _aliases(), len(reg.history(NAME)))
    res = runner.invoke(app, ["gate", NAME, "--dry-run", "--json"])
    assert res.exit_code == 1
    body = json.loads(res.stdout.splitlines()[-1])
    assert body["dry_run"] and not body["passed"] and not body["archived"]
    assert (reg.get(NAME, worse), _aliases(), len(reg.history(NAME))) == before


def test_two_gates_racing_for_production_one_wins_the_other_fails_cleanly(
    eval_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _production(eval_project)
    a = _candidate(eval_project, description="candidate a")
    b = _candidate(eval_project, description="candidate b")
    barrier = threading.Barrier(2)
    act = gates.act

    def act_together(*args: Any) -> None:
        barrier.wait(timeout=60)  # both decided against the same production
        act(*args)

    monkeypatch.setattr(gates, "act", act_together)
    outcomes: dict[int, Any] = {}

    def go(v: int) -> None:
        try:
            outcomes[v] = run_gate(NAME, candidate=str(v))
        except GateError as exc:
            outcomes[v] = exc

    threads = [threading.Thread(target=go, args=(v,)) for v in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    winners = [v for v, o in outcomes.items() if not isinstance(o, Exception) and o.moved]
    losers = [v for v, o in outcomes.items() if isinstance(o, GateError)]
    assert len(winners) == 1 and len(losers) == 1
    assert _aliases()["production"] == winners[0]
    assert "another promotion won the race" in str(outcomes[losers[0]])
    loser = get_registry().get(NAME, losers[0])
    assert not loser.archived and "gate.decision" not in loser.tags
    moves = [r for r in get_registry().history(NAME) if r.alias == "production"]
    assert [(r.from_version, r.to_version) for r in moves][-1] == (first, winners[0])


def test_production_without_an_evaluation_is_evaluated_by_the_gate(eval_project: Path) -> None:
    first = _production(eval_project)
    from llmops.eval.results import Results
    from llmops.store import EVALUATIONS

    res = Results()
    with res.store.engine.begin() as conn:  # as if the dataset had changed since
        conn.execute(EVALUATIONS.delete().where(EVALUATIONS.c.version == first))
    second = _candidate(eval_project, description="another")
    gated = ("hit_rate", "semantic_similarity", "string_similarity")

    # told not to evaluate production, the gate has nothing to compare with: it fails closed
    d = run_gate(NAME, dry_run=True, evaluate_production=False)
    assert (d.passed, d.production, d.moved, d.archived) == (False, first, False, False)
    assert {(c.group, c.name): c.detail for c in d.failures} == {
        ("comparison", m): "production has no evaluation on this dataset version" for m in gated}
    assert d.reason().startswith(f"gate FAIL {NAME}/{second} against production {first} on qa@")
    assert res.evaluations(model=NAME, version=first) == []

    # by default it evaluates production on the current dataset version, then compares
    d = run_gate(NAME, dry_run=True)
    assert (d.passed, d.production, d.moved, d.archived) == (True, first, False, False)
    prod_evals = res.evaluations(model=NAME, version=first, dataset_version=d.dataset_version)
    assert len(prod_evals) == 1
    compared = {c.name: c.numbers for c in d.checks if c.group == "comparison"}
    assert set(compared) == set(gated)
    for metric in gated:  # production's numbers are those of the evaluation the gate ran
        assert compared[metric]["production"] == pytest.approx(
            prod_evals[0]["summary"][metric]["mean"])
    assert compared["hit_rate"] == {"candidate": 1.0, "production": 1.0, "tolerance": 0.1}
    assert _aliases() == {"production": first, "staging": second}  # a dry run moves nothing
    assert "gate.decision" not in get_registry().get(NAME, second).tags

    # the real run moves production, comparing against that evaluation (not a new one)
    d = run_gate(NAME)
    assert d.passed and d.moved and _aliases() == {"production": second, "staging": second}
    assert [e["id"] for e in res.evaluations(model=NAME, version=first)] == [prod_evals[0]["id"]]


def test_a_prompt_is_gated_through_its_chain(eval_project: Path) -> None:
    qa = eval_project / "prompts" / "qa.yaml"
    qa.write_text(qa.read_text().replace("description:", "description: (v2)", 1))
    pushed = {r.name: r for r in prompts.push()}
    v2 = pushed["prompt.qa"].version
    get_registry().move_alias("prompt.qa", "staging", v2)
    res = runner.invoke(app, ["eval", "run", "prompt.qa@staging", "-d", "eval/qa.jsonl"])
    assert res.exit_code == 0, res.output
    d = run_gate("prompt.qa")
    assert d.passed, [c.to_dict() for c in d.failures]
    assert d.production == 1 and _prompt_aliases()["production"] == v2
    assert {c.name for c in d.checks} >= {"evaluation", "hit_rate", "semantic_similarity"}


def _prompt_aliases() -> dict[str, int]:
    return {a: v.version for v in get_registry().list_versions("prompt.qa") for a in v.aliases}


def test_online_criterion_needs_votes_and_a_probability_of_being_better(
    eval_project: Path,
) -> None:
    gates_file = eval_project / "eval" / "gates.yaml"
    gates_file.write_text(gates_file.read_text().replace(
        "      string_similarity: {baseline: 0.3, tolerance: 0.05}\n",
        "      string_similarity: {baseline: 0.3, tolerance: 0.05}\n"
        "    online: {min_votes: 20, min_prob_better: 0.8}\n", 1))
    first = _production(eval_project)  # first deployment: online is skipped
    cand = _candidate(eval_project, description="online candidate")
    store = Store.open()
    try:
        def serve(version: int, ups: int, downs: int) -> None:
            for i in range(ups + downs):
                rid = f"v{version}-{i}"
                store.log_request(RequestRow(rid, "rag-qa", 200, chain=NAME,
                                             chain_version=version))
                store.add_feedback(rid, reviewer="ann", rating="up" if i < ups else "down")

        serve(first, 10, 10)
        serve(cand, 5, 3)
        d = run_gate(NAME, dry_run=True)
        online = next(c for c in d.checks if c.group == "online")
        assert not online.passed and online.detail.startswith("8 votes (needs 20)")
        serve(cand, 0, 0)
        for i in range(8, 30):
            rid = f"more-{i}"
            store.log_request(RequestRow(rid, "rag-qa", 200, chain=NAME, chain_version=cand))
            store.add_feedback(rid, reviewer="bob", rating="up")
    finally:
        store.close()
    d = run_gate(NAME)
    online = next(c for c in d.checks if c.group == "online")
    assert online.passed and online.numbers["prob_better"] > 0.8, online.detail
    assert d.moved and _aliases()["production"] == cand


@pytest.mark.parametrize(("text", "message"), [
    ("gates:\n  chain.rag_qa:\n    dataset: eval/qa.jsonl\n    metrics: {bleu: {baseline: 1}}\n",
     "unknown bleu"),
    ("gates:\n  prompt.qa:\n    dataset: eval/qa.jsonl\n    metrics: {hit_rate: {baseline: 1}}\n",
     "a prompt is evaluated through a chain"),
    ("gates:\n  chain.rag_qa:\n    dataset: eval/qa.jsonl\n    metrics: {hit_rate: {baseline: 2}}\n",
     "less than or equal to 1"),
    ("gates:\n  chain.rag_qa:\n    datasets: x\n", "datasets: unknown key"),
])
def test_a_bad_gates_file_names_the_key(eval_project: Path, text: str, message: str) -> None:
    (eval_project / "eval" / "gates.yaml").write_text(text)
    with pytest.raises(GateError, match=message):
        run_gate(NAME)


def test_gate_errors_for_unknown_models_and_current_production(eval_project: Path) -> None:
    with pytest.raises(GateError, match=r"no gate for chain\.nope"):
        run_gate("chain.nope")
    v = _production(eval_project)
    with pytest.raises(GateError, match=r"already chain\.rag_qa@production"):
        run_gate(NAME, candidate=str(v))
