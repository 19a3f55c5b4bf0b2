"""`llmops gate tabular.cancer`: candidate against production on the pipeline's held-out
entities; a better challenger moves production by compare-and-set, a worse one is
archived."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmops.config import get_settings
from llmops.registry import Tracking, get_registry
from llmops.tabular.config import load_pipeline
from llmops.tabular.model import evaluate, fit, register, split
from llmops.tabular.pipeline import medallion, refresh
from llmops.tabular.tables import read
from llmops.tabular.training import TrainingSet, training_set
from tests.cli_helpers import cli


def _register(frame_of: TrainingSet, holdout_from: TrainingSet, tag: str) -> int:
    spec = load_pipeline("cancer", get_settings())
    parts = split(frame_of, holdout=spec.holdout, seed=spec.seed)
    model, info = fit(parts.train, seed=0)
    metrics = evaluate(model, split(holdout_from, holdout=spec.holdout, seed=spec.seed).holdout)
    with Tracking().run("tabular", f"train {tag}") as run:
        version, _ = register(get_registry(), run, "cancer", model, frame_of, metrics, info)
    return version.version


def test_a_better_challenger_moves_production_and_a_worse_one_is_archived(home: Path) -> None:
    settings = get_settings()
    spec = load_pipeline("cancer", settings)
    for _ in range(6):
        refresh(spec, settings)
    m = medallion(spec, settings)
    full = training_set(m.paths["gold"], read(m.paths["labels"]))
    train_rows = split(full, holdout=spec.holdout, seed=spec.seed).train
    # the champion: trained on a sliver of the rows (still above the gate's baselines)
    sliver = TrainingSet(train_rows.groupby("label").head(6).reset_index(drop=True),
                         full.gold_version)
    champion = _register(sliver, full, "sliver")
    first = cli("gate", "tabular.cancer", "--candidate", str(champion))
    assert first.exit_code == 0, first.stdout + first.stderr
    assert get_registry().resolve("tabular.cancer@production").version == champion

    better = _register(full, full, "all rows")
    passed = cli("gate", "tabular.cancer", "--candidate", str(better), "--json")
    assert passed.exit_code == 0, passed.stdout
    decision = passed.json()
    assert decision["passed"] and decision["production"] == champion
    assert decision["dataset"] == "tabular/cancer.yaml"
    roc = next(c for c in decision["checks"] if c["name"] == "roc_auc")["numbers"]
    assert roc["candidate"] > roc["production"]
    assert get_registry().resolve("tabular.cancer@production").version == better
    moved = get_registry().history("tabular.cancer")[-1]
    assert (moved.action, moved.from_version, moved.to_version) == ("move", champion, better)

    rng = np.random.default_rng(0)
    noise = full.frame.assign(label=rng.permutation(full.frame["label"].to_numpy()))
    worse = _register(TrainingSet(noise, full.gold_version), full, "shuffled labels")
    failed = cli("gate", "tabular.cancer", "--candidate", str(worse), "--json")
    assert failed.exit_code == 1
    body = failed.json()
    assert not body["passed"] and body["archived"]
    assert get_registry().get("tabular.cancer", worse).archived
    assert get_registry().resolve("tabular.cancer@production").version == better
