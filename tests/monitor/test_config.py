"""The `monitor:` section: the reference project's parses; mistakes name their key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from llmops.errors import ConfigError
from llmops.monitor.config import MonitorConfig, load_monitor_config, seconds

REPO = Path(__file__).resolve().parents[2]


def test_the_reference_project_config_parses() -> None:
    cfg = load_monitor_config(REPO)
    assert cfg.window_s == 3600 and {a.name for a in cfg.alerts} >= {"slow", "topics-moved"}
    assert cfg.triggers["regate"].dry_run and cfg.triggers["reindex"].cooldown_s == 6 * 3600


@pytest.mark.parametrize(("raw", "message"), [
    ({"alerts": [{"name": "a", "metric": "latency", "above": 1}]}, "alerts[0].metric"),
    ({"alerts": [{"name": "a", "metric": "errors"}]}, "exactly one of `above` or `below`"),
    ({"alerts": [{"name": "a", "metric": "errors", "above": 1, "trigger": "t"}]},
     "names trigger 't'"),
    ({"triggers": {"t": {"action": "eval-gate"}}}, "needs `chain`"),
    ({"triggers": {"t": {"action": "eval-gate", "chain": "x"}}}, "needs `dataset`"),
    ({"window": "soon"}, "not a duration"),
    ({"alerts": [{"name": "a", "metric": "errors", "above": 1}] * 2}, "repeat: a"),
    ({"windw": "1h"}, "windw"),
    ({"triggers": {"t": {"action": "tabular-retrain"}}}, "needs `pipeline`"),
    ({"triggers": {"t": {"action": "tabular-retrain", "pipeline": "../x"}}},
     "triggers.t.pipeline"),
])
def test_mistakes_are_named(raw: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=re.escape(message)):
        MonitorConfig.from_raw(raw)


def test_durations() -> None:
    assert [seconds(x) for x in (90, "90s", "15m", "1h", "1.5h", "7d")] == [
        90, 90, 900, 3600, 5400, 604800]


def test_each_action_runs_the_llmops_commands_it_names() -> None:
    import subprocess
    import sys

    from llmops.monitor.alerts import commands_of
    from llmops.monitor.config import TriggerConfig

    llmops = [sys.executable, "-m", "llmops"]
    gate = TriggerConfig(action="eval-gate", chain="rag_qa", dataset="eval/qa_smoke.jsonl")
    assert commands_of(gate) == [
        [*llmops, "eval", "run", "chain.rag_qa@staging", "--dataset", "eval/qa_smoke.jsonl"],
        [*llmops, "gate", "chain.rag_qa", "--candidate", "staging"]]
    assert commands_of(TriggerConfig(action="index-refresh")) == [[*llmops, "index", "refresh"]]
    assert commands_of(TriggerConfig(action="finetune", recipe="finetune/a.yaml")) == [
        [*llmops, "finetune", "run", "finetune/a.yaml"]]
    retrain = TriggerConfig(action="tabular-retrain", pipeline="cancer")
    assert commands_of(retrain) == [[*llmops, "tabular", "train", "cancer"],
                                    [*llmops, "gate", "tabular.cancer", "--candidate",
                                     "staging"]]
    from tests.cli_helpers import cli

    for argv in (*commands_of(gate), *commands_of(TriggerConfig(action="index-refresh")),
                 *commands_of(TriggerConfig(action="finetune", recipe="r.yaml")),
                 *commands_of(retrain)):
        verb = [a for a in argv[3:] if not a.startswith(("chain.", "-", "eval/", "r.yaml",
                                                         "tabular.", "cancer"))]
        assert cli(*verb, "--help").exit_code == 0, verb  # each names a real command
    done = subprocess.run([*llmops, "gate", "--help"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "Gate a candidate" in done.stdout  # python -m llmops


def test_a_tabular_drift_check_opens_and_resolves_its_alert(tmp_path: Path) -> None:
    from llmops.monitor.run import tabular_drift
    from llmops.store import Store

    cfg = MonitorConfig.from_raw({
        "alerts": [{"name": "moved", "metric": "features_drifted", "above": 0,
                    "endpoint": "tabular.cancer", "trigger": "retrain"},
                   {"name": "psi", "metric": "max_psi", "above": 0.5},
                   {"name": "slow", "metric": "latency_p95_ms", "above": 1}],
        "triggers": {"retrain": {"action": "tabular-retrain", "pipeline": "cancer",
                                 "dry_run": True}}})
    store = Store(f"sqlite:///{tmp_path / 'log.db'}")

    def check(psi: float, drifted: bool, at: float) -> tuple[Any, Any, Any]:
        features = [{"feature": "mean_texture", "psi": psi, "p_value": 1e-9 if drifted else 0.5,
                     "drifted": drifted},
                    {"feature": "mean_area", "psi": 0.01, "p_value": 0.9, "drifted": False}]
        return tabular_drift(store, cfg, pipeline="cancer", model="tabular.cancer/1",
                             features=features, rows=60, reference_rows=300,
                             where="in gold version 8", at=at)

    row, events, actions = check(1.2, True, 1000.0)
    assert (row["features_drifted"], row["max_psi"], row["min_drift_p"]) == (1, 1.2, 1e-9)
    assert sorted(e.alert["rule"] for e in events) == ["moved", "psi"]  # not `slow`
    moved = next(e.alert for e in events if e.alert["rule"] == "moved")
    assert moved["message"] == ("moved: features_drifted = 1 is above 0 on tabular.cancer "
                                "in gold version 8")
    (action,) = actions
    assert action["status"] == "dry-run" and "tabular train cancer" in action["detail"]
    assert "gate tabular.cancer --candidate staging" in action["detail"]
    assert check(1.1, True, 2000.0)[1] == []  # still open: no second alert
    _, resolved, _ = check(0.02, False, 3000.0)
    assert sorted((e.kind, e.alert["rule"]) for e in resolved) == [
        ("resolved", "moved"), ("resolved", "psi")]
    assert store.list_alerts(open_only=True) == []
    store.close()
