"""Sticky weighted assignment (property tests) and the routes file's validation."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from llmops.errors import SpecError
from llmops.serving.router import assign, bucket
from llmops.serving.spec import load_routes

USERS = [f"user-{i}" for i in range(10_000)]
Z99 = 2.5758  # two-sided 99% normal quantile

weights_st = st.lists(
    st.tuples(st.text("abcdefgh", min_size=1, max_size=6), st.integers(0, 100)),
    min_size=1, max_size=5, unique_by=lambda t: t[0],
).filter(lambda ws: any(w > 0 for _, w in ws))


@given(endpoint=st.text(max_size=20), user=st.text(max_size=40), weights=weights_st)
def test_assignment_is_sticky_and_never_picks_weight_zero(
    endpoint: str, user: str, weights: list[tuple[str, int]]
) -> None:
    first = assign(endpoint, user, weights)
    assert first == assign(endpoint, user, list(weights))  # same user, same variant
    assert dict(weights)[first] > 0
    assert 0.0 <= bucket(endpoint, user) < 1.0


@settings(max_examples=25, deadline=None)
@given(weights=weights_st)
def test_weight_zero_gets_no_traffic_over_many_users(weights: list[tuple[str, int]]) -> None:
    zero = {n for n, w in weights if w == 0}
    seen = {assign("ep", u, weights) for u in USERS[:2000]}
    assert not seen & zero


@pytest.mark.parametrize("weights", [
    [("production", 90), ("staging", 10)],
    [("a", 50), ("b", 50)],
    [("a", 1), ("b", 99)],
    [("a", 33), ("b", 33), ("c", 34)],
    [("a", 70), ("off", 0), ("b", 20), ("c", 10)],
])
def test_split_over_10000_users_is_within_the_99_percent_binomial_interval(
    weights: list[tuple[str, int]]
) -> None:
    n = len(USERS)
    counts: dict[str, int] = dict.fromkeys((name for name, _ in weights), 0)
    for u in USERS:
        counts[assign("rag-qa", u, weights)] += 1
    total = sum(w for _, w in weights)
    live = sum(1 for _, w in weights if w > 0)
    z = Z99 if live <= 2 else 3.02  # Bonferroni: the 1% shared by up to 4 variants
    for name, w in weights:
        p = w / total
        half = z * math.sqrt(n * p * (1 - p))
        assert abs(counts[name] - n * p) <= half, (name, counts[name], n * p, half)


def test_assignment_is_the_same_in_another_process() -> None:
    weights = [("production", 90), ("staging", 10)]
    here = [assign("rag-qa", u, weights) for u in USERS[:300]]
    code = ("import json,sys; from llmops.serving.router import assign; "
            "print(json.dumps([assign('rag-qa', f'user-{i}', [('production', 90), "
            "('staging', 10)]) for i in range(300)]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert json.loads(out.stdout) == here


GOOD = {"endpoints": {"e": {"variants": [{"ref": "chain.x@production", "weight": 1}]}}}


@pytest.mark.parametrize(("change", "message"), [
    ({"endpoints": {}}, "endpoints"),
    ({"endpoints": {"e": {"variants": [{"ref": "chain.x@production", "weight": 0}]}}},
     "at least one variant needs a weight above 0"),
    ({"endpoints": {"e": {"variants": [{"ref": "x@a", "weight": 1}, {"ref": "y@a", "weight": 1}]}}},
     "variant names given twice: a"),
    ({"endpoints": {"e": {"variants": [{"ref": "chain.x@p", "weight": 1}], "shadow": "nope"}}},
     "shadow: 'nope' is not a variant"),
    ({"endpoints": {"e": {"variants": [{"ref": "chain.x@p", "weight": -1}]}}},
     "greater than or equal to 0"),
    ({"endpoints": {"e": {"variants": [{"ref": "chain.x@p", "weight": 1}], "extra": 1}}},
     "unknown key"),
    ({"endpoints": {"bad name": GOOD["endpoints"]["e"]}}, "endpoint names"),
])
def test_bad_routes_files_name_the_file_and_the_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **change}))
    with pytest.raises(SpecError, match=str(path)) as err:
        load_routes(path)
    assert message in str(err.value)


def test_the_reference_routes_file_is_valid() -> None:
    spec = load_routes(Path(__file__).resolve().parents[2] / "serving" / "routes.yaml")
    rag = spec.endpoints["rag-qa"]
    assert [(v.label, v.ref, v.weight) for v in rag.variants] == [
        ("production", "chain.rag_qa@production", 90), ("staging", "chain.rag_qa@staging", 10)]
