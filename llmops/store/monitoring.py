"""Reads and writes of monitoring: metrics per window, drift tests, alerts, trigger runs.

Every metric of a window is computed in the database, grouped by endpoint, variant and
window (set-based: a million rows are a few grouped scans and two sorts, not a Python
loop). A window row is written once, when the window has closed; writing it again is
a no-op, so `llmops monitor run` may run from cron as often as it likes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from llmops.store.engine import driver_params, like_pattern
from llmops.store.requests import row_dict
from llmops.store.schema import ACTIONS, ALERTS, DRIFT, FEEDBACK, REQUESTS, WINDOWS
from llmops.store.writer import Writer

# Answers that decline (case-insensitive substrings); settings may name others.
REFUSALS = ("i don't know", "i do not know", "i cannot", "i can't", "i'm sorry",
            "i am sorry", "not able to answer", "no information")
PERCENTILES = (50, 95, 99)


class MonitoringMixin(Writer):
    def _bucket(self, column: Any, window_s: int) -> Any:
        if self.engine.dialect.name == "sqlite":  # CAST truncates there; it rounds elsewhere
            return sa.cast(column / window_s, sa.Integer)
        return sa.cast(sa.func.floor(column / window_s), sa.BigInteger)

    def _top1(self) -> Any:
        """The best retrieved chunk's score (sources are stored best first)."""
        s = REQUESTS.c.sources
        if self.engine.dialect.name == "sqlite":
            return sa.cast(sa.func.json_extract(s, "$[0].score"), sa.Float)
        return sa.cast(s.op("->")(0).op("->>")("score"), sa.Float)

    def first_request_at(self) -> float | None:
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.min(REQUESTS.c.created_at))).scalar()

    def last_window(self, window_s: int) -> float | None:
        """The start of the newest window already written for this window length."""
        q = sa.select(sa.func.max(WINDOWS.c.window_start)).where(WINDOWS.c.window_s == window_s)
        with self.engine.connect() as conn:
            return conn.execute(q).scalar()

    def window_metrics(self, *, window_s: int, since: float, until: float, floor: float,
                       refusals: Sequence[str] = REFUSALS) -> list[dict[str, Any]]:
        """The metrics of every (endpoint, variant, window) with requests in [since, until).

        Shadows and streams in progress are left out; latency percentiles are of answered
        requests (nearest rank), votes are the current votes on them. One pass over the
        wide rows fills a narrow temporary table (the best chunk's score parsed once, the
        refusal patterns matched once); the counts and both percentile sorts run on it.
        """
        r, f = REQUESTS, FEEDBACK
        sqlite = self.engine.dialect.name == "sqlite"
        conds = [r.c.shadow_of.is_(None), r.c.status != 0, r.c.created_at >= since,
                 r.c.created_at < until]
        answered = r.c.status == 200
        if sqlite:  # LIKE ignores ASCII case there; lower() per pattern would cost a pass each
            refused = sa.or_(*(r.c.answer.like(like_pattern(p), escape="\\") for p in refusals))
        else:
            refused = sa.or_(*(r.c.answer.ilike(like_pattern(p), escape="\\") for p in refusals))
        narrow = sa.select(
            r.c.endpoint, sa.func.coalesce(r.c.variant, "").label("variant"),
            self._bucket(r.c.created_at, window_s).label("b"),
            sa.case((r.c.status >= 400, 1), else_=0).label("err"),
            sa.case((sa.and_(answered, refused), 1), else_=0).label("refused"),
            sa.case((sa.and_(answered, sa.func.length(sa.func.trim(
                sa.func.coalesce(r.c.answer, ""))) == 0), 1), else_=0).label("empty"),
            r.c.prompt_tokens, r.c.completion_tokens,
            sa.case((answered, r.c.latency_ms)).label("latency"),
            self._top1().label("top1"),
            sa.case((answered, sa.func.length(r.c.answer))).label("chars"),
        ).where(*conds)
        t = sa.table("llmops_monitor_rows", *(sa.column(c) for c in (
            "endpoint", "variant", "b", "err", "refused", "empty", "prompt_tokens",
            "completion_tokens", "latency", "top1", "chars")))
        key = (t.c.endpoint, t.c.variant, t.c.b)
        groups = sa.select(
            *key, sa.func.count().label("requests"), sa.func.sum(t.c.err).label("errors"),
            sa.func.sum(t.c.refused).label("refusals"), sa.func.sum(t.c.empty).label("empty"),
            sa.func.coalesce(sa.func.sum(t.c.prompt_tokens), 0).label("prompt_tokens"),
            sa.func.coalesce(sa.func.sum(t.c.completion_tokens), 0).label("completion_tokens"),
            sa.func.avg(t.c.top1).label("top1_mean"),
            sa.func.sum(sa.case((t.c.top1 < floor, 1), else_=0)).label("low_similarity"),
            sa.func.count(t.c.top1).label("retrieved"), sa.func.avg(t.c.chars).label("chars"),
            sa.func.count(t.c.latency).label("timed"),
        ).group_by(*key)
        b = self._bucket(r.c.created_at, window_s)
        variant = sa.func.coalesce(r.c.variant, "")  # one object: one bound parameter
        votes = (
            sa.select(r.c.endpoint, variant.label("variant"), b.label("b"),
                      sa.func.count().label("votes"),
                      sa.func.sum(sa.case((f.c.rating == "up", 1), else_=0)).label("up"))
            .select_from(f.join(r, r.c.id == f.c.request_id))
            .where(*conds, answered).group_by(r.c.endpoint, variant, b))
        out: dict[tuple[str, str, int], dict[str, Any]] = {}
        now = time.time()
        with self.engine.connect() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS llmops_monitor_rows")
            created = narrow.compile(conn)
            conn.exec_driver_sql(f"CREATE TEMPORARY TABLE llmops_monitor_rows AS {created}",
                                 driver_params(created))
            try:
                for g in conn.execute(groups):
                    out[(g.endpoint, g.variant, int(g.b))] = {
                        "endpoint": g.endpoint, "variant": g.variant, "window_s": window_s,
                        "window_start": float(int(g.b) * window_s), "requests": int(g.requests),
                        "errors": int(g.errors or 0), "refusals": int(g.refusals or 0),
                        "empty": int(g.empty or 0), "prompt_tokens": int(g.prompt_tokens),
                        "completion_tokens": int(g.completion_tokens), "votes": 0, "up": 0,
                        "top1_mean": None if g.top1_mean is None else float(g.top1_mean),
                        "top1_p10": None, "low_similarity": int(g.low_similarity or 0),
                        "retrieved": int(g.retrieved),
                        "answer_chars_mean": None if g.chars is None else float(g.chars),
                        "latency_p50_ms": None, "latency_p95_ms": None, "latency_p99_ms": None,
                        "computed_at": now, "_timed": int(g.timed)}
                for v in conn.execute(votes):
                    row = out.get((v.endpoint, v.variant, int(v.b)))
                    if row is not None:
                        row.update(votes=int(v.votes), up=int(v.up or 0))
                counts = {(g["endpoint"], g["variant"], int(g["window_start"] // window_s)):
                          (g.pop("_timed"), g["retrieved"]) for g in out.values()}
                for k, ranks in self._ranks(conn, t, "latency", PERCENTILES,
                                            {k: c[0] for k, c in counts.items()}).items():
                    out[k].update({f"latency_p{p}_ms": v for p, v in ranks.items()})
                for k, ranks in self._ranks(conn, t, "top1", (10,),
                                            {k: c[1] for k, c in counts.items()}).items():
                    out[k]["top1_p10"] = ranks.get(10)
            finally:
                conn.exec_driver_sql("DROP TABLE IF EXISTS llmops_monitor_rows")
                conn.commit()
        return sorted(out.values(), key=lambda x: (x["window_start"], x["endpoint"],
                                                   x["variant"]))

    def _ranks(self, conn: sa.Connection, t: Any, name: str, ps: Sequence[int],
               counts: dict[tuple[str, str, int], int],
               ) -> dict[tuple[str, str, int], dict[int, float]]:
        """Nearest-rank percentiles of column `name` of `t` per (endpoint, variant, window):
        one index over the temporary rows (a sort), then one seek per group and rank."""
        conn.exec_driver_sql(f"CREATE INDEX llmops_monitor_rows_{name} ON llmops_monitor_rows "
                             f"(endpoint, variant, b, {name})")
        col = t.c[name]
        q = (sa.select(col).where(t.c.endpoint == sa.bindparam("e"),
                                  t.c.variant == sa.bindparam("v"), t.c.b == sa.bindparam("b"),
                                  col.is_not(None))
             .order_by(col).limit(1).offset(sa.bindparam("k")))
        out: dict[tuple[str, str, int], dict[int, float]] = {}
        for (e, v, b), n in counts.items():
            for p in ps if n else ():
                k = max(1, -(-n * p // 100)) - 1
                got = conn.execute(q, {"e": e, "v": v, "b": b, "k": k}).scalar_one()
                out.setdefault((e, v, b), {})[p] = float(got)
        return out

    def save_windows(self, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Write the window rows not written before; the rows this call wrote.

        Two runs at once write each window once: the check and the insert are one write
        transaction (SQLite's lock serializes them; on PostgreSQL the primary key refuses
        the second insert, and that run writes, and reports, nothing).
        """
        if not rows:
            return []
        w = WINDOWS
        starts = sorted({x["window_start"] for x in rows})
        try:
            with self.write_engine.begin() as conn:
                have = {tuple(k) for k in conn.execute(
                    sa.select(w.c.endpoint, w.c.variant, w.c.window_s, w.c.window_start).where(
                        w.c.window_s == rows[0]["window_s"], w.c.window_start >= starts[0],
                        w.c.window_start <= starts[-1]))}
                new = [x for x in rows if (x["endpoint"], x["variant"], x["window_s"],
                                           x["window_start"]) not in have]
                for i in range(0, len(new), 500):
                    conn.execute(w.insert(), new[i:i + 500])
        except sa.exc.IntegrityError:
            return []  # another run wrote these windows first
        return new

    def list_windows(self, *, window_s: int, endpoint: str | None = None,
                     since: float | None = None) -> list[dict[str, Any]]:
        q = sa.select(WINDOWS).where(WINDOWS.c.window_s == window_s)
        if endpoint is not None:
            q = q.where(WINDOWS.c.endpoint == endpoint)
        if since is not None:
            q = q.where(WINDOWS.c.window_start >= since)
        q = q.order_by(WINDOWS.c.window_start, WINDOWS.c.endpoint, WINDOWS.c.variant)
        with self.engine.connect() as conn:
            return [row_dict(x) for x in conn.execute(q)]

    # -- drift ---------------------------------------------------------------------
    def questions(self, *, endpoint: str, since: float, until: float,
                  limit: int) -> list[dict[str, Any]]:
        """Up to `limit` answered requests of the window (newest first): id, messages,
        answer and the best chunk's score, for drift tests."""
        r = REQUESTS
        q = (sa.select(r.c.id, r.c.messages, r.c.answer, self._top1().label("top1"))
             .where(r.c.endpoint == endpoint, r.c.shadow_of.is_(None), r.c.status == 200,
                    r.c.created_at >= since, r.c.created_at < until)
             .order_by(r.c.created_at.desc()).limit(limit))
        with self.engine.connect() as conn:
            return [row_dict(x) for x in conn.execute(q)]

    def save_drift(self, row: dict[str, Any]) -> bool:
        """Write a drift test's result once per (endpoint, window, kind); whether it was new."""
        d = DRIFT
        with self.write_engine.begin() as conn:
            exists = conn.execute(sa.select(d.c.kind).where(
                d.c.endpoint == row["endpoint"], d.c.window_s == row["window_s"],
                d.c.window_start == row["window_start"], d.c.kind == row["kind"])).first()
            if exists:
                return False
            conn.execute(d.insert().values(**row))
        return True

    def list_drift(self, *, window_s: int, endpoint: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(DRIFT).where(DRIFT.c.window_s == window_s)
        if endpoint is not None:
            q = q.where(DRIFT.c.endpoint == endpoint)
        with self.engine.connect() as conn:
            return [row_dict(x) for x in conn.execute(q.order_by(DRIFT.c.window_start))]

    # -- alerts and trigger runs ---------------------------------------------------
    def open_alert(self, **values: Any) -> int:
        with self.write_engine.begin() as conn:
            key = conn.execute(ALERTS.insert().values(**values)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def resolve_alert(self, alert_id: int, at: float) -> None:
        with self.write_engine.begin() as conn:
            conn.execute(ALERTS.update().where(ALERTS.c.id == alert_id).values(resolved_at=at))

    def list_alerts(self, *, open_only: bool = False) -> list[dict[str, Any]]:
        q = sa.select(ALERTS).order_by(ALERTS.c.id)
        if open_only:
            q = q.where(ALERTS.c.resolved_at.is_(None))
        with self.engine.connect() as conn:
            return [row_dict(x) for x in conn.execute(q)]

    def record_action(self, **values: Any) -> int:
        with self.write_engine.begin() as conn:
            key = conn.execute(ACTIONS.insert().values(**values)).inserted_primary_key
        assert key is not None
        return int(key[0])

    def finish_action(self, action_id: int, *, status: str, detail: str) -> None:
        with self.write_engine.begin() as conn:
            conn.execute(ACTIONS.update().where(ACTIONS.c.id == action_id).values(
                status=status, detail=detail[:20_000], finished_at=time.time()))

    def list_actions(self, trigger: str | None = None) -> list[dict[str, Any]]:
        q = sa.select(ACTIONS).order_by(ACTIONS.c.id)
        if trigger is not None:
            q = q.where(ACTIONS.c.trigger == trigger)
        with self.engine.connect() as conn:
            return [row_dict(x) for x in conn.execute(q)]

