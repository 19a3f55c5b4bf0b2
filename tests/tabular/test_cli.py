"""`llmops tabular` on the reference pipeline (tabular/cancer.yaml): refresh day by day,
train to tabular.cancer@staging, and drift of the newest batch."""

from __future__ import annotations

from pathlib import Path

from llmops.registry import get_registry
from tests.cli_helpers import cli


def test_refresh_train_and_drift_on_the_reference_pipeline(home: Path) -> None:
    for day in range(4):
        r = cli("tabular", "features", "refresh", "cancer")
        assert r.exit_code == 0, r.stderr
        assert f"day {day} ingested" in r.stdout and "0 quarantined" in r.stdout
    again = cli("tabular", "features", "refresh", "cancer", "--day", "1")
    assert again.exit_code == 2 and "day 1 is in bronze already" in again.stderr
    trained = cli("tabular", "train", "cancer", "--json")
    assert trained.exit_code == 0, trained.stderr
    body = trained.json()
    assert body["ref"] == "tabular.cancer/1" and body["gold_version"] == 3
    assert body["metrics"]["roc_auc"] > 0.9
    assert get_registry().resolve("tabular.cancer@staging").version == 1
    cli("tabular", "features", "refresh", "cancer")  # day 4: a fresh sample of the stream
    steady = cli("tabular", "drift", "cancer")
    assert steady.exit_code == 0, steady.stdout + steady.stderr
    assert "0 of 30 features drifted" in steady.stdout
    missing = cli("tabular", "train", "nope")
    assert missing.exit_code == 2 and "no such tabular pipeline (known: cancer)" in missing.stderr
