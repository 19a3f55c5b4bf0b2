"""The evaluation tables on SQLite and PostgreSQL: the same code, the same answers."""

from __future__ import annotations

import time

import pytest

from llmops.errors import EvalError
from llmops.eval.results import Results
from llmops.store import Store, UnknownEvaluationError


def _evaluation(version: int, at: float) -> dict[str, object]:
    return {
        "id": f"e{version}", "created_at": at, "model": "chain.x", "version": version,
        "dataset": "qa", "dataset_version": "abc", "index_version": 3, "n_items": 2,
        "failures": 0, "summary": {"hit_rate": {"mean": 0.5, "n": 2, "failures": 0}},
        "judge": None, "run_id": f"run{version}", "chain_calls": 2, "metric_calls": 2,
    }


def test_outputs_scores_and_evaluations_round_trip(store_url: str) -> None:
    store = Store(store_url)
    try:
        store.put_eval_output("chain-h", "3", "item-a", {"answer": "A", "contexts": ["c"]})
        store.put_eval_output("chain-h", 3, "item-a", {"answer": "A2"})  # a rerun replaces
        store.put_eval_output("chain-h", "4", "item-a", {"answer": "B"})
        assert store.eval_outputs("chain-h", "3", ["item-a", "item-b"]) == {
            "item-a": {"answer": "A2"}}
        assert store.eval_outputs("chain-h", 4, ["item-a"]) == {"item-a": {"answer": "B"}}

        store.put_eval_scores([("out-1", "hit_rate", "hit_rate", 1.0),
                               ("out-1", "semantic_similarity:m", "semantic_similarity", 0.5)])
        store.put_eval_scores([("out-1", "hit_rate", "hit_rate", 0.0)])
        got = store.eval_scores([("out-1", "hit_rate"), ("out-1", "semantic_similarity:m"),
                                 ("out-2", "hit_rate")])
        assert got == {("out-1", "hit_rate"): 0.0, ("out-1", "semantic_similarity:m"): 0.5}

        now = time.time()
        for i, version in enumerate((1, 2)):
            store.add_evaluation(_evaluation(version, now + i))
        rows = store.list_evaluations(model="chain.x")
        assert [r["id"] for r in rows] == ["e2", "e1"]
        assert rows[0]["summary"]["hit_rate"]["mean"] == 0.5 and rows[0]["index_version"] == "3"
        assert [r["id"] for r in store.list_evaluations(model="chain.x", version=1)] == ["e1"]
        assert store.list_evaluations(dataset_version="other") == []
        assert store.get_evaluation("e1")["run_id"] == "run1"
        with pytest.raises(UnknownEvaluationError, match="llmops eval show"):
            store.get_evaluation("nope")
        assert issubclass(UnknownEvaluationError, EvalError)

        store.clear_eval_cache()
        assert store.eval_outputs("chain-h", "3", ["item-a"]) == {}
        assert store.eval_scores([("out-1", "hit_rate")]) == {}
        assert len(store.list_evaluations()) == 2  # evaluations are not a cache
    finally:
        store.close()
    again = Store(store_url)  # migrations run once: a second open keeps the rows
    assert [r["id"] for r in again.list_evaluations()] == ["e2", "e1"]
    again.close()


def test_results_is_a_view_of_the_store(store_url: str) -> None:
    res = Results(store_url)
    try:
        res.put_output("h", "1", "i", {"answer": "A"})
        res.put_scores([("o", "k", "m", 0.25)])
        res.add_evaluation(_evaluation(7, 1.0))
        assert res.outputs("h", "1", ["i"]) == {"i": {"answer": "A"}}
        assert res.scores([("o", "k")]) == {("o", "k"): 0.25}
        assert [e["id"] for e in res.evaluations(model="chain.x")] == ["e7"]
        assert res.evaluation("e7")["version"] == 7
        assert res.store.get_evaluation("e7") == res.evaluation("e7")
    finally:
        res.close()
