"""The evaluation tables on SQLite and PostgreSQL: the same code, the same answers."""

from __future__ import annotations

import time

import sqlalchemy as sa

from llmops.eval.results import EVALUATIONS, Results


def test_outputs_scores_and_evaluations_round_trip(url: str) -> None:
    res = Results(url)
    try:
        res.put_output("chain-h", "3", "item-a", {"answer": "A", "contexts": ["c"]})
        res.put_output("chain-h", "3", "item-a", {"answer": "A2"})  # a rerun replaces
        res.put_output("chain-h", "4", "item-a", {"answer": "B"})
        assert res.outputs("chain-h", "3", ["item-a", "item-b"]) == {"item-a": {"answer": "A2"}}
        assert res.outputs("chain-h", "4", ["item-a"]) == {"item-a": {"answer": "B"}}

        res.put_scores([("out-1", "hit_rate", "hit_rate", 1.0),
                        ("out-1", "semantic_similarity:m", "semantic_similarity", 0.5)])
        res.put_scores([("out-1", "hit_rate", "hit_rate", 0.0)])
        got = res.scores([("out-1", "hit_rate"), ("out-1", "semantic_similarity:m"),
                          ("out-2", "hit_rate")])
        assert got == {("out-1", "hit_rate"): 0.0, ("out-1", "semantic_similarity:m"): 0.5}

        for i, version in enumerate((1, 2)):
            res.add_evaluation({
                "id": f"e{version}", "created_at": time.time() + i, "model": "chain.x",
                "version": version, "dataset": "qa", "dataset_version": "abc",
                "index_version": "3", "n_items": 2, "failures": 0,
                "summary": {"hit_rate": {"mean": 0.5, "n": 2, "failures": 0}},
                "judge": None, "run_id": f"run{version}", "chain_calls": 2, "metric_calls": 2,
            })
        rows = res.evaluations(model="chain.x")
        assert [r["id"] for r in rows] == ["e2", "e1"]
        assert rows[0]["summary"]["hit_rate"]["mean"] == 0.5
        assert [r["id"] for r in res.evaluations(model="chain.x", version=1)] == ["e1"]
        assert res.evaluation("e1")["run_id"] == "run1"
    finally:
        res.close()
    again = Results(url)  # migrations run once: a second open keeps the rows
    try:
        with again.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(EVALUATIONS)).scalar() == 2
    finally:
        again.close()
