"""Online evaluation from a real request and feedback log, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scipy import integrate, stats
from typer.testing import CliRunner

from llmops.eval.ab_cli import app, parse_time
from llmops.eval.online import (
    Comparison,
    UnknownVariantError,
    compare,
    report,
    variant_stats,
    version_comparison,
    version_stats,
)
from llmops.stats import diff_interval, prob_better, wilson_interval
from llmops.store import RequestRow, Store

T0 = 1_700_000_000.0  # unix seconds; request i of a variant is served at T0 + i
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _req(rid: str, endpoint: str, variant: str, chain: str, version: int, at: float,
         **kw: Any) -> RequestRow:
    return RequestRow(id=rid, endpoint=endpoint, variant=variant, chain=chain,
                      chain_version=version, status=kw.pop("status", 200), created_at=at, **kw)


def seed(store: Store) -> None:
    """The log the tests count on.

    rag-qa / production, chain.rag_qa v3: p1..p10 answered at T0+1..T0+10, p11 failed (502);
      alice: up on p1..p6, down on p7, p8; bob: down on p1; carol: up on the failed p11
      -> 10 requests, 1 failed, 9 votes, 6 up, 3 down.
    rag-qa / staging, chain.rag_qa v4: s1..s5 answered, s6 still streaming (status 0), and a
      shadow copy of p1; alice: up on s1..s4, up then down on s5, up on the shadow
      -> 5 requests, 0 failed, 5 votes, 4 up, 1 down.
    rag-qa-internal / production, chain.rag_qa v4: i1 answered, carol: up.
    chat: production (chain.chat v1) c1 answered and voted up; canary k1 answered, no vote.
    summarize: production only, one request.
    """
    rows = [_req(f"p{i}", "rag-qa", "production", "chain.rag_qa", 3, T0 + i) for i in range(1, 11)]
    rows.append(_req("p11", "rag-qa", "production", "chain.rag_qa", 3, T0 + 11, status=502,
                     error="backend failed"))
    rows += [_req(f"s{i}", "rag-qa", "staging", "chain.rag_qa", 4, T0 + i) for i in range(1, 6)]
    rows.append(_req("s6", "rag-qa", "staging", "chain.rag_qa", 4, T0 + 6, status=0, stream=True))
    rows.append(_req("sh1", "rag-qa", "staging", "chain.rag_qa", 4, T0 + 1, shadow_of="p1"))
    rows.append(_req("i1", "rag-qa-internal", "production", "chain.rag_qa", 4, T0 + 1))
    rows.append(_req("c1", "chat", "production", "chain.chat", 1, T0 + 1))
    rows.append(_req("k1", "chat", "canary", "chain.chat", 2, T0 + 1))
    rows.append(_req("m1", "summarize", "production", "chain.summarize", 1, T0 + 1))
    # Handed over at once: the writer commits them in groups, in order.
    pending = [store.submit(store.insert_request_op(row)) for row in rows]
    votes = [(f"p{i}", "alice", "up") for i in range(1, 7)] + [
        ("p7", "alice", "down"), ("p8", "alice", "down"), ("p1", "bob", "down"),
        ("p11", "carol", "up"),
        *[(f"s{i}", "alice", "up") for i in range(1, 5)],
        ("s5", "alice", "up"), ("s5", "alice", "down"),  # changed: the last vote counts
        # no vote on the shadow copy sh1: the log refuses one (409)
        ("i1", "carol", "up"), ("c1", "alice", "up"),
    ]
    pending += [store.submit(store.feedback_op(rid, reviewer=reviewer, rating=rating))
                for rid, reviewer, rating in votes]
    for fut in pending:
        fut.result()


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    s = Store.open(url)
    seed(s)
    yield s
    s.close()


def _scipy_wilson(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def _plain_json(value: Any) -> None:
    """Only JSON's own types, no numpy scalars, no NaN."""
    if isinstance(value, dict):
        assert all(isinstance(k, str) for k in value)
        for v in value.values():
            _plain_json(v)
    elif isinstance(value, list):
        for v in value:
            _plain_json(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), (value, type(value))
        assert not (isinstance(value, float) and not math.isfinite(value))


def test_variant_stats_count_answered_requests_and_current_votes(store: Store) -> None:
    got = {s.variant: s for s in variant_stats(store, "rag-qa")}
    assert list(got) == ["production", "staging"]
    prod, stag = got["production"], got["staging"]
    assert (prod.chain, prod.chain_versions) == ("chain.rag_qa", (3,))
    assert (prod.requests, prod.failed, prod.votes, prod.up, prod.down) == (10, 1, 9, 6, 3)
    assert (stag.chain, stag.chain_versions) == ("chain.rag_qa", (4,))
    assert (stag.requests, stag.failed, stag.votes, stag.up, stag.down) == (5, 0, 5, 4, 1)
    assert prod.rate == 6 / 9 and stag.rate == 4 / 5
    assert prod.feedback_rate == 9 / 10 and stag.feedback_rate == 1.0
    assert prod.interval == pytest.approx(_scipy_wilson(6, 9), abs=1e-12)
    assert stag.interval == pytest.approx(_scipy_wilson(4, 5), abs=1e-12)
    d = prod.to_dict()
    assert d == {
        "variant": "production", "chain": "chain.rag_qa", "chain_versions": [3], "requests": 10,
        "failed": 1, "votes": 9, "up": 6, "down": 3, "rate": 6 / 9, "low": prod.low,
        "high": prod.high, "feedback_rate": 0.9,
    }
    _plain_json(d)


def test_variant_stats_time_window_and_unknown_endpoint(store: Store) -> None:
    late = {s.variant: s for s in variant_stats(store, "rag-qa", since=T0 + 6)}
    # production p6..p10 answered (p6 up, p7 down, p8 down), p11 failed; staging nothing answered
    p = late["production"]
    assert (p.requests, p.failed, p.votes, p.up, p.down) == (5, 1, 3, 1, 2)
    assert (late["staging"].requests, late["staging"].votes) == (0, 0)  # s6 still streaming
    early = {s.variant: s for s in variant_stats(store, "rag-qa", since=T0 + 1, until=T0 + 3)}
    assert (early["production"].requests, early["production"].votes) == (2, 3)  # p1 has 2 votes
    assert (early["staging"].requests, early["staging"].votes, early["staging"].up) == (2, 2, 2)
    assert variant_stats(store, "nope") == []
    assert variant_stats(store, "rag-qa", since=T0 + 1000) == []


def test_compare_candidate_against_baseline(store: Store) -> None:
    """Expected values from the counts alone: baseline 6 up of 9, candidate 4 up of 5."""
    c = compare(store, "rag-qa", "production", "staging")
    assert isinstance(c, Comparison)
    assert (c.baseline.variant, c.candidate.variant) == ("production", "staging")
    assert c.difference == pytest.approx(4 / 5 - 6 / 9, abs=1e-15)  # 2/15
    # Newcombe's hybrid score interval, from scipy's Wilson interval of each side
    (l1, u1), (l2, u2) = _scipy_wilson(6, 9), _scipy_wilson(4, 5)
    low = 2 / 15 - math.sqrt((4 / 5 - l2) ** 2 + (u1 - 6 / 9) ** 2)
    high = 2 / 15 + math.sqrt((u2 - 4 / 5) ** 2 + (6 / 9 - l1) ** 2)
    assert (c.low, c.high) == pytest.approx((low, high), abs=1e-12)
    assert (c.low, c.high) == pytest.approx((-0.3414647, 0.4861174), abs=1e-7)
    # pooled z: p = 10/14, se = sqrt(p (1 - p) (1/9 + 1/5)) = 2/sqrt(63), z = (2/15) / se
    assert c.z == pytest.approx(math.sqrt(7) / 5, abs=1e-12)
    assert c.p_value == pytest.approx(2 * stats.norm.sf(math.sqrt(7) / 5), abs=1e-12)
    assert c.p_value == pytest.approx(0.5967012, abs=1e-7)
    # P(Beta(5, 2) > Beta(7, 4)) = integral of 30 x^4 (1 - x) P(Binomial(10, x) >= 7) dx
    assert c.prob_better == pytest.approx(17 / 26, abs=1e-12)
    assert c.prob_better == pytest.approx(integrate.quad(
        lambda x: stats.beta.pdf(x, 5, 2) * stats.beta.cdf(x, 7, 4), 0, 1)[0], abs=1e-9)
    assert c.low < c.difference < c.high
    assert 0.5 < c.prob_better < 1.0 and c.z > 0
    assert c.passes(min_votes=5, min_prob_better=0.5)
    assert not c.passes(min_votes=6, min_prob_better=0.5)
    assert not c.passes(min_votes=5, min_prob_better=0.99)
    data = c.to_dict()
    _plain_json(data)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["candidate"]["votes"] == 5 and data["confidence"] == 0.95
    reverse = compare(store, "rag-qa", "staging", "production")
    assert reverse.prob_better == pytest.approx(9 / 26, abs=1e-12)


def test_compare_names_the_variants_that_exist(store: Store) -> None:
    with pytest.raises(UnknownVariantError,
                       match=r"endpoint 'rag-qa': no requests for variant 'canary'.*"
                             r"variants with requests: production, staging"):
        compare(store, "rag-qa", "production", "canary")
    with pytest.raises(UnknownVariantError, match=r"variants with requests: none"):
        compare(store, "nope", "production", "staging")


def test_comparison_without_votes_is_json_safe(store: Store) -> None:
    c = compare(store, "chat", "production", "canary")
    assert c.candidate.votes == 0 and math.isnan(c.difference) and math.isnan(c.candidate.rate)
    assert (c.low, c.high) == (-1.0, 1.0) and (c.z, c.p_value) == (0.0, 1.0)
    assert not c.passes(min_votes=0, min_prob_better=0.5)  # P(better) = 1/3 from one up vote
    data = c.to_dict()
    _plain_json(data)
    assert data["difference"] is None and data["candidate"]["rate"] is None
    assert data["candidate"]["low"] == 0.0 and data["candidate"]["high"] == 1.0


def test_version_comparison_across_endpoints(store: Store) -> None:
    versions = {s.variant: s for s in version_stats(store, "rag_qa")}
    assert list(versions) == ["v3", "v4"]
    v4 = versions["v4"]  # staging on rag-qa and production on rag-qa-internal
    assert (v4.requests, v4.failed, v4.votes, v4.up, v4.down) == (6, 0, 6, 5, 1)
    assert v4.chain == "chain.rag_qa" and v4.chain_versions == (4,)
    c = version_comparison(store, "chain.rag_qa", 3, 4)
    assert (c.baseline.votes, c.baseline.up, c.candidate.votes, c.candidate.up) == (9, 6, 6, 5)
    assert c.prob_better == prob_better(6, 9, 5, 6)
    assert (c.low, c.high) == diff_interval(6, 9, 5, 6)
    assert c.passes(min_votes=6, min_prob_better=0.8) is (prob_better(6, 9, 5, 6) > 0.8)
    since = version_comparison(store, "rag_qa", 3, 4, since=T0 + 5)
    assert (since.baseline.requests, since.candidate.requests) == (6, 1)  # p5..p10; s5
    with pytest.raises(UnknownVariantError,
                       match=r"chain.rag_qa: no requests for version 'v9'.*versions with "
                             r"requests: v3, v4"):
        version_comparison(store, "rag_qa", 3, 9)


def test_report_table_comparison_and_png(store: Store, home: Path) -> None:
    from matplotlib import image

    png = home / "reports" / "ab.png"
    rep = report(store, "rag-qa", png=png)
    assert rep.comparison is not None and rep.note is None
    assert (rep.comparison.baseline.variant, rep.comparison.candidate.variant) == (
        "production", "staging")
    table = rep.table
    assert list(table.index) == ["production", "staging"]
    assert table.loc["production", "votes"] == 9 and table.loc["staging", "up"] == 4
    assert table.loc["production", "chain_versions"] == "3"
    assert table.loc["staging", "rate"] == pytest.approx(0.8)
    assert table.loc["production", "low"] == pytest.approx(wilson_interval(6, 9)[0])
    assert rep.png == png
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    pixels = image.imread(png)
    assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert [p.name for p in png.parent.iterdir()] == ["ab.png"]  # no temporary file left
    _plain_json(rep.to_dict())
    assert rep.to_dict()["png"] == str(png)


def test_report_without_a_clear_pair(store: Store, home: Path) -> None:
    one = report(store, "summarize", png=home / "one.png")
    assert one.comparison is None and "1 variant (production); name a candidate" in (one.note or "")
    assert (home / "one.png").read_bytes()[:8] == PNG_SIGNATURE
    other = report(store, "chat", baseline="stable")
    assert other.comparison is None and other.png is None
    assert other.note == (
        "no comparison: baseline 'stable' has no requests (variants: canary, production)")
    named = report(store, "rag-qa", baseline="staging", candidate="production")
    assert named.comparison is not None and named.comparison.candidate.variant == "production"
    with pytest.raises(UnknownVariantError, match=r"variant 'beta'"):
        report(store, "rag-qa", candidate="beta")
    with pytest.raises(UnknownVariantError,
                       match=r"no requests for endpoint 'nope' in the log \(endpoints with "
                             r"requests: chat, rag-qa, rag-qa-internal, summarize\)"):
        report(store, "nope")


def test_cli_report_json_and_default_png(store: Store, home: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["report", "rag-qa", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    png = home / "reports" / "ab-rag-qa.png"
    assert data["png"] == str(png) and png.read_bytes()[:8] == PNG_SIGNATURE
    assert [v["variant"] for v in data["variants"]] == ["production", "staging"]
    assert data["comparison"]["candidate"]["up"] == 4
    assert data["comparison"]["prob_better"] == pytest.approx(prob_better(6, 9, 4, 5))
    _plain_json(data)

    result = runner.invoke(app, ["report", "rag-qa", "--json", "--no-png", "--since",
                                 str(T0 + 6), "--baseline", "staging", "--candidate", "production"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["png"] is None and data["since"] == T0 + 6
    assert data["comparison"]["candidate"]["votes"] == 3


def test_cli_report_table(store: Store, home: Path) -> None:
    out = home / "chart.png"
    result = CliRunner().invoke(app, ["report", "rag-qa", "--png", str(out)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "production" in result.stdout and "staging" in result.stdout
    assert "66.7%" in result.stdout and "80.0%" in result.stdout
    assert "staging - production: +13.3%" in result.stdout
    assert f"chart: {out}" in result.stdout
    assert out.read_bytes()[:8] == PNG_SIGNATURE


def test_cli_errors_name_the_problem(store: Store) -> None:
    from llmops.errors import EvalError

    result = CliRunner().invoke(app, ["report", "rag-qa", "--since", "yesterday"])
    assert isinstance(result.exception, EvalError)
    assert "--since 'yesterday': not an ISO date or time" in str(result.exception)
    result = CliRunner().invoke(app, ["report", "rag-qa", "--candidate", "beta", "--no-png"])
    assert isinstance(result.exception, UnknownVariantError)


def test_parse_time() -> None:
    assert parse_time("1767225600") == 1767225600.0
    assert parse_time("1767225600.5") == 1767225600.5
    assert parse_time("2026-01-01T00:00:00Z") == 1767225600.0
    assert parse_time("2026-01-01T01:00:00+01:00") == 1767225600.0
