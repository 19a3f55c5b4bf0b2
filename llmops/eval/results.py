"""Where evaluations live: the store's evaluation tables, seen from evaluation.

The tables (`eval_outputs`, `eval_scores`, `evaluations`) and their migrations belong
to the store (`llmops/store/evals.py`); this is the narrow view the runner, the gates
and the CLI use, on the request log's database (`store_url`).

- outputs: one chain answer per (chain content hash, index version, item hash). An
  unchanged chain over an unchanged index and item is not run again.
- scores: one finite score per (output hash, metric key); failures are not cached.
- evaluations: one row per `llmops eval run`, listed by `llmops eval show`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llmops.store import Store


class Results:
    """The evaluation tables on one store URL (default: the settings' `store_url`)."""

    def __init__(self, url: str | None = None, *, store: Store | None = None) -> None:
        self.store = store if store is not None else Store.open(url)
        self._owned = store is None

    def close(self) -> None:
        if self._owned:
            self.store.close()

    def outputs(self, chain_hash: str, index_version: str | int,
                item_hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        return self.store.eval_outputs(chain_hash, index_version, item_hashes)

    def put_output(self, chain_hash: str, index_version: str | int, item_hash: str,
                   output: dict[str, Any]) -> None:
        self.store.put_eval_output(chain_hash, index_version, item_hash, output)

    def scores(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], float]:
        return self.store.eval_scores(keys)

    def put_scores(self, rows: list[tuple[str, str, str, float]]) -> None:
        """(output hash, metric key, metric, value) rows."""
        self.store.put_eval_scores(rows)

    def add_evaluation(self, row: dict[str, Any]) -> None:
        self.store.add_evaluation(row)

    def evaluations(self, *, model: str | None = None, version: int | None = None,
                    dataset_version: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""
        return self.store.list_evaluations(model=model, version=version,
                                           dataset_version=dataset_version, limit=limit)

    def evaluation(self, evaluation_id: str) -> dict[str, Any]:
        """One evaluation's row; UnknownEvaluationError (an EvalError) if there is none."""
        return self.store.get_evaluation(evaluation_id)
