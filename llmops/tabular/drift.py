"""Feature drift of a batch against the training set: PSI and a KS test per feature.

PSI (population stability index) over ten bins cut at the training set's deciles, with
a small floor on empty bins; the two-sample Kolmogorov-Smirnov test from scipy. A
feature drifts when its PSI is at least `psi_limit` (0.2: the usual "significant
shift") or its KS p-value is under `p_limit`; a batch drifts when any feature does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmops.tabular.source import FEATURES

PSI_LIMIT = 0.2
P_LIMIT = 0.001


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks: float
    p_value: float
    drifted: bool


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """Population stability index of `current` against `reference` (reference's bins)."""
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:
        return 0.0
    edges[0], edges[-1] = -np.inf, np.inf
    ref = np.histogram(reference, edges)[0] / len(reference)
    cur = np.histogram(current, edges)[0] / len(current)
    ref, cur = np.clip(ref, 1e-4, None), np.clip(cur, 1e-4, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def feature_drift(reference: pd.DataFrame, batch: pd.DataFrame, *,
                  psi_limit: float = PSI_LIMIT, p_limit: float = P_LIMIT) -> list[FeatureDrift]:
    """Each feature of `batch` against `reference` (the model's training set)."""
    from scipy.stats import ks_2samp

    out = []
    for f in FEATURES:
        ref = reference[f].dropna().to_numpy(dtype=float)
        cur = batch[f].dropna().to_numpy(dtype=float)
        if len(ref) < 2 or len(cur) < 2:
            continue
        value = psi(ref, cur)
        test = ks_2samp(ref, cur)
        out.append(FeatureDrift(f, value, float(test.statistic), float(test.pvalue),
                                value >= psi_limit or float(test.pvalue) < p_limit))
    return out
