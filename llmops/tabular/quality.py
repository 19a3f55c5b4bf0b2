"""The silver layer's checks: every bad row is quarantined with its reasons, never dropped.

Checks, per row: the key (entity_id, event_time) present and not seen before (in the
batch or in silver), each feature present, a number, not null, finite and within its
range. A batch that lacks a column quarantines every row with that reason.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from llmops.tabular.source import FEATURES, KEY

# Each measurement is a size, a texture or a ratio: never negative; the upper bounds are
# generous multiples of what the reference data holds.
RANGES = {f: (0.0, 10_000.0) for f in FEATURES}


def check(batch: pd.DataFrame, seen: Iterable[tuple[str, pd.Timestamp]] = ()
          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(valid rows, quarantined rows with a `reasons` column) of a bronze batch."""
    reasons: list[list[str]] = [[] for _ in range(len(batch))]
    for col in [*KEY, *FEATURES]:
        if col not in batch.columns:
            for r in reasons:
                r.append(f"missing column {col}")
    if "event_time" in batch.columns:
        times = pd.to_datetime(batch["event_time"], utc=True, errors="coerce", format="ISO8601")
        for i, t in enumerate(times):
            if pd.isna(t):
                reasons[i].append("event_time: not a time")
    else:
        times = pd.Series([pd.NaT] * len(batch))
    if "entity_id" in batch.columns:
        ids = batch["entity_id"]
        for i, v in enumerate(ids):
            if not isinstance(v, str) or not v:
                reasons[i].append("entity_id: missing")
        known = set(seen)
        keys = list(zip(ids, times, strict=True))
        first: dict[tuple[object, object], int] = {}
        for i, k in enumerate(keys):
            if k in known:
                reasons[i].append("duplicate key: already in silver")
            elif k in first:
                reasons[i].append(f"duplicate key: same as row {first[k]} of the batch")
            else:
                first[k] = i
    for col in FEATURES:
        if col not in batch.columns:
            continue
        raw = batch[col]
        values = pd.to_numeric(raw, errors="coerce")
        low, high = RANGES[col]
        for i, (v, x) in enumerate(zip(raw, values, strict=True)):
            if v is None or (isinstance(v, float) and np.isnan(v)):
                reasons[i].append(f"{col}: null")
            elif pd.isna(x):
                reasons[i].append(f"{col}: not a number ({str(v)[:40]!r})")
            elif not np.isfinite(x) or not low <= x <= high:
                reasons[i].append(f"{col}: {x:g} out of range [{low:g}, {high:g}]")
    bad = np.array([bool(r) for r in reasons], dtype=bool)
    good = batch.loc[~bad].copy() if len(batch) else batch.copy()
    if len(good):
        good["event_time"] = times[~bad].set_axis(good.index)  # parsed once, above
        for col in FEATURES:
            good[col] = pd.to_numeric(good[col]).astype("float64")
    quarantined = batch.loc[bad].astype("string").copy()
    quarantined["reasons"] = ["; ".join(r) for r in reasons if r]
    return good.reset_index(drop=True), quarantined.reset_index(drop=True)
