"""Feature drift fires on a shifted batch and not on a fresh sample of the same data."""

from __future__ import annotations

import numpy as np

from llmops.tabular.drift import feature_drift, psi
from llmops.tabular.source import FEATURES, reference_frame


def test_psi_is_zero_for_the_same_data_and_grows_with_a_shift() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=5000)
    assert psi(x, x) < 1e-9
    assert psi(x, rng.normal(size=5000)) < 0.05
    assert psi(x, rng.normal(0.5, size=5000)) > 0.2


def test_drift_fires_on_a_shifted_batch_and_not_on_a_fresh_sample() -> None:
    frame = reference_frame().sample(frac=1.0, random_state=3).reset_index(drop=True)
    training, fresh = frame.iloc[:400], frame.iloc[400:]
    steady = feature_drift(training, fresh)
    assert len(steady) == len(FEATURES) and not any(d.drifted for d in steady)
    shifted = fresh.assign(mean_radius=fresh["mean_radius"] * 1.3,
                           worst_area=fresh["worst_area"] + 300.0)
    moved = {d.feature for d in feature_drift(training, shifted) if d.drifted}
    assert moved == {"mean_radius", "worst_area"}


def test_a_day_sized_batch_drifts_only_when_shifted() -> None:
    frame = reference_frame().sample(frac=1.0, random_state=4).reset_index(drop=True)
    training, day = frame.iloc[:450], frame.iloc[450:510]  # 60 rows: PSI is mostly noise
    assert not any(d.drifted for d in feature_drift(training, day))
    moved = feature_drift(training, day.assign(mean_radius=day["mean_radius"] * 1.3))
    assert {d.feature for d in moved if d.drifted} == {"mean_radius"}
