"""`llmops tabular` on the reference pipeline (tabular/cancer.yaml), the whole loop:
refresh day by day, train to staging, evaluate, gate to production, batch-infer, and
drift of each new batch; the shifted day (8) opens the monitor's cancer-drift alert,
whose trigger trains on the new data and gates it (`llmops tabular train`, then `llmops
gate`, as subprocesses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.config import get_settings
from llmops.registry import get_registry
from llmops.store import Store
from llmops.tabular.tables import read
from tests.cli_helpers import cli


def _refresh(days: int) -> None:
    for _ in range(days):
        r = cli("tabular", "features", "refresh", "cancer")
        assert r.exit_code == 0, r.stderr
        assert "ingested" in r.stdout and "0 quarantined" in r.stdout


@pytest.mark.slow
def test_the_tabular_loop_on_the_reference_pipeline(home: Path) -> None:
    _refresh(4)
    again = cli("tabular", "features", "refresh", "cancer", "--day", "1")
    assert again.exit_code == 2 and "day 1 is in bronze already" in again.stderr
    dry = cli("tabular", "train", "cancer", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.startswith("dry run: tabular.cancer: a run would train on gold version 3 (")
    assert "move staging from unset; nothing changed" in dry.stdout
    assert not get_registry().exists("tabular.cancer")
    trained = cli("tabular", "train", "cancer", "--json")
    assert trained.exit_code == 0, trained.stderr
    body = trained.json()
    assert body["ref"] == "tabular.cancer/1" and body["gold_version"] == 3
    assert body["metrics"]["roc_auc"] > 0.9
    reg = get_registry()
    assert reg.resolve("tabular.cancer@staging").version == 1
    # autologging recorded the grid search in the training run
    run = reg.client.get_run(reg.get("tabular.cancer", 1).run_id)
    assert "best_C" in run.data.params or "best_clf__C" in run.data.params, run.data.params

    evaluated = cli("tabular", "evaluate", "cancer", "--json")
    assert evaluated.exit_code == 0, evaluated.stderr
    assert evaluated.json()["metrics"] == pytest.approx(body["metrics"])  # same hold-out

    gated = cli("gate", "tabular.cancer")
    assert gated.exit_code == 0, gated.stdout
    assert reg.resolve("tabular.cancer@production").version == 1

    scored = cli("tabular", "batch-infer", "cancer", "--json")
    assert scored.exit_code == 0, scored.stderr
    first = scored.json()
    assert first["model"] == "tabular.cancer/1" and first["gold_version"] == 3
    predictions = read(get_settings().home_dir / "tabular" / "cancer" / "predictions")
    assert len(predictions) == first["rows"] > 0
    assert set(predictions["model_version"]) == {1} and set(predictions["gold_version"]) == {3}
    assert cli("tabular", "batch-infer", "cancer", "--json").json()["skipped"]

    _refresh(1)  # day 4: a fresh sample of the stream
    steady = cli("tabular", "drift", "cancer")
    assert steady.exit_code == 0, steady.stdout + steady.stderr
    assert "0 of 30 features drifted" in steady.stdout and "alert" not in steady.stdout

    _refresh(4)  # days 5-8; day 8 reads texture 30% higher
    moved = cli("tabular", "drift", "cancer")
    assert moved.exit_code == 1, moved.stdout + moved.stderr
    assert "DRIFT mean_texture" in moved.stdout and "DRIFT worst_texture" in moved.stdout
    assert "alert opened: cancer-drift: features_drifted = 2 is above 0 on tabular.cancer" \
        in moved.stdout
    assert "trigger retrain-cancer: done" in moved.stdout, moved.stdout
    store = Store.open()
    try:
        (alert,) = store.list_alerts(open_only=True)
        (action,) = store.list_actions("retrain-cancer")
    finally:
        store.close()
    assert alert["endpoint"] == "tabular.cancer" and action["status"] == "done"
    assert "tabular train cancer" in action["detail"] and "gate tabular.cancer" in action["detail"]
    retrained = reg.resolve("tabular.cancer@staging")
    assert retrained.version == 2 and retrained.tags["lineage.gold_version"] == "8"
    production = reg.resolve("tabular.cancer@production").version
    assert production == 2 or reg.get("tabular.cancer", 2).archived  # the gate decided

    missing = cli("tabular", "train", "nope")
    assert missing.exit_code == 2 and "no such tabular pipeline (known: cancer)" in missing.stderr
