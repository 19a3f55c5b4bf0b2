"""Where evaluations live: the cache of chain outputs and scores, and the evaluations table.

The tables sit in the request log's database (`store_url`: SQLite by default,
PostgreSQL with the same code), with their own forward-only migrations.

- `eval_outputs`: one chain answer per (chain content hash, index version, item
  hash). An unchanged chain over an unchanged index and item is not run again.
- `eval_scores`: one finite score per (output hash, metric key). The key holds
  the metric's configuration (embedding model, judge endpoint and model), so a
  new judge rescored everything, and the same one nothing. Failures are not
  cached: they are tried again on the next run.
- `evaluations`: one row per `llmops eval run`, listed by `llmops eval show`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from llmops.config import get_settings
from llmops.errors import EvalError
from llmops.store import _engine


def _v1(md: sa.MetaData) -> dict[str, sa.Table]:
    outputs = sa.Table(
        "eval_outputs", md,
        sa.Column("chain_hash", sa.String(64), primary_key=True),
        sa.Column("index_version", sa.String(64), primary_key=True),
        sa.Column("item_hash", sa.String(64), primary_key=True),
        sa.Column("output", sa.JSON, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    scores = sa.Table(
        "eval_scores", md,
        sa.Column("output_hash", sa.String(64), primary_key=True),
        sa.Column("metric_key", sa.String(256), primary_key=True),
        sa.Column("metric", sa.String(64), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    evaluations = sa.Table(
        "evaluations", md,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False, index=True),
        sa.Column("model", sa.String(128), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("dataset", sa.String(256), nullable=False),
        sa.Column("dataset_version", sa.String(32), nullable=False),
        sa.Column("index_version", sa.String(64)),
        sa.Column("n_items", sa.Integer, nullable=False),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("summary", sa.JSON, nullable=False),
        sa.Column("judge", sa.String(256)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("chain_calls", sa.Integer, nullable=False),
        sa.Column("metric_calls", sa.Integer, nullable=False),
    )
    return {"outputs": outputs, "scores": scores, "evaluations": evaluations}


def _m001(conn: Connection) -> None:
    md = sa.MetaData()
    _v1(md)
    md.create_all(conn)


MIGRATIONS: list[Callable[[Connection], None]] = [_m001]
_T = _v1(sa.MetaData())
OUTPUTS, SCORES, EVALUATIONS = _T["outputs"], _T["scores"], _T["evaluations"]
_VERSIONS = sa.Table(
    "eval_schema_migrations", sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("applied_at", sa.Float, nullable=False),
)


class Results:
    """The evaluation tables on one SQLAlchemy URL."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or get_settings().store_url or ""
        self.engine: Engine = _engine(self.url)
        self._migrate()

    def _migrate(self) -> None:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(74510022)"))  # llmops eval
            _VERSIONS.create(conn, checkfirst=True)
            current = int(conn.execute(sa.select(sa.func.max(_VERSIONS.c.version))).scalar() or 0)
            if current > len(MIGRATIONS):
                raise EvalError(f"the evaluation tables are at schema version {current}, newer "
                                f"than this llmops ({len(MIGRATIONS)}); upgrade llmops")
            for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
                step(conn)
                conn.execute(_VERSIONS.insert().values(version=version, applied_at=time.time()))

    def close(self) -> None:
        self.engine.dispose()

    # -- outputs -----------------------------------------------------------------
    def outputs(self, chain_hash: str, index_version: str,
                item_hashes: Iterable[str]) -> dict[str, dict[str, Any]]:
        hashes = list(item_hashes)
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(hashes), 500):
                q = sa.select(OUTPUTS.c.item_hash, OUTPUTS.c.output).where(
                    OUTPUTS.c.chain_hash == chain_hash, OUTPUTS.c.index_version == index_version,
                    OUTPUTS.c.item_hash.in_(hashes[start:start + 500]))
                out.update({r.item_hash: _json(r.output) for r in conn.execute(q)})
        return out

    def put_output(self, chain_hash: str, index_version: str, item_hash: str,
                   output: dict[str, Any]) -> None:
        row = {"chain_hash": chain_hash, "index_version": index_version, "item_hash": item_hash,
               "output": output, "created_at": time.time()}
        self._upsert(OUTPUTS, [row], ("chain_hash", "index_version", "item_hash"))

    # -- scores ------------------------------------------------------------------
    def scores(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], float]:
        wanted = set(keys)
        hashes = sorted({h for h, _ in wanted})
        out: dict[tuple[str, str], float] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(hashes), 500):
                q = sa.select(SCORES.c.output_hash, SCORES.c.metric_key, SCORES.c.value).where(
                    SCORES.c.output_hash.in_(hashes[start:start + 500]))
                for r in conn.execute(q):
                    if (r.output_hash, r.metric_key) in wanted:
                        out[(r.output_hash, r.metric_key)] = float(r.value)
        return out

    def put_scores(self, rows: list[tuple[str, str, str, float]]) -> None:
        """(output hash, metric key, metric, value) rows."""
        now = time.time()
        self._upsert(SCORES, [{"output_hash": h, "metric_key": k, "metric": m, "value": v,
                               "created_at": now} for h, k, m, v in rows],
                     ("output_hash", "metric_key"))

    # -- evaluations ---------------------------------------------------------------
    def add_evaluation(self, row: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(EVALUATIONS.insert().values(**row))

    def evaluations(self, *, model: str | None = None, version: int | None = None,
                    dataset_version: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
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

    def evaluation(self, evaluation_id: str) -> dict[str, Any]:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(EVALUATIONS).where(
                EVALUATIONS.c.id == evaluation_id)).first()
        if r is None:
            raise EvalError(f"no evaluation {evaluation_id!r}; `llmops eval show` lists them")
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
        with self.engine.begin() as conn:
            conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=update), rows)


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
