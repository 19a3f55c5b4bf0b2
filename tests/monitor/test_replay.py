"""Replays of a synthetic request log through `llmops monitor run`, hour by hour as cron
would run it: each injected incident fires exactly its alert and its trigger once, a
steady log fires nothing, cool-downs hold, and the webhook gets signed events.

The questions are embedded by the real embedding model (all-MiniLM-L6-v2).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from llmops.monitor.config import MonitorConfig
from llmops.monitor.run import Embed, embedder, run
from llmops.store import RequestRow, Store

T0 = 1_800_000_000.0 - 1_800_000_000.0 % 3600  # a round hour
HOURS = 12
PYTHON = ["How do I {} a list in Python?", "What does {} do with a dictionary?",
          "Why does my {} loop over a file fail?", "Can {} work on a tuple of strings?",
          "How is {} used with generators?", "What is the cost of {} on a set?"]
PY_WORDS = ["sort", "reverse", "enumerate", "zip", "slice", "copy", "map", "filter", "sum",
            "iterate", "append", "extend"]
COOKING = ["How long should I {} a chicken breast?", "What temperature to {} sourdough?",
           "Can I {} pasta the day before?", "How do I {} onions without tears?",
           "What wine goes with {} salmon?", "How much salt to {} the soup?"]
FOOD_WORDS = ["roast", "bake", "boil", "grill", "poach", "braise", "fry", "steam", "season",
              "marinate"]


@pytest.fixture(scope="module")
def embed() -> Embed:
    return embedder()


def write_log(store: Store, *, spike: int | None = None, unhappy: tuple[int, ...] = (),
              topics: tuple[int, ...] = (), seed: int = 3) -> None:
    """HOURS hourly windows of 60 requests; incidents injected in the hours named."""
    rng = random.Random(seed)
    for h in range(HOURS):
        rows = []
        for i in range(60):
            shifted = h in topics
            template = rng.choice(COOKING if shifted else PYTHON)
            question = template.format(rng.choice(FOOD_WORDS if shifted else PY_WORDS))
            latency = rng.gauss(2500 if h == spike else 300, 30)
            rid = f"chatcmpl-{h:02d}{i:03d}"
            rows.append(RequestRow(
                id=rid, endpoint="rag-qa", variant="production", status=200,
                created_at=T0 + h * 3600 + i * 55, latency_ms=latency,
                prompt_tokens=100, completion_tokens=40,
                messages=[{"role": "user", "content": question}],
                answer="Use sorted(items) for a new list." if not shifted else "I don't know.",
                sources=[{"id": "doc#1", "score": rng.uniform(0.1, 0.3) if shifted
                          else rng.uniform(0.5, 0.8)}]))
        for r in rows:
            store.log_request(r)
        for r in rows[:40]:
            up = rng.random() < (0.3 if h in unhappy else 0.85)
            store.add_feedback(r.id, reviewer="ann", rating="up" if up else "down")


def config(tmp: Path, **extra: Any) -> MonitorConfig:
    marker = tmp / "ran.txt"
    touch = [sys.executable, "-c", f"open({str(marker)!r}, 'a').write('x')"]
    return MonitorConfig.from_raw({
        "window": "1h", "similarity_floor": 0.35,
        "drift": {"reference_windows": 4, "sample": 120, "permutations": 999,
                  "min_questions": 30},
        "alerts": [
            {"name": "slow", "metric": "latency_p95_ms", "above": 1500, "trigger": "reindex"},
            {"name": "unhappy", "metric": "thumbs_up_rate", "below": 0.6, "min_votes": 20,
             "trigger": "regate"},
            {"name": "topics", "metric": "query_drift_p", "below": 0.002,
             "trigger": "retrain"},
        ],
        "triggers": {
            "reindex": {"action": "command", "argv": touch, "cooldown": "6h"},
            "regate": {"action": "eval-gate", "chain": "rag_qa", "cooldown": "1d",
                       "dataset": "eval/qa_smoke.jsonl",
                       "dry_run": True},
            "retrain": {"action": "command", "argv": touch, "cooldown": "1d"},
        },
        **extra})


def cron(store: Store, cfg: MonitorConfig, embed: Embed) -> list[Any]:
    """`llmops monitor run` a minute past every hour, and once more (a no-op)."""
    reports = [run(store, cfg, now=T0 + h * 3600 + 60, embed=embed)
               for h in range(1, HOURS + 1)]
    again = run(store, cfg, now=T0 + HOURS * 3600 + 120, embed=embed)
    assert again.windows == [] and again.events == []  # idempotent within a window
    return reports


def test_each_incident_fires_exactly_its_alert_and_trigger_once(
        tmp_path: Path, embed: Embed) -> None:
    store = Store(f"sqlite:///{tmp_path / 'log.db'}")
    write_log(store, spike=5, unhappy=(7, 8), topics=(10, 11))
    cron(store, config(tmp_path), embed)

    alerts = store.list_alerts()
    assert [(a["rule"], a["window_start"]) for a in alerts] == [
        ("slow", T0 + 5 * 3600), ("unhappy", T0 + 7 * 3600), ("topics", T0 + 10 * 3600)]
    slow, unhappy, topics = alerts
    assert slow["resolved_at"] == T0 + 7 * 3600  # the next window is back to normal
    assert unhappy["resolved_at"] == T0 + 10 * 3600  # two bad windows, one alert
    assert topics["resolved_at"] is None  # still drifting at the end
    assert slow["value"] > 1500 and unhappy["value"] < 0.6 and topics["value"] < 0.002

    actions = {a["trigger"]: a for a in store.list_actions()}
    assert len(store.list_actions()) == 3
    assert actions["reindex"]["status"] == "done"
    assert actions["reindex"]["alert_id"] == slow["id"]
    assert actions["regate"]["status"] == "dry-run"
    assert "would run" in actions["regate"]["detail"] and "gate chain.rag_qa" in (
        actions["regate"]["detail"])
    assert actions["retrain"]["status"] == "done"
    assert (tmp_path / "ran.txt").read_text() == "xx"  # the two commands ran, once each

    drift = store.list_drift(window_s=3600)
    moved = next(d for d in drift if d["window_start"] == T0 + 10 * 3600)
    lowest = moved["detail"]["unanswerable"]
    assert lowest["share"] == 1.0 and lowest["lowest"][0]["score"] < 0.35
    windows = store.list_windows(window_s=3600)
    assert len(windows) == HOURS
    assert {w["refusals"] for w in windows if w["window_start"] >= T0 + 10 * 3600} == {60}


def test_a_dry_run_reports_what_a_run_would_do_and_changes_nothing(
        tmp_path: Path, embed: Embed) -> None:
    store = Store(f"sqlite:///{tmp_path / 'log.db'}")
    write_log(store, spike=5, unhappy=(7, 8), topics=(10, 11))
    cfg = config(tmp_path)
    dry = run(store, cfg, now=T0 + HOURS * 3600 + 60, embed=embed, dry_run=True)
    assert store.list_windows(window_s=3600) == [] and store.list_alerts() == []
    assert store.list_actions() == [] and store.list_drift(window_s=3600) == []
    assert not (tmp_path / "ran.txt").exists()  # no trigger started
    real = run(store, cfg, now=T0 + HOURS * 3600 + 60, embed=embed)  # all windows at once
    assert len(dry.windows) == len(real.windows) == HOURS
    assert [(e.kind, e.alert["rule"], e.alert["window_start"]) for e in dry.events] == [
        (e.kind, e.alert["rule"], e.alert["window_start"]) for e in real.events]
    assert [(a["trigger"], a["status"]) for a in dry.actions] == [
        (a["trigger"], "would fire") for a in real.actions]


def test_a_steady_log_fires_nothing(tmp_path: Path, embed: Embed) -> None:
    store = Store(f"sqlite:///{tmp_path / 'log.db'}")
    write_log(store)
    reports = cron(store, config(tmp_path), embed)
    assert store.list_alerts() == [] and store.list_actions() == []
    assert sum(len(r.drift) for r in reports) == HOURS - 1  # every window after the first
    assert min(d["p_value"] for r in reports for d in r.drift) > 0.002


def test_a_second_incident_inside_the_cool_down_alerts_but_does_not_run_again(
        tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'log.db'}")
    write_log(store, spike=2)
    write_log_spike_again(store, hour=5)
    cfg = config(tmp_path)
    for h in range(1, HOURS + 1):
        run(store, cfg, now=T0 + h * 3600 + 60)
    assert [a["window_start"] for a in store.list_alerts()] == [T0 + 2 * 3600, T0 + 5 * 3600]
    assert [a["status"] for a in store.list_actions()] == ["done", "cooling"]
    assert "cooling down" in store.list_actions()[1]["detail"]
    assert (tmp_path / "ran.txt").read_text() == "x"


def write_log_spike_again(store: Store, hour: int) -> None:
    for i in range(30):
        store.log_request(RequestRow(
            id=f"chatcmpl-late{i}", endpoint="rag-qa", variant="production", status=200,
            created_at=T0 + hour * 3600 + 100 + i, latency_ms=9000.0,
            messages=[{"role": "user", "content": "slow?"}], answer="yes"))


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        _Hook.received.append((dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    _Hook.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    server.shutdown()


def test_alert_events_reach_the_webhook_signed(tmp_path: Path, hook: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    store = Store(f"sqlite:///{tmp_path / 'log.db'}")
    write_log(store, spike=3)
    cfg = config(tmp_path, webhook={"url": hook, "secret_env": "HOOK_SECRET"})
    for h in range(1, 7):
        run(store, cfg, now=T0 + h * 3600 + 60)
    events = []
    for headers, body in _Hook.received:
        mac = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert headers["x-llmops-signature"] == f"sha256={mac}"
        events.append(json.loads(body))
    assert [(e["event"], e["alert"]["rule"]) for e in events] == [
        ("opened", "slow"), ("resolved", "slow")]


def test_answer_drift_fires_without_an_embedding_model(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'log.db'}")
    write_log(store, topics=(10, 11))  # from hour 10 every answer is a refusal
    cfg = MonitorConfig.from_raw({
        "window": "1h", "drift": {"reference_windows": 4, "min_questions": 30},
        "alerts": [{"name": "refusing", "metric": "refusal_drift_p", "below": 0.001},
                   {"name": "shorter", "metric": "answer_length_drift_p", "below": 0.001}]})
    for h in range(1, HOURS + 1):
        run(store, cfg, now=T0 + h * 3600 + 60)  # no embedder: the query test is skipped
    assert sorted((a["rule"], a["window_start"]) for a in store.list_alerts()) == [
        ("refusing", T0 + 10 * 3600), ("shorter", T0 + 10 * 3600)]
    drift = store.list_drift(window_s=3600)
    assert all(d["p_value"] is None for d in drift)  # no query test without a model
    assert drift[-1]["detail"]["answers"]["refusal_rate"][1] == 1.0


@pytest.mark.parametrize("store_url", ["sqlite", "postgresql"], indirect=True)
def test_two_runs_at_once_write_each_window_and_open_each_alert_once(
        store_url: str, tmp_path: Path) -> None:
    store = Store(store_url)
    write_log(store, spike=4)
    cfg = config(tmp_path)
    reports: list[Any] = []
    runs = [threading.Thread(target=lambda: reports.append(run(
        Store(store_url), cfg, now=T0 + HOURS * 3600 + 60))) for _ in range(2)]
    for t in runs:
        t.start()
    for t in runs:
        t.join()
    assert sorted(len(r.windows) for r in reports) == [0, HOURS]
    assert [a["rule"] for a in store.list_alerts()] == ["slow"]
    assert [a["status"] for a in store.list_actions()] == ["done"]
