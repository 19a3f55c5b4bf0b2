"""Evaluation tables: the cache of chain outputs and scores, and one row per evaluation.

- `eval_outputs`: one chain answer per (chain content hash, index version, item hash).
  An unchanged chain over an unchanged index and item is not run again.
- `eval_scores`: one finite score per (output hash, metric key). The key holds the
  metric's configuration (embedding model, judge endpoint and model), so a new judge
  rescores everything, and the same one nothing. Failures are not cached: they are
  tried again on the next run.
- `evaluations`: one row per `llmops eval run`, listed by `llmops eval show`.

Index versions are keys here (strings); an int is stored as its decimal string.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from llmops.errors import UnknownEvaluationError
from llmops.store.schema import EVALUATIONS, OUTPUTS, SCORES
from llmops.store.writer import Writer

_CHUNK = 500  # keys per IN (...) query


class EvalsMixin(Writer):
    """The evaluation tables, written in their own transactions (not the writer's)."""

    # -- outputs -----------------------------------------------------------------
    def eval_outputs(self, chain_hash: str, index_version: str | int,
                     item_hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The cached outputs of these items, by item hash (the missing ones left out)."""
        hashes = list(item_hashes)
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(hashes), _CHUNK):
                q = sa.select(OUTPUTS.c.item_hash, OUTPUTS.c.output).where(
                    OUTPUTS.c.chain_hash == chain_hash,
                    OUTPUTS.c.index_version == str(index_version),
                    OUTPUTS.c.item_hash.in_(hashes[start:start + _CHUNK]))
                out.update({r.item_hash: _json(r.output) for r in conn.execute(q)})
        return out

    def put_eval_output(self, chain_hash: str, index_version: str | int, item_hash: str,
                        output: dict[str, Any]) -> None:
        row = {"chain_hash": chain_hash, "index_version": str(index_version),
               "item_hash": item_hash, "output": output, "created_at": time.time()}
        self._upsert(OUTPUTS, [row], ("chain_hash", "index_version", "item_hash"))

    # -- scores ------------------------------------------------------------------
    def eval_scores(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """The cached scores of these (output hash, metric key) pairs."""
        wanted = set(keys)
        hashes = sorted({h for h, _ in wanted})
        out: dict[tuple[str, str], float] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(hashes), _CHUNK):
                q = sa.select(SCORES.c.output_hash, SCORES.c.metric_key, SCORES.c.value).where(
                    SCORES.c.output_hash.in_(hashes[start:start + _CHUNK]))
                for r in conn.execute(q):
                    if (r.output_hash, r.metric_key) in wanted:
                        out[(r.output_hash, r.metric_key)] = float(r.value)
        return out

    def put_eval_scores(self, rows: list[tuple[str, str, str, float]]) -> None:
        """(output hash, metric key, metric, value) rows."""
        now = time.time()
        self._upsert(SCORES, [{"output_hash": h, "metric_key": k, "metric": m, "value": v,
                               "created_at": now} for h, k, m, v in rows],
                     ("output_hash", "metric_key"))

    def clear_eval_cache(self) -> None:
        """Forget every cached output and score: the next evaluation runs and scores anew."""
        with self.write_engine.begin() as conn:
            conn.execute(OUTPUTS.delete())
            conn.execute(SCORES.delete())

    # -- evaluations ---------------------------------------------------------------
    def add_evaluation(self, row: dict[str, Any]) -> None:
        """One evaluation's row (the `evaluations` table's columns)."""
        if row.get("index_version") is not None:
            row = {**row, "index_version": str(row["index_version"])}
        with self.write_engine.begin() as conn:
            conn.execute(EVALUATIONS.insert().values(**row))

    def list_evaluations(self, *, model: str | None = None, version: int | None = None,
                         dataset_version: str | None = None,
                         limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""
        q = sa.select(EVALUATIONS)
        if model:
            q = q.where(EVALUATIONS.c.model == model)
        if version is not None:
            q = q.where(EVALUATIONS.c.version == version)
        if dataset_version:
            q = q.where(EVALUATIONS.c.dataset_version == dataset_version)
        q = q.order_by(EVALUATIONS.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(q)]
        for r in rows:
            r["summary"] = _json(r["summary"])
        return rows

    def get_evaluation(self, evaluation_id: str) -> dict[str, Any]:
        """One evaluation's row.

        Raises:
            UnknownEvaluationError: no evaluation has this id.
        """
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(EVALUATIONS).where(
                EVALUATIONS.c.id == evaluation_id)).first()
        if r is None:
            raise UnknownEvaluationError(
                f"no evaluation {evaluation_id!r}; `llmops eval show` lists them")
        row = dict(r._mapping)
        row["summary"] = _json(row["summary"])
        return row

    def _upsert(self, table: sa.Table, rows: list[dict[str, Any]], keys: tuple[str, ...]) -> None:
        if not rows:
            return
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert
            stmt = pg_insert(table)
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert
            stmt = sqlite_insert(table)  # type: ignore[assignment]
        update = {c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
        with self.write_engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=update), rows)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
