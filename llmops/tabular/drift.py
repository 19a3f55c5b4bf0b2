"""Feature drift of a batch against the training set: PSI and a KS test per feature.

PSI (population stability index) over bins cut at the training set's quantiles: ten,
or fewer for a small batch (about ten rows a bin: under equal distributions PSI's
expected value is near (bins - 1) / rows, so ten bins over 50 rows would read 0.18 of
noise), with half a row added to every bin so an empty one does not weigh infinitely;
and the two-sample Kolmogorov-Smirnov test from scipy. A feature drifts when its KS
p-value is under `p_limit` divided by the number of features (Bonferroni: a batch of
the same distribution flags any feature with probability under `p_limit`), or, on a
batch of at least `psi_rows` rows (where PSI is not mostly noise), when its PSI is at
least `psi_limit` (0.25: the usual "significant shift"). A batch drifts when any
feature does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmops.tabular.source import FEATURES

PSI_LIMIT = 0.25
PSI_ROWS = 100
P_LIMIT = 0.01  # for all features together


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks: float
    p_value: float
    drifted: bool


def psi(reference: np.ndarray, current: np.ndarray, bins: int | None = None) -> float:
    """Population stability index of `current` against `reference` (reference's bins)."""
    if bins is None:
        bins = int(min(10, max(2, min(len(current), len(reference)) // 10)))
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    k = len(edges) - 1
    ref = (np.histogram(reference, edges)[0] + 0.5) / (len(reference) + 0.5 * k)
    cur = (np.histogram(current, edges)[0] + 0.5) / (len(current) + 0.5 * k)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def feature_drift(reference: pd.DataFrame, batch: pd.DataFrame, *,
                  psi_limit: float = PSI_LIMIT, psi_rows: int = PSI_ROWS,
                  p_limit: float = P_LIMIT) -> list[FeatureDrift]:
    """Each feature of `batch` against `reference` (the model's training set)."""
    from scipy.stats import ks_2samp

    per_feature = p_limit / len(FEATURES)
    out = []
    for f in FEATURES:
        ref = reference[f].dropna().to_numpy(dtype=float)
        cur = batch[f].dropna().to_numpy(dtype=float)
        if len(ref) < 2 or len(cur) < 2:
            continue
        value = psi(ref, cur)
        test = ks_2samp(ref, cur)
        drifted = float(test.pvalue) < per_feature or (len(cur) >= psi_rows
                                                        and value >= psi_limit)
        out.append(FeatureDrift(f, value, float(test.statistic), float(test.pvalue), drifted))
    return out
