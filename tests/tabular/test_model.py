"""Train, evaluate and register `tabular.<name>` on the real registry, from the medallion."""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import pandas as pd

from llmops.registry import Tracking, get_registry
from llmops.tabular.model import evaluate, fit, register, split
from llmops.tabular.source import FEATURES, daily_batches
from llmops.tabular.tables import Medallion
from llmops.tabular.training import training_set


def test_a_model_is_trained_evaluated_and_registered_with_its_lineage(home: Path,
                                                                      tmp_path: Path) -> None:
    medallion = Medallion(tmp_path / "features")
    batches = daily_batches(days=6, seed=8)
    for day, (features, _) in enumerate(batches):
        medallion.ingest(features, source=f"day-{day}")
        medallion.refresh()
    labels = pd.concat([lab for _, lab in batches])
    ts = training_set(medallion.paths["gold"], labels)
    parts = split(ts, seed=1)
    assert not set(parts.train["entity_id"]) & set(parts.holdout["entity_id"])
    assert split(ts, seed=1).holdout.equals(parts.holdout)  # the same split again
    assert 0.15 < len(parts.holdout) / len(ts.frame) < 0.35
    model, info = fit(parts.train, seed=1)
    assert info["searched"] == 3 and 0.9 < info["cv_roc_auc"] <= 1
    metrics = evaluate(model, parts.holdout)
    assert metrics["roc_auc"] > 0.95 and metrics["accuracy"] > 0.9  # the data set is easy

    reg = get_registry()
    with Tracking().run("tabular", "train cancer") as run:
        run.log_batch(params=info["best_params"], metrics=metrics)
        version, created = register(reg, run, "cancer", model, ts, metrics, info)
    assert created and version.name == "tabular.cancer"
    tags = reg.get("tabular.cancer", version.version).tags
    assert tags["lineage.gold_version"] == str(ts.gold_version)
    assert tags["lineage.data_sha256"] == ts.digest
    loaded = mlflow.sklearn.load_model(str(reg.download("tabular.cancer", version.version)))
    assert (loaded.predict(parts.holdout[FEATURES]) == model.predict(
        parts.holdout[FEATURES])).all()
    with Tracking().run("tabular", "train cancer again") as run:
        again, created = register(reg, run, "cancer", model, ts, metrics, info)
    assert not created and again.version == version.version  # same model, same data: once


def test_training_works_in_a_process_that_traces_chains(home: Path) -> None:
    """Tracing sets an active MLflow experiment (chains/runtime.py); training resumes its
    own run in the `tabular` experiment all the same, and leaves tracing's in place."""
    import mlflow
    from mlflow.tracking import fluent

    from llmops.config import get_settings
    from llmops.registry import get_registry
    from llmops.tabular.config import load_pipeline
    from llmops.tabular.pipeline import refresh, train

    settings = get_settings()
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    traces = get_registry().experiment_id("traces")
    mlflow.set_experiment(experiment_id=traces)
    try:
        spec = load_pipeline("cancer", settings)
        for _ in range(3):
            refresh(spec, settings)
        trained = train(spec, settings, get_registry())
        assert trained.created and trained.ref == "tabular.cancer/1"
        assert fluent._active_experiment_id == traces
    finally:
        fluent._active_experiment_id = None
