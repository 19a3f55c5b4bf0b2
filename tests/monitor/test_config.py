"""The `monitor:` section: the reference project's parses; mistakes name their key."""

from __future__ import annotations

import re
from pathlib import Path

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
    from tests.cli_helpers import cli

    for argv in (*commands_of(gate), *commands_of(TriggerConfig(action="index-refresh")),
                 *commands_of(TriggerConfig(action="finetune", recipe="r.yaml"))):
        verb = [a for a in argv[3:] if not a.startswith(("chain.", "-", "eval/", "r.yaml"))]
        assert cli(*verb, "--help").exit_code == 0, verb  # each names a real command
    done = subprocess.run([*llmops, "gate", "--help"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and "Gate a candidate" in done.stdout  # python -m llmops
