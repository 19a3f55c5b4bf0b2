"""The silver layer's checks: each kind of bad row is quarantined with the right reason,
good rows pass unchanged, and nothing is dropped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmops.tabular.quality import check
from llmops.tabular.source import FEATURES, KEY, daily_batches, reference_frame


@pytest.fixture(scope="module")
def batch() -> pd.DataFrame:
    return daily_batches(days=5, seed=1)[0][0]


def test_the_reference_stream_covers_every_row_once() -> None:
    batches = daily_batches(days=7, seed=2)
    features = pd.concat([f for f, _ in batches])
    labels = pd.concat([lab for _, lab in batches])
    assert len(features) == len(reference_frame()) == 569 and len(FEATURES) == 30
    assert list(reference_frame().columns) == ["entity_id", *FEATURES, "label"]
    assert features["entity_id"].is_unique
    # a label is known after its entity was measured; labels after the last day wait
    joined = labels.merge(features[["entity_id", "event_time"]], on="entity_id")
    assert (joined["label_time"] > joined["event_time"]).all()
    assert len(labels) < len(features)


def test_a_clean_batch_passes_whole(batch: pd.DataFrame) -> None:
    good, bad = check(batch)
    assert len(good) == len(batch) and bad.empty
    pd.testing.assert_frame_equal(good[KEY + FEATURES].reset_index(drop=True),
                                  batch[KEY + FEATURES].reset_index(drop=True))


@pytest.mark.parametrize(("spoil", "reason"), [
    (lambda b: b.assign(mean_radius=b["mean_radius"].where(b.index != 0, -1.0)),
     "mean_radius: -1 out of range [0, 10000]"),
    (lambda b: b.assign(mean_radius=b["mean_radius"].where(b.index != 0, np.inf)),
     "mean_radius: inf out of range"),
    (lambda b: b.assign(mean_texture=b["mean_texture"].where(b.index != 0, None)),
     "mean_texture: null"),
    (lambda b: b.assign(mean_area=b["mean_area"].astype(object).where(b.index != 0, "big")),
     "mean_area: not a number ('big')"),
    (lambda b: b.assign(event_time=b["event_time"].astype(object).where(b.index != 0, "soon")),
     "event_time: not a time"),
    (lambda b: b.assign(entity_id=b["entity_id"].where(b.index != 0, "")), "entity_id: missing"),
])
def test_each_bad_value_is_quarantined_with_its_reason(batch: pd.DataFrame, spoil, reason) -> None:  # type: ignore[no-untyped-def]
    good, bad = check(spoil(batch.copy()))
    assert len(good) + len(bad) == len(batch) and len(bad) == 1
    assert reason in bad["reasons"][0]
    assert bad["entity_id"][0] == batch["entity_id"][0] or reason == "entity_id: missing"


def test_duplicate_keys_in_the_batch_or_in_silver(batch: pd.DataFrame) -> None:
    doubled = pd.concat([batch, batch.iloc[[2]]], ignore_index=True)
    good, bad = check(doubled)
    assert len(good) == len(batch) and list(bad["reasons"]) == [
        "duplicate key: same as row 2 of the batch"]
    seen = {(batch["entity_id"][5], batch["event_time"][5])}
    good, bad = check(batch, seen)
    assert list(bad["reasons"]) == ["duplicate key: already in silver"]


def test_a_missing_column_quarantines_every_row_with_that_reason(batch: pd.DataFrame) -> None:
    good, bad = check(batch.drop(columns=["worst_symmetry"]))
    assert good.empty and len(bad) == len(batch)
    assert set(bad["reasons"]) == {"missing column worst_symmetry"}


def test_wrong_types_are_coerced_when_they_are_numbers_in_text(batch: pd.DataFrame) -> None:
    as_text = batch.assign(mean_radius=batch["mean_radius"].map(str))
    good, bad = check(as_text)
    assert bad.empty and good["mean_radius"].dtype == "float64"
    assert np.allclose(good["mean_radius"], batch["mean_radius"])
