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
