"""`llmops monitor run` over a million request rows, against the same metrics row by row.

In a temporary folder, 1,000,000 request rows (2 endpoints, production/staging 90/10, over
the 7 days ending an hour ago, ~2% status 500, ~2% "I don't know.", a question, a ~300
character answer, 4 sources best first) and 200,000 votes on distinct answered requests,
written in time order straight into the tables (SQLAlchemy Core bulk inserts). Arms:
- llmops: `llmops.monitor.run.run`, `window: 1h`, no embedder, no tracker: the first run
  (every hourly window, computed in the database by `Store.window_metrics`), a rerun at the
  same time (must write nothing), and a run an hour later with one more hour of rows;
- baseline: the same metrics row by row in Python: the range's rows through the driver,
  one loop per (endpoint, variant, hour) (percentiles by sorting, the best source's score
  parsed from the JSON), votes joined through a dict. Both must agree on every metric.
For context, one query-drift test as cron runs it per endpoint and window: 2 x 200
questions read, embedded by the installed embedding model (warm), the MMD test with 999
permutations. Wall and CPU seconds are printed (CPU time moves less on a shared machine).

Goal: the first run over 1,000,000 rows finishes in under 60 s. Exit status 1 if missed.

Run: `python benchmarks/monitor.py [--rows 1000000] [--votes 200000]`
"""

from __future__ import annotations

import argparse
import gc
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from llmops.monitor.config import MonitorConfig
from llmops.monitor.drift import mmd_test, question_of
from llmops.monitor.run import embedder, run
from llmops.store import REFUSALS, Store
from llmops.store.schema import FEEDBACK, REQUESTS

GOAL_S = 60.0
W = 3600
BATCH = 10_000
TOPICS = ("a list", "a dictionary", "a generator", "a context manager", "a dataclass",
          "an enum", "a decorator", "a coroutine", "a thread pool", "a regular expression")
VERBS = ("sort", "copy", "test", "type-annotate", "serialize", "profile", "subclass", "cache")
FORMS = ("How do I {} {} in Python?", "What is the fastest way to {} {}?",
         "Can I {} {} without a third-party package?", "Why does it fail when I {} {}?")
SENTENCES = (
    "The documentation describes this in the section on the data model.",
    "You can do it with a single call to the standard library, no package needed.",
    "Keep in mind that the operation is not atomic, so guard it with a lock.",
    "The second source shows a short example that runs as is on Python 3.11.",
    "Prefer the built-in over a hand-written loop: it is faster and clearer.",
    "If the input may be empty, check for that first, or pass a default value.",
    "This changed in Python 3.8; older versions need the backport from PyPI.",
)


def _pools(g: np.random.Generator) -> tuple[list[str], list[str], list[list[dict]]]:
    questions = [f.format(v, t) for f in FORMS for v in VERBS for t in TOPICS]
    answers = [" ".join(g.choice(SENTENCES, 4, replace=False)) for _ in range(500)]
    sources = [[{"id": f"doc{g.integers(5000)}#c{g.integers(40)}", "title": f"Python docs: {t}",
                 "score": round(float(s), 3), "snippet": str(g.choice(SENTENCES))}
                for s, t in zip(sorted(g.uniform(0.25, 0.95, 4), reverse=True),
                                g.choice(TOPICS, 4), strict=True)] for _ in range(500)]
    return questions, answers, sources


def _insert(store: Store, g: np.random.Generator, n: int, t0: float, t1: float
            ) -> list[tuple[str, float]]:
    """`n` request rows created in [t0, t1), in time order; the answered (id, time)s."""
    questions, answers, sources = _pools(g)
    at = np.sort(g.uniform(t0, t1, n)).tolist()
    cols = [g.random(n).tolist() for _ in range(4)]  # endpoint, variant, status, refusal
    lat, pt, ct = (g.lognormal(6.7, 0.4, n).tolist(), g.integers(300, 900, n).tolist(),
                   g.integers(40, 220, n).tolist())
    pick = g.integers(0, 500, (2, n)).tolist()
    qs = g.integers(0, len(questions), n).tolist()
    ids = g.bytes(12 * n).hex()
    answered = []
    for lo in range(0, n, BATCH):
        rows = []
        for i in range(lo, min(lo + BATCH, n)):
            ok, rid = cols[2][i] < 0.98, f"chatcmpl-{ids[24 * i:24 * i + 24]}"
            ep = "rag-qa" if cols[0][i] < 0.6 else "support"
            rows.append({
                "id": rid, "created_at": at[i], "endpoint": ep, "chain": f"chain.{ep}",
                "variant": "production" if cols[1][i] < 0.9 else "staging",
                "shadow_of": None, "stream": False, "status": 200 if ok else 500,
                "messages": [{"role": "user", "content": questions[qs[i]]}],
                "answer": (("I don't know." if cols[3][i] < 0.02 else answers[pick[0][i]])
                           if ok else None),
                "sources": sources[pick[1][i]] if ok else None, "lineage": None,
                "latency_ms": lat[i] if ok else 30_000.0, "prompt_tokens": pt[i],
                "completion_tokens": ct[i] if ok else None,
                "error": None if ok else "upstream answered 500"})
            if ok:
                answered.append((rid, at[i]))
        with store.write_engine.begin() as conn:
            conn.execute(REQUESTS.insert(), rows)
    return answered


def seed(url: str, g: np.random.Generator, n_rows: int, n_votes: int, now: float) -> float:
    """The log of the 7 days ending an hour ago, and the votes; the seconds it took."""
    store, t0 = Store(url), time.perf_counter()
    answered = _insert(store, g, n_rows, now - 3600 - 7 * 86400, now - 3600)
    t1 = time.perf_counter()
    up, late = g.random(n_votes).tolist(), g.uniform(60, 86400, n_votes).tolist()
    votes = [{"request_id": answered[j][0], "reviewer": f"reviewer{j % 5}", "key_id": None,
              "rating": "up" if up[k] < 0.75 else "down", "comment": None, "votes": 1,
              "created_at": min(now, answered[j][1] + late[k]),
              "updated_at": min(now, answered[j][1] + late[k])}
             for k, j in enumerate(g.choice(len(answered), n_votes, replace=False).tolist())]
    for lo in range(0, n_votes, BATCH):
        with store.write_engine.begin() as conn:
            conn.execute(FEEDBACK.insert(), votes[lo:lo + BATCH])
    store.close()
    t2 = time.perf_counter()
    print(f"seeded {n_rows:,} rows in {t1 - t0:.1f} s, {n_votes:,} votes in {t2 - t1:.1f} s",
          flush=True)
    return t2 - t0


def _rank(xs: list[float], p: int) -> float | None:
    xs.sort()
    return float(xs[max(1, -(-len(xs) * p // 100)) - 1]) if xs else None


def baseline(store: Store, since: float, until: float, floor: float) -> dict[tuple, dict]:
    """The window metrics row by row in Python: the rows through the driver, one loop."""
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        votes: dict[str, list[int]] = {}
        for rid, rating in cur.execute("SELECT request_id, rating FROM feedback"):
            v = votes.setdefault(rid, [0, 0])
            v[0] += 1
            v[1] += rating == "up"
        out: dict[tuple, dict] = {}
        for rid, ep, var, at, status, lat, pt, ct, answer, sources in cur.execute(
                "SELECT id, endpoint, variant, created_at, status, latency_ms, prompt_tokens,"
                " completion_tokens, answer, sources FROM request_log WHERE shadow_of IS NULL"
                " AND status != 0 AND created_at >= ? AND created_at < ?", (since, until)):
            key = (ep, var or "", int(at // W))
            m = out.get(key)
            if m is None:
                m = out[key] = {"requests": 0, "errors": 0, "refusals": 0, "empty": 0,
                                "prompt_tokens": 0, "completion_tokens": 0, "votes": 0,
                                "up": 0, "low_similarity": 0, "chars": [], "lat": [],
                                "top1": []}
            m["requests"], m["errors"] = m["requests"] + 1, m["errors"] + (status >= 400)
            m["prompt_tokens"] += pt or 0
            m["completion_tokens"] += ct or 0
            found = orjson.loads(sources) if sources else None  # JSON null when none
            top1 = found[0].get("score") if found else None
            if top1 is not None:
                m["top1"].append(top1)
                m["low_similarity"] += top1 < floor
            if status == 200:
                text = (answer or "").lower()
                m["refusals"] += any(p in text for p in REFUSALS)
                m["empty"] += not text.strip()
                if answer is not None:
                    m["chars"].append(len(answer))
                if lat is not None:
                    m["lat"].append(lat)
                if rid in votes:
                    m["votes"] += votes[rid][0]
                    m["up"] += votes[rid][1]
        for m in out.values():
            top1, chars, lat = m.pop("top1"), m.pop("chars"), m.pop("lat")
            m.update(retrieved=len(top1), top1_mean=sum(top1) / len(top1) if top1 else None,
                     answer_chars_mean=sum(chars) / len(chars) if chars else None,
                     top1_p10=_rank(top1, 10), **{f"latency_p{p}_ms": _rank(lat, p)
                                                  for p in (50, 95, 99)})
        return out
    finally:
        raw.close()


def _differences(ours: list[dict[str, Any]], theirs: dict[tuple, dict]) -> list[str]:
    bad = [] if len(ours) == len(theirs) else [f"{len(ours)} rows against {len(theirs)}"]
    for r in ours:
        b = theirs.get((r["endpoint"], r["variant"], int(r["window_start"] // W)), {})
        bad += [f"{r['endpoint']}/{r['variant']}@{r['window_start']:.0f} {k}: {r[k]} != "
                f"{b.get(k)}" for k in b if not (r[k] == b[k] or (
                    r[k] is not None and b[k] is not None and math.isclose(r[k], b[k])))]
    return bad


def _timed(fn: Any) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def drift_cost(store: Store, cfg: MonitorConfig, ws: float, permutations: int) -> float:
    """One query-drift test as cron runs it per endpoint and window: the questions of the
    window and of the reference windows read, embedded (warm) and tested."""
    d, embed = cfg.drift, embedder()
    (cur, ref), read_s, _ = _timed(lambda: [store.questions(
        endpoint="rag-qa", since=s, until=u, limit=d.sample)
        for s, u in ((ws, ws + W), (ws - d.reference_windows * W, ws))])
    texts = [question_of(r["messages"]) for r in ref + cur]
    embed(texts)  # loads the model
    vectors, embed_s, _ = _timed(lambda: embed(texts))
    _, mmd_s, _ = _timed(lambda: mmd_test(vectors[:len(ref)], vectors[len(ref):],
                                          permutations=permutations, seed=0))
    print(f"drift test ({len(texts)} questions, {permutations} permutations): read "
          f"{read_s:.2f} s, embed {embed_s:.2f} s, MMD {mmd_s:.2f} s", flush=True)
    return read_s + embed_s + mmd_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--votes", type=int, default=200_000)
    ap.add_argument("--permutations", type=int, default=999)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="llmops-bench-monitor-"))
    g, now, cfg = np.random.default_rng(7), time.time(), MonitorConfig.from_raw({"window": "1h"})
    try:
        seed_s = seed(f"sqlite:///{tmp}/log.db", g, args.rows, args.votes, now)
        size = sum(f.stat().st_size for f in tmp.iterdir()) / 2**30
        store = Store(f"sqlite:///{tmp}/log.db")

        def monitor(at: float) -> tuple[Any, float, float]:
            return _timed(lambda: run(store, cfg, now=at, embed=None, tracker=None))

        first, ours_s, ours_cpu = monitor(now)
        starts, total = {r["window_start"] for r in first.windows}, sum(
            r["requests"] for r in first.windows)
        print(f"llmops first run: {ours_s:.1f} s ({ours_cpu:.1f} s CPU), {len(starts)} windows, "
              f"{len(first.windows)} rows, {total:,} requests", flush=True)
        hours = math.floor((now - 3600) / W) - math.floor((now - 3600 - 7 * 86400) / W) + 1
        assert total == args.rows and len(starts) == hours and len(first.windows) == 4 * hours
        assert sum(r["votes"] for r in first.windows) == args.votes
        written = len(store.list_windows(window_s=W))
        again, rerun_s, _ = monitor(now)
        assert not again.windows and len(store.list_windows(window_s=W)) == written
        end = math.floor(now / W) * W
        _insert(store, g, args.rows // 168, end, end + W)
        inc, inc_s, _ = monitor(now + W)
        assert {r["window_start"] for r in inc.windows} == {float(end)}, "not one new window"
        print(f"rerun {rerun_s:.3f} s (wrote nothing); incremental {inc_s:.2f} s "
              f"({len(inc.windows)} rows)", flush=True)

        # the part the baseline does too: the metrics alone (run() adds answer drift per
        # endpoint and window, alert rules and the writes)
        _, metrics_s, _ = _timed(lambda: store.window_metrics(
            window_s=W, since=min(starts), until=max(starts) + W, floor=cfg.similarity_floor))
        theirs, base_s, base_cpu = _timed(lambda: baseline(
            store, min(starts), max(starts) + W, cfg.similarity_floor))
        bad = _differences(first.windows, theirs)
        print(f"baseline: {base_s:.1f} s ({base_cpu:.1f} s CPU); "
              f"{'agrees on every metric of every window' if not bad else bad[:5]}", flush=True)
        del theirs  # a big heap makes every full GC pass slow
        gc.collect()
        drift_s = drift_cost(store, cfg, max(starts), args.permutations)
        store.close()
        print(f"""
| measure | value |
|---|---:|
| seeding, rows + votes (s) | {seed_s:.1f} |
| database (GiB) | {size:.2f} |
| llmops first run (s) | {ours_s:.1f} ({ours_cpu:.1f} CPU) |
| of which the window metrics alone (s) | {metrics_s:.1f} |
| llmops rerun, same hour (s) | {rerun_s:.3f} |
| llmops incremental run, 1 new window (s) | {inc_s:.2f} |
| baseline row by row (s) | {base_s:.1f} ({base_cpu:.1f} CPU) |
| ratio baseline / llmops metrics | {base_s / metrics_s:.2f} |
| drift test per window per endpoint (s) | {drift_s:.2f} |

goal: first run < {GOAL_S:.0f} s: {ours_s:.1f} s, {'met' if ours_s < GOAL_S else 'MISSED'}""")
        return 0 if ours_s < GOAL_S and not bad else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
