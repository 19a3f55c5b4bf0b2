"""The reference data set as a stream: feature rows by day, labels known later.

scikit-learn's breast-cancer data (569 rows, 30 measurements, a binary diagnosis) ships
with scikit-learn, so nothing is downloaded. Each row becomes an entity (a patient id)
measured on some day; the diagnosis becomes a label known a few days after.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

KEY = ["entity_id", "event_time"]
START = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def reference_frame() -> pd.DataFrame:
    """Every row of the data set: entity_id, the 30 features (snake_case), label."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer(as_frame=True)
    frame = data.frame.rename(columns=_snake)
    frame.insert(0, "entity_id", [f"p{i:04d}" for i in range(len(frame))])
    return frame.rename(columns={"target": "label"})


# the data set's 30 measurements, snake_case (a test checks them against scikit-learn's)
FEATURES = ["mean_radius", "mean_texture", "mean_perimeter", "mean_area",
            "mean_smoothness", "mean_compactness", "mean_concavity", "mean_concave_points",
            "mean_symmetry", "mean_fractal_dimension", "radius_error", "texture_error",
            "perimeter_error", "area_error", "smoothness_error", "compactness_error",
            "concavity_error", "concave_points_error", "symmetry_error",
            "fractal_dimension_error", "worst_radius", "worst_texture", "worst_perimeter",
            "worst_area", "worst_smoothness", "worst_compactness", "worst_concavity",
            "worst_concave_points", "worst_symmetry", "worst_fractal_dimension"]


def daily_batches(days: int = 10, *, seed: int = 0, shift_from: int | None = None,
                  shift_scale: float = 1.0, shift_features: tuple[str, ...] = ()
                  ) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """`days` batches of (feature rows, labels): each entity is measured on one day and its
    label becomes known 1-5 days later (labels of a day are those known that day).

    A drift to watch for: from day `shift_from` on, `shift_features` read `shift_scale`
    times their value (an instrument recalibrated); the labels do not change."""
    frame = reference_frame()
    rng = np.random.default_rng(seed)
    day = rng.integers(0, days, len(frame))
    event = [START + timedelta(days=int(d), hours=int(h))
             for d, h in zip(day, rng.integers(0, 24, len(frame)), strict=True)]
    label_time = [t + timedelta(days=int(x)) for t, x in zip(event, rng.integers(1, 6, len(frame)),
                                                              strict=True)]
    features = frame[["entity_id", *FEATURES]].assign(event_time=pd.to_datetime(event, utc=True))
    labels = pd.DataFrame({"entity_id": frame["entity_id"], "label": frame["label"],
                           "label_time": pd.to_datetime(label_time, utc=True)})
    out = []
    for d in range(days):
        lo, hi = START + timedelta(days=d), START + timedelta(days=d + 1)
        f = features[(features.event_time >= lo) & (features.event_time < hi)]
        if shift_from is not None and d >= shift_from and shift_features:
            f = f.assign(**{c: f[c] * shift_scale for c in shift_features})
        lab = labels[(labels.label_time >= lo) & (labels.label_time < hi)]
        out.append((f.reset_index(drop=True), lab.reset_index(drop=True)))
    return out
