"""The grouped reads of the dashboard and of monitoring, on SQLite and PostgreSQL: each
number against a count of the rows written, in Python."""

from __future__ import annotations

import math

from llmops.store import Store
from llmops.store.review import QueueFilter, nearest_rank
from tests.store.conftest import row

T0 = 1_800_000_000.0  # a round hour


def _seed(store: Store) -> list[dict[str, object]]:
    written = []
    for i in range(48):
        values = dict(variant="production" if i % 4 else "staging",
                      status=500 if i % 9 == 0 else 200, latency_ms=float((i * 29) % 97),
                      prompt_tokens=i, completion_tokens=2 * i, created_at=T0 + i * 150,
                      answer="I don't know." if i % 5 == 0 else "It is " + "x" * i,
                      sources=[{"id": f"d{i}", "score": (i % 10) / 10}])
        store.log_request(row(f"r{i:02d}", **values))
        written.append({"id": f"r{i:02d}", **values})
    for i in range(0, 48, 3):
        store.add_feedback(f"r{i:02d}", reviewer="ann", rating="up" if i % 2 else "down")
    store.log_request(row("shadow", shadow_of="r01", created_at=T0, latency_ms=9e9))
    return written


def test_serving_summary_matches_the_rows(store: Store) -> None:
    written = _seed(store)
    got = {g["variant"]: g for g in store.serving_summary(since=T0, until=T0 + 86400)}
    for variant in ("production", "staging"):
        mine = [w for w in written if w["variant"] == variant]
        served = [w for w in mine if w["status"] == 200]
        ratings = ["up" if int(str(w["id"])[1:]) % 2 else "down" for w in served
                   if int(str(w["id"])[1:]) % 3 == 0]
        g = got[variant]
        assert (g["requests"], g["errors"]) == (len(mine), len(mine) - len(served))
        assert (g["up"], g["down"]) == (ratings.count("up"), ratings.count("down"))
        lat = sorted(float(w["latency_ms"]) for w in served)  # type: ignore[arg-type]
        assert g["latency_p50_ms"] == nearest_rank(lat, 50)
        assert g["latency_p95_ms"] == nearest_rank(lat, 95)
        assert g["prompt_tokens"] == sum(int(w["prompt_tokens"]) for w in mine)  # type: ignore[call-overload]
    series = store.serving_series(bucket_s=3600, since=T0, until=T0 + 86400)
    assert sum(p["requests"] for p in series) == len(written)
    assert [p["t"] for p in series if p["variant"] == "production"] == [T0, T0 + 3600]


def test_window_metrics_match_the_rows_and_are_written_once(store: Store) -> None:
    written = _seed(store)
    rows = store.window_metrics(window_s=3600, since=T0, until=T0 + 7200, floor=0.35)
    assert {(r["variant"], r["window_start"]) for r in rows} == {
        (v, T0 + h) for v in ("production", "staging") for h in (0, 3600)}
    for r in rows:
        mine = [w for w in written if w["variant"] == r["variant"]
                and r["window_start"] <= float(w["created_at"]) < r["window_start"] + 3600]  # type: ignore[arg-type]
        served = [w for w in mine if w["status"] == 200]
        assert r["requests"] == len(mine)
        assert r["errors"] == len(mine) - len(served)
        assert r["refusals"] == sum(str(w["answer"]).startswith("I don't") for w in served)
        lat = sorted(float(w["latency_ms"]) for w in served)  # type: ignore[arg-type]
        assert r["latency_p99_ms"] == nearest_rank(lat, 99)
        scores = [w["sources"][0]["score"] for w in mine]  # type: ignore[index]
        assert math.isclose(r["top1_mean"], sum(scores) / len(scores))
        assert r["low_similarity"] == sum(s < 0.35 for s in scores)
    assert store.save_windows(rows) == rows
    assert store.save_windows(rows) == []  # a rerun writes nothing new
    assert store.last_window(3600) == T0 + 3600


def test_the_queue_reads_the_stats_index_newest_first(store: Store) -> None:
    _seed(store)
    page = store.review_queue(QueueFilter(since=T0, until=T0 + 1000), limit=3)
    assert [r["id"] for r in page.rows] == ["r06", "r05", "r04"]
    assert page.next_cursor is not None
