"""`llmops monitor run | report | alerts` on the project's settings and store."""

from __future__ import annotations

import time
from pathlib import Path

from llmops.registry import Tracking
from llmops.store import RequestRow, Store
from tests.cli_helpers import cli


def test_run_writes_windows_once_logs_them_to_mlflow_and_reports(home: Path,
                                                                 tmp_path: Path) -> None:
    store = Store.open()
    start = (time.time() // 3600 - 3) * 3600
    for i in range(90):
        store.log_request(RequestRow(
            id=f"chatcmpl-{i}", endpoint="rag-qa", variant="production", status=200,
            created_at=start + i * 100, latency_ms=9000.0 if i < 30 else 100.0,
            messages=[{"role": "user", "content": f"q{i}"}], answer="fine",
            sources=[{"id": "d", "score": 0.6}]))
    store.close()
    first = cli("monitor", "run", "--no-drift", "--json")
    assert first.exit_code == 0, first.stderr
    body = first.json()
    assert sum(w["requests"] for w in body["windows"]) == 90 and len(body["windows"]) == 3
    assert [(e["kind"], e["rule"]) for e in body["events"]] == [
        ("opened", "slow"), ("resolved", "slow")]  # the reference llmops.yaml's rule
    runs = Tracking().client.search_runs([Tracking().experiment_id("monitor")])
    assert len(runs) == 1 and runs[0].info.run_id == body["run_id"]
    assert "rag-qa.production.latency_p95_ms" in runs[0].data.metrics
    again = cli("monitor", "run", "--no-drift")
    assert again.exit_code == 0 and "no closed window to add" in again.stdout
    report = cli("monitor", "report", "-o", tmp_path / "charts")
    assert report.exit_code == 0, report.stderr
    assert (tmp_path / "charts" / "latency_p95_ms.png").stat().st_size > 5000
    alerts = cli("monitor", "alerts")
    assert "slow: latency_p95_ms" in alerts.stdout and "resolved" in alerts.stdout
