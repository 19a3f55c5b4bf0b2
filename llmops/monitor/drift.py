"""Query drift: are this window's questions drawn from the same distribution as before?

A two-sample test on question embeddings: the maximum mean discrepancy (MMD) with a
Gaussian kernel (bandwidth by the median heuristic) and a permutation test for its
p-value (Gretton et al., "A kernel two-sample test", 2012). Written here with numpy
(about thirty lines): scipy and scikit-learn have no MMD test, and the libraries that
do (alibi-detect, evidently's embedding drift) bring TensorFlow or pin pandas and
pydantic versions of their own. Answer drift (lengths by scipy's two-sample
Kolmogorov-Smirnov test, the refusal rate by a two-proportion test) needs no model.
The share of questions whose best retrieved chunk
scores under the similarity floor ("questions the index cannot answer") and the
lowest-scoring of them come from the request rows' sources, with no re-embedding.

Example:
    >>> result = mmd_test(reference_vectors, current_vectors, permutations=200, seed=0)
    >>> result.p_value < 0.01      # the questions moved
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DriftResult:
    statistic: float  # the unbiased MMD^2 estimate
    p_value: float  # share of permutations with a statistic at least as large
    n_reference: int
    n_current: int


def _mmd2(k: np.ndarray, n: int) -> float:
    """Unbiased MMD^2 of the first `n` points against the rest, from the kernel matrix."""
    m = k.shape[0] - n
    kxx, kyy, kxy = k[:n, :n], k[n:, n:], k[:n, n:]
    sxx = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def mmd_test(reference: np.ndarray, current: np.ndarray, *, permutations: int = 200,
             seed: int = 0) -> DriftResult:
    """MMD two-sample test of `current` against `reference` (rows are embeddings)."""
    x = np.asarray(reference, dtype=np.float64)
    y = np.asarray(current, dtype=np.float64)
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the MMD test needs at least 2 points on each side")
    z = np.vstack([x, y])
    sq = np.sum(z * z, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    upper = d2[np.triu_indices(len(z), k=1)]
    bandwidth = float(np.median(upper)) or 1.0  # the median heuristic
    k = np.exp(-d2 / bandwidth)
    n = len(x)
    observed = _mmd2(k, n)
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        p = rng.permutation(len(z))
        hits += _mmd2(k[np.ix_(p, p)], n) >= observed
    return DriftResult(observed, (hits + 1) / (permutations + 1), len(x), len(y))


def answer_drift(reference: list[str], current: list[str],
                 refusals: tuple[str, ...]) -> dict[str, Any]:
    """Answer drift: lengths (two-sample Kolmogorov-Smirnov, scipy) and the refusal rate
    (pooled two-proportion z-test) of this window's answers against the reference's."""
    from scipy.stats import ks_2samp

    from llmops.stats import two_proportion_test

    lengths = ks_2samp([len(a) for a in reference], [len(a) for a in current])
    refused = [sum(any(p in a.lower() for p in refusals) for a in side)
               for side in (reference, current)]
    _, p_refusal = two_proportion_test(refused[0], len(reference), refused[1], len(current))
    return {"length_p": float(lengths.pvalue), "length_ks": float(lengths.statistic),
            "refusal_p": p_refusal,
            "refusal_rate": [refused[0] / len(reference), refused[1] / len(current)]}


def question_of(messages: Any) -> str:
    """The last user message of a logged conversation (the question asked)."""
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def unanswerable(rows: list[dict[str, Any]], floor: float, top: int = 10) -> dict[str, Any]:
    """The share of questions whose best chunk scores under `floor`, and the lowest ones."""
    scored = [(r["top1"], question_of(r.get("messages"))) for r in rows
              if r.get("top1") is not None]
    low = sorted((s, q) for s, q in scored if s < floor)
    return {"share": len(low) / len(scored) if scored else None, "retrieved": len(scored),
            "lowest": [{"score": round(float(s), 4), "question": q[:300]} for s, q in low[:top]]}
