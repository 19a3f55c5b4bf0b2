"""Online evaluation: thumbs up/down from the feedback log, per variant and per chain version.

Counted: requests the gateway answered (status 200) that are not shadow copies, and
the current vote of each reviewer on them (a reviewer who changes a vote counts once,
with the last rating). `since`/`until` (unix seconds) select requests by the time they
were served. Each vote is one trial of a variant's thumbs-up rate; votes of several
reviewers on one answer are treated as independent. The store counts
(`Store.vote_counts`); this module holds the statistics, the report and the chart.

Example:
    >>> store = Store.open()
    >>> [s.to_dict() for s in variant_stats(store, "rag-qa")]
    >>> c = compare(store, "rag-qa", "production", "staging")
    >>> c.difference, c.prob_better, c.passes(min_votes=100, min_prob_better=0.95)
    >>> report(store, "rag-qa", png=Path("ab-rag-qa.png")).table
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.errors import UnknownVariantError
from llmops.stats import (
    diff_interval,
    prob_better,
    two_proportion_test,
    wilson_interval,
)
from llmops.store import Store, VoteCounts

if TYPE_CHECKING:
    import pandas as pd

CONFIDENCE = 0.95  # of the intervals in VariantStats and the default of comparisons


# -- results --------------------------------------------------------------------------
@dataclass(frozen=True)
class VariantStats:
    """What one variant (or one chain version) served and how reviewers rated it."""

    variant: str
    chain: str | None
    chain_versions: tuple[int, ...]
    requests: int  # answered (status 200), shadows excluded
    failed: int  # status 400 and above, shadows excluded
    votes: int  # current votes on the answered requests
    up: int
    down: int

    @property
    def rate(self) -> float:
        """Thumbs-up rate, up / votes; NaN without votes."""
        return self.up / self.votes if self.votes else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        """Wilson 95% interval of the thumbs-up rate; (0, 1) without votes."""
        return wilson_interval(self.up, self.votes, CONFIDENCE)

    @property
    def low(self) -> float:
        return self.interval[0]

    @property
    def high(self) -> float:
        return self.interval[1]

    @property
    def feedback_rate(self) -> float:
        """Votes per answered request; NaN without requests."""
        return self.votes / self.requests if self.requests else math.nan

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval
        return {
            "variant": self.variant, "chain": self.chain,
            "chain_versions": list(self.chain_versions), "requests": self.requests,
            "failed": self.failed, "votes": self.votes, "up": self.up, "down": self.down,
            "rate": _num(self.rate), "low": _num(low), "high": _num(high),
            "feedback_rate": _num(self.feedback_rate),
        }


@dataclass(frozen=True)
class Comparison:
    """Candidate against baseline: thumbs-up rate difference (candidate - baseline)."""

    baseline: VariantStats
    candidate: VariantStats
    difference: float  # NaN when either has no votes
    low: float  # Newcombe's hybrid score interval of the difference
    high: float
    z: float  # pooled two-proportion test, > 0 when the candidate is rated higher
    p_value: float
    prob_better: float  # P(candidate's rate > baseline's), Beta(1, 1) priors
    confidence: float = CONFIDENCE

    def passes(self, *, min_votes: int, min_prob_better: float) -> bool:
        """The online gate: enough candidate votes and P(better) above the threshold.

        Fails closed: a NaN probability fails.
        """
        return (self.candidate.votes >= min_votes
                and not math.isnan(self.prob_better) and self.prob_better > min_prob_better)

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline.to_dict(), "candidate": self.candidate.to_dict(),
            "difference": _num(self.difference), "low": _num(self.low), "high": _num(self.high),
            "confidence": float(self.confidence), "z": _num(self.z),
            "p_value": _num(self.p_value), "prob_better": _num(self.prob_better),
        }

    def summary(self, sep: str = ", ") -> str:
        """One line: difference with its interval, then z, p-value and P(better)."""
        b, c = self.baseline.variant, self.candidate.variant
        if math.isnan(self.difference):
            diff = "no difference yet (a side has no votes)"
        else:
            diff = (f"{self.difference:+.1%} [{self.low:+.1%}, {self.high:+.1%}] "
                    f"({self.confidence:.0%})")
        return (f"{c} - {b}: {diff}{sep}z={self.z:.2f}, p={self.p_value:.3g}, "
                f"P({c} better)={self.prob_better:.1%}")


@dataclass(frozen=True)
class Report:
    """Per-variant table of one endpoint, its comparison if any, and the chart written."""

    endpoint: str
    variants: tuple[VariantStats, ...]
    comparison: Comparison | None
    png: Path | None = None
    note: str | None = None  # why there is no comparison
    since: float | None = None
    until: float | None = None

    @property
    def table(self) -> pd.DataFrame:
        """The per-variant table (pandas), indexed by variant."""
        return stats_table(self.variants)

    def to_dict(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint, "since": self.since, "until": self.until,
            "variants": [v.to_dict() for v in self.variants],
            "comparison": self.comparison.to_dict() if self.comparison else None,
            "png": str(self.png) if self.png else None, "note": self.note,
        }


def _num(x: float) -> float | None:
    """A JSON-safe float: NaN and infinities become None, numpy scalars plain floats."""
    x = float(x)
    return x if math.isfinite(x) else None


# -- counts ----------------------------------------------------------------------------
def _merge(rows: list[VoteCounts], name: Any = str) -> list[VariantStats]:
    """Fold the store's (key, chain, version) groups into one VariantStats per key, by key."""
    by_key: dict[Any, list[VoteCounts]] = {}
    for row in rows:
        by_key.setdefault(row.key, []).append(row)
    out = []
    for key in sorted(by_key):
        groups = by_key[key]
        chains: dict[str, int] = {}
        for g in groups:
            if g.chain is not None:
                chains[g.chain] = chains.get(g.chain, 0) + int(g.requests) + int(g.failed)
        votes, up = sum(int(g.votes) for g in groups), sum(int(g.up) for g in groups)
        out.append(VariantStats(
            variant=name(key),
            chain=max(sorted(chains), key=lambda c: chains[c]) if chains else None,
            chain_versions=tuple(sorted({int(g.chain_version) for g in groups
                                         if g.chain_version is not None})),
            requests=sum(int(g.requests) for g in groups),
            failed=sum(int(g.failed) for g in groups),
            votes=votes, up=up, down=votes - up,
        ))
    return out


def variant_stats(
    store: Store, endpoint: str, *, since: float | None = None, until: float | None = None,
) -> list[VariantStats]:
    """One VariantStats per variant with requests on `endpoint` in [since, until), by name."""
    return _merge(store.vote_counts(by="variant", endpoint=endpoint, since=since, until=until))


def chain_name(chain: str) -> str:
    """The registered name of a chain: `rag_qa` and `chain.rag_qa` both give `chain.rag_qa`."""
    return chain if chain.startswith("chain.") else f"chain.{chain}"


def version_stats(
    store: Store, chain: str, *, since: float | None = None, until: float | None = None,
) -> list[VariantStats]:
    """One VariantStats per version of `chain` (named v<N>), across all endpoints."""
    name = chain_name(chain)
    counts = store.vote_counts(by="chain_version", chain=name, since=since, until=until)
    return _merge(counts, name=lambda v: f"v{v}")


# -- comparisons --------------------------------------------------------------------------
def compare_stats(
    baseline: VariantStats, candidate: VariantStats, *, confidence: float = CONFIDENCE,
    prior: tuple[float, float] = (1, 1),
) -> Comparison:
    """Compare two VariantStats already in hand (no query)."""
    s1, n1, s2, n2 = baseline.up, baseline.votes, candidate.up, candidate.votes
    low, high = diff_interval(s1, n1, s2, n2, confidence)
    z, p = two_proportion_test(s1, n1, s2, n2)
    return Comparison(
        baseline=baseline, candidate=candidate,
        difference=candidate.rate - baseline.rate, low=low, high=high, z=z, p_value=p,
        prob_better=prob_better(s1, n1, s2, n2, prior), confidence=confidence,
    )


def _pick(stats: list[VariantStats], name: str, where: str, what: str) -> VariantStats:
    for s in stats:
        if s.variant == name:
            return s
    known = ", ".join(s.variant for s in stats) or "none"
    raise UnknownVariantError(f"{where}: no requests for {what} {name!r} in the log "
                              f"({what}s with requests: {known})")


def compare(
    store: Store, endpoint: str, baseline: str, candidate: str, *,
    since: float | None = None, until: float | None = None, confidence: float = CONFIDENCE,
    prior: tuple[float, float] = (1, 1),
) -> Comparison:
    """Thumbs-up rate of variant `candidate` against variant `baseline` on one endpoint.

    Raises:
        UnknownVariantError: a variant has no requests on the endpoint (the message
            lists those that have).
    """
    stats = variant_stats(store, endpoint, since=since, until=until)
    where = f"endpoint {endpoint!r}"
    return compare_stats(_pick(stats, baseline, where, "variant"),
                         _pick(stats, candidate, where, "variant"),
                         confidence=confidence, prior=prior)


def version_comparison(
    store: Store, chain: str, baseline_version: int, candidate_version: int, *,
    since: float | None = None, until: float | None = None, confidence: float = CONFIDENCE,
    prior: tuple[float, float] = (1, 1),
) -> Comparison:
    """The comparison by registered chain version, across every endpoint that served it.

    The promotion gate's online criterion: `version_comparison(...).passes(min_votes=N,
    min_prob_better=t)`. Variants are named `v<version>`.
    """
    stats = version_stats(store, chain, since=since, until=until)
    where = chain_name(chain)
    return compare_stats(_pick(stats, f"v{baseline_version}", where, "version"),
                         _pick(stats, f"v{candidate_version}", where, "version"),
                         confidence=confidence, prior=prior)


# -- report -------------------------------------------------------------------------------
def stats_table(stats: Sequence[VariantStats]) -> pd.DataFrame:
    """The per-variant table, indexed by variant."""
    import pandas as pd

    columns = ["variant", "chain", "chain_versions", "requests", "failed", "votes", "up", "down",
               "rate", "low", "high", "feedback_rate"]
    rows = []
    for s in stats:
        d = s.to_dict()
        d["chain_versions"] = ",".join(str(v) for v in s.chain_versions)
        for k in ("rate", "low", "high", "feedback_rate"):
            d[k] = math.nan if d[k] is None else d[k]
        rows.append(d)
    return pd.DataFrame(rows, columns=columns).set_index("variant")


def report(
    store: Store, endpoint: str, *, baseline: str = "production", candidate: str | None = None,
    png: Path | str | None = None, since: float | None = None, until: float | None = None,
) -> Report:
    """The endpoint's table, the comparison of candidate against baseline, a chart at `png`.

    With no candidate, an endpoint with exactly two variants compares the other one
    against the baseline; otherwise the report has no comparison and says why in `note`.

    Raises:
        UnknownVariantError: the endpoint has no requests in the window, or a variant
            named (candidate, or baseline with it) has none.
    """
    stats = variant_stats(store, endpoint, since=since, until=until)
    if not stats:
        raise UnknownVariantError(
            f"no requests for endpoint {endpoint!r} in the log"
            f"{' in that time window' if since is not None or until is not None else ''} "
            f"(endpoints with requests: {', '.join(store.endpoints()) or 'none'})")
    names = [s.variant for s in stats]
    comparison, note = None, None
    where = f"endpoint {endpoint!r}"
    if candidate is not None:
        comparison = compare_stats(_pick(stats, baseline, where, "variant"),
                                   _pick(stats, candidate, where, "variant"))
    elif baseline not in names:
        note = f"no comparison: baseline {baseline!r} has no requests (variants: {', '.join(names)})"
    elif len(names) == 2:
        other = next(n for n in names if n != baseline)
        comparison = compare_stats(_pick(stats, baseline, where, "variant"),
                                   _pick(stats, other, where, "variant"))
    else:
        note = (f"no comparison: {len(names)} variant{'s' if len(names) != 1 else ''} "
                f"({', '.join(names)}); name a candidate")
    path = None
    if png is not None:
        path = Path(png)
        write_chart(path, endpoint, stats, comparison)
    return Report(endpoint, tuple(stats), comparison, path, note, since, until)


def write_chart(
    path: Path, endpoint: str, stats: Sequence[VariantStats], comparison: Comparison | None = None,
) -> Path:
    """Bar chart of thumbs-up rate per variant with Wilson error bars, written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A Figure with its own Agg canvas: no pyplot, no global backend switch, thread-safe.
    fig = Figure(figsize=(max(4.5, 1.5 * len(stats) + 2.0), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = list(range(len(stats)))
    rates = [0.0 if s.votes == 0 else s.rate for s in stats]
    err_low = [0.0 if s.votes == 0 else s.rate - s.low for s in stats]
    err_high = [0.0 if s.votes == 0 else s.high - s.rate for s in stats]
    colors = [_color(s.variant, comparison) for s in stats]
    ax.bar(x, rates, color=colors, width=0.6, yerr=[err_low, err_high], capsize=8,
           error_kw={"elinewidth": 1.2, "ecolor": "#333333"})
    for i, s in enumerate(stats):
        label = f"{s.up} up / {s.votes} vote{'s' if s.votes != 1 else ''}" if s.votes else "no votes"
        ax.annotate(label, (i, (s.high if s.votes else 0.0) + 0.02), ha="center", va="bottom",
                    fontsize=9)
    ax.set_xticks(x, [s.variant for s in stats])
    ax.set_ylim(0.0, 1.12)
    ax.set_ylabel("thumbs-up rate")
    ax.set_title(f"{endpoint}: thumbs-up rate by variant (Wilson {CONFIDENCE:.0%})", fontsize=11)
    if comparison is not None:
        fig.text(0.5, 0.01, comparison.summary(sep="\n"), ha="center", va="bottom", fontsize=8)
    fig.tight_layout(rect=(0.0, 0.08 if comparison is not None else 0.0, 1.0, 1.0))
    _write_atomically(path, fig)
    return path


def _color(variant: str, comparison: Comparison | None) -> str:
    if comparison is not None and variant == comparison.candidate.variant:
        return "#e07b39"
    if comparison is not None and variant == comparison.baseline.variant:
        return "#3b75af"
    return "#8c8c8c"


def _write_atomically(path: Path, fig: Any) -> None:
    """Render to a temporary file beside `path`, then rename: readers never see half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fig.savefig(fh, format="png")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
