"""Training sets that are point-in-time correct, and rebuilt exactly by time travel.

For each label (entity, label time) the features are the entity's latest gold row with
`event_time` at or before the label's time: a value measured after the label was known
never reaches training. The gold table's version is part of the result; reading that
version again (Delta time travel) rebuilds the same set, byte for byte.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from llmops.tabular.source import FEATURES
from llmops.tabular.tables import read, version_of


@dataclass(frozen=True)
class TrainingSet:
    frame: pd.DataFrame  # entity_id, label_time, event_time, features..., label
    gold_version: int

    @property
    def digest(self) -> str:
        """SHA-256 of the set's rows in a canonical CSV form (order, columns, values)."""
        return hashlib.sha256(self.frame.to_csv(index=False).encode()).hexdigest()


def point_in_time(labels: pd.DataFrame, features: pd.DataFrame) -> pd.DataFrame:
    """Each label joined to its entity's latest feature row at or before `label_time`;
    labels with no such row are left out."""
    if labels.empty or features.empty:
        return pd.DataFrame(columns=["entity_id", "label_time", "event_time", *FEATURES,
                                     "label"])
    left = labels.sort_values("label_time").reset_index(drop=True)
    right = features.sort_values("event_time").reset_index(drop=True)
    joined = pd.merge_asof(left, right, left_on="label_time", right_on="event_time",
                           by="entity_id", direction="backward", allow_exact_matches=True)
    joined = joined.dropna(subset=["event_time"])
    cols = ["entity_id", "label_time", "event_time", *FEATURES, "label"]
    return joined[cols].sort_values(["entity_id", "label_time"]).reset_index(drop=True)


def training_set(gold: Path, labels: pd.DataFrame, *, version: int | None = None
                 ) -> TrainingSet:
    """The training set from the gold table at `version` (default: its newest)."""
    v = version_of(gold) if version is None else version
    if v is None:
        raise FileNotFoundError(f"no gold table at {gold}: run a features refresh first")
    return TrainingSet(point_in_time(labels, read(gold, v)), v)
