"""The medallion on real Delta tables: incremental refreshes, quarantine, a refresh killed
midway and completed by the next, point-in-time training sets and time travel."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from llmops.tabular import tables
from llmops.tabular.source import FEATURES, daily_batches
from llmops.tabular.tables import Medallion, read, version_of
from llmops.tabular.training import point_in_time, training_set


@pytest.fixture
def medallion(tmp_path: Path) -> Medallion:
    return Medallion(tmp_path / "features")


def test_refreshes_are_incremental_and_lose_no_row(medallion: Medallion) -> None:
    batches = daily_batches(days=4, seed=3)
    for day, (features, _) in enumerate(batches):
        if day == 2:
            features = features.copy()
            features.loc[0, "mean_radius"] = -1.0  # quarantined
            features = pd.concat([features, features.iloc[[1]]])  # a duplicate key
        medallion.ingest(features, source=f"day-{day}")
        report = medallion.refresh()
        assert report.versions["bronze"] == day
    gold = read(medallion.paths["gold"])
    quarantine = read(medallion.paths["quarantine"])
    assert len(gold) == 569 - 1 and gold[["entity_id", "event_time"]].duplicated().sum() == 0
    assert sorted(quarantine["reasons"]) == [
        "duplicate key: same as row 1 of the batch",
        "mean_radius: -1 out of range [0, 10000]"]
    assert medallion.refresh().silver_rows == 0  # nothing new: nothing done
    assert version_of(medallion.paths["gold"]) == 3


def test_a_refresh_killed_between_tables_is_completed_by_the_next(
        medallion: Medallion, monkeypatch: pytest.MonkeyPatch) -> None:
    (day0, _), (day1, _), (day2, _) = daily_batches(days=3, seed=4)
    medallion.ingest(day0, source="day-0")
    medallion.refresh()
    spoiled = day1.copy()
    spoiled.loc[0, "mean_area"] = None
    medallion.ingest(spoiled, source="day-1")

    def killed(self: Medallion, head: int) -> int:
        raise KeyboardInterrupt("killed after silver")

    monkeypatch.setattr(Medallion, "_gold", killed)
    with pytest.raises(KeyboardInterrupt):
        medallion.refresh()
    assert len(read(medallion.paths["gold"])) == len(day0)  # still the whole previous version
    assert len(read(medallion.paths["silver"])) == len(day0) + len(day1) - 1

    # killed after the quarantine commit, before silver's: checked again, not twice
    monkeypatch.undo()
    medallion.ingest(day2, source="day-2")
    real_append = tables.append

    def dies_at_silver(path: Path, frame: pd.DataFrame, **kw: object) -> int:
        if path == medallion.paths["silver"]:
            raise KeyboardInterrupt("killed before silver")
        return real_append(path, frame, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(tables, "append", dies_at_silver)
    with pytest.raises(KeyboardInterrupt):
        medallion.refresh()
    monkeypatch.undo()
    medallion.refresh()
    assert len(read(medallion.paths["gold"])) == 569 - 1
    assert list(read(medallion.paths["quarantine"])["reasons"]) == ["mean_area: null"]


def _t(day: int, hour: int = 0) -> pd.Timestamp:
    return pd.Timestamp(datetime(2026, 1, day, hour, tzinfo=timezone.utc))


def test_a_feature_value_from_after_the_label_never_reaches_training() -> None:
    row = dict.fromkeys(FEATURES, 1.0)
    features = pd.DataFrame([
        {"entity_id": "a", "event_time": _t(1), **row, "mean_radius": 10.0},
        {"entity_id": "a", "event_time": _t(3), **row, "mean_radius": 30.0},  # after label 1
        {"entity_id": "a", "event_time": _t(5), **row, "mean_radius": 50.0},
        {"entity_id": "b", "event_time": _t(4), **row, "mean_radius": 40.0},  # after b's label
    ])
    labels = pd.DataFrame([
        {"entity_id": "a", "label_time": _t(2), "label": 0},
        {"entity_id": "a", "label_time": _t(5), "label": 1},  # same instant: that row counts
        {"entity_id": "b", "label_time": _t(3), "label": 1},
    ])
    out = point_in_time(labels, features)
    assert list(zip(out["entity_id"], out["mean_radius"], out["label"], strict=True)) == [
        ("a", 10.0, 0), ("a", 50.0, 1)]  # b has no features before its label: left out
    assert (out["event_time"] <= out["label_time"]).all()


def test_time_travel_rebuilds_an_earlier_training_set_byte_for_byte(
        medallion: Medallion) -> None:
    batches = daily_batches(days=3, seed=5)
    labels = pd.concat([lab for _, lab in batches])
    medallion.ingest(batches[0][0], source="day-0")
    medallion.refresh()
    first = training_set(medallion.paths["gold"], labels)
    for day in (1, 2):
        medallion.ingest(batches[day][0], source=f"day-{day}")
        medallion.refresh()
    later = training_set(medallion.paths["gold"], labels)
    assert later.gold_version == 2 and len(later.frame) > len(first.frame)
    again = training_set(medallion.paths["gold"], labels, version=first.gold_version)
    assert again.digest == first.digest and again.frame.equals(first.frame)


def test_a_row_sent_again_in_a_later_batch_is_quarantined_as_a_duplicate(
        medallion: Medallion) -> None:
    (day0, _), (day1, _), (day2, _) = daily_batches(days=3, seed=6)
    for day, batch in enumerate((day0, day1)):
        medallion.ingest(batch, source=f"day-{day}")
        medallion.refresh()
    # day 2 carries again a row of day 0 (an old file: only its statistics say so)
    # and a row of day 1 with its time a millisecond later (a new key: not a duplicate)
    resent = day0.iloc[[3]]
    later = day1.iloc[[0]].assign(event_time=day1.iloc[0]["event_time"]
                                  + pd.Timedelta(milliseconds=1))
    medallion.ingest(pd.concat([day2, resent, later]), source="day-2")
    report = medallion.refresh()
    assert (report.silver_rows, report.quarantined) == (len(day2) + 1, 1)
    (reason,) = read(medallion.paths["quarantine"])["reasons"]
    assert reason == "duplicate key: already in silver"
    assert len(read(medallion.paths["gold"])) == len(day0) + len(day1) + len(day2) + 1


KILLED = """
import os, signal, sys
from pathlib import Path
from llmops.tabular import tables
from llmops.tabular.source import daily_batches
m = tables.Medallion(Path(sys.argv[1]))
batches = daily_batches(days=3, seed=7)
m.ingest(batches[0][0], source="day-0")
m.refresh()
m.ingest(batches[1][0], source="day-1")
real = tables.append
def append(path, frame, **kw):
    if path == m.paths[sys.argv[2]]:
        os.kill(os.getpid(), signal.SIGKILL)  # the process dies before this commit
    return real(path, frame, **kw)
tables.append = append
m.refresh()
"""


@pytest.mark.parametrize("dies_at", ["silver", "gold"])
def test_a_refresh_killed_by_sigkill_leaves_complete_versions_and_the_next_completes(
        medallion: Medallion, dies_at: str) -> None:
    import signal
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", KILLED, str(medallion.root), dies_at],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (day0, _), (day1, _), _ = daily_batches(days=3, seed=7)
    assert len(read(medallion.paths["gold"])) == len(day0)  # the previous version, whole
    assert len(read(medallion.paths["silver"])) == len(day0) + (len(day1) if dies_at == "gold"
                                                                else 0)
    report = medallion.refresh()
    assert report.gold_rows == len(day1)
    gold = read(medallion.paths["gold"])
    assert len(gold) == len(day0) + len(day1) and not gold[["entity_id", "event_time"]
                                                           ].duplicated().any()
