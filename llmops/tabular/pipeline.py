"""The steps of a tabular pipeline, as the CLI runs them: refresh, train, drift."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd

from llmops.config import Settings
from llmops.errors import ConfigError
from llmops.registry import Ref, Registry, Tracking, VersionInfo
from llmops.tabular.config import PipelineSpec
from llmops.tabular.drift import FeatureDrift, feature_drift
from llmops.tabular.infer import Engine, Scope, Scored, batch_infer
from llmops.tabular.model import Split, evaluate, fit, register, split
from llmops.tabular.source import daily_batches
from llmops.tabular.tables import Medallion, RefreshReport, new_rows, read, version_of
from llmops.tabular.training import TrainingSet, training_set


def medallion(spec: PipelineSpec, settings: Settings) -> Medallion:
    return Medallion(spec.root(settings))


def refresh(spec: PipelineSpec, settings: Settings, *, day: int | None = None
            ) -> tuple[int, RefreshReport]:
    """Ingest a day of the stream (default: the next one not ingested) and refresh."""
    m = medallion(spec, settings)
    done = m.ingested()
    day = len(done) if day is None else day
    if not 0 <= day < spec.source.days:
        raise ConfigError(f"{spec.name}: day {day} is outside the stream's "
                          f"{spec.source.days} days (ingested: {len(done)})")
    if f"day-{day}" in done:
        raise ConfigError(f"{spec.name}: day {day} is in bronze already")
    src = spec.source
    shift = src.shift
    features, labels = daily_batches(
        src.days, seed=src.seed, shift_from=shift.from_day if shift else None,
        shift_scale=shift.scale if shift else 1.0,
        shift_features=tuple(shift.features) if shift else ())[day]
    m.ingest(features, source=f"day-{day}")
    m.ingest_labels(labels, source=f"day-{day}")
    return day, m.refresh()


@contextlib.contextmanager
def autologged(settings: Settings, run_id: str) -> Iterator[None]:
    """MLflow's scikit-learn autologging into run `run_id` while the block runs (the
    grid search's candidates become child runs); models are registered by us, not it."""
    import mlflow
    from mlflow.tracking import fluent

    previous = mlflow.get_tracking_uri()
    # a process that traces chains has set an active experiment (chains/runtime.py);
    # resuming our run, in its own experiment, must not be refused for it
    experiment = fluent._active_experiment_id
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.sklearn.autolog(log_models=False, log_datasets=False, log_input_examples=False,
                           log_post_training_metrics=False, silent=True, max_tuning_runs=10)
    fluent._active_experiment_id = None
    try:
        with mlflow.start_run(run_id=run_id):
            yield
    finally:
        fluent._active_experiment_id = experiment
        mlflow.sklearn.autolog(disable=True)
        mlflow.set_tracking_uri(previous)


@dataclass(frozen=True)
class Trained:
    ref: str
    created: bool
    gold_version: int
    rows: int
    metrics: dict[str, float]
    info: dict[str, Any]


def train(spec: PipelineSpec, settings: Settings, registry: Registry) -> Trained:
    """Train on the gold table now, evaluate, register, and point `staging` at it."""
    ts, parts = _split_now(spec, settings)
    with Tracking(settings).run("tabular", f"train {spec.name}",
                                tags={"llmops.gold_version": ts.gold_version}) as run:
        with autologged(settings, run.run_id):  # the search's parameters, scores, children
            model, info = fit(parts.train, seed=spec.seed)
        metrics = evaluate(model, parts.holdout)
        run.log_batch(params={**info["best_params"], "gold_version": ts.gold_version,
                              "rows": len(ts.frame), "holdout": spec.holdout},
                      metrics={**metrics, "cv_roc_auc": info["cv_roc_auc"]})
        version, created = register(registry, run, spec.name, model, ts, metrics, info)
    current = {a: v.version for v in registry.list_versions(spec.registered_name)
               for a in v.aliases}.get("staging")
    if current != version.version:
        registry.move_alias(spec.registered_name, "staging", version.version, expect=current,
                            reason=f"trained on gold version {ts.gold_version}")
    return Trained(version.ref, created, ts.gold_version, len(ts.frame), metrics, info)


def plan_train(spec: PipelineSpec, settings: Settings,
               registry: Registry) -> tuple[int, int, int, int | None]:
    """What `train` would train on, with nothing trained or registered: (gold version, rows,
    held-out rows, the version `staging` points at now)."""
    ts, parts = _split_now(spec, settings)
    staging = ({a: v.version for v in registry.list_versions(spec.registered_name)
                for a in v.aliases}.get("staging")
               if registry.exists(spec.registered_name) else None)
    return ts.gold_version, len(ts.frame), len(parts.holdout), staging


def resolve(spec: PipelineSpec, registry: Registry, ref: str) -> VersionInfo:
    """`staging`, `production` or a version number of `tabular.<name>`."""
    name = spec.registered_name
    return registry.resolve(Ref.parse(f"{name}/{ref}" if ref.isdigit() else f"{name}@{ref}"))


def holdout(spec: PipelineSpec, settings: Settings) -> tuple[int, pd.DataFrame]:
    """The gold version now and the held-out rows of its training set (the same
    entities for every version: see `model.split`)."""
    ts, parts = _split_now(spec, settings)
    return ts.gold_version, parts.holdout


def _split_now(spec: PipelineSpec, settings: Settings) -> tuple[TrainingSet, Split]:
    """The training set of the gold table now (point in time), split by entity."""
    m = medallion(spec, settings)
    labels = read(m.paths["labels"])
    if version_of(m.paths["gold"]) is None or labels.empty:
        raise ConfigError(f"{spec.name}: no features or labels yet: run "
                          f"`llmops tabular features refresh {spec.name}` first")
    ts = training_set(m.paths["gold"], labels)
    return ts, split(ts, holdout=spec.holdout, seed=spec.seed)


def evaluate_version(spec: PipelineSpec, settings: Settings, registry: Registry, *,
                     ref: str = "staging") -> tuple[VersionInfo, int, int, dict[str, float]]:
    """Hold-out metrics of a version on the gold table now, logged to a run of the
    `tabular` experiment: (version, gold version, rows, metrics)."""
    import mlflow.sklearn

    version = resolve(spec, registry, ref)
    gold_version, rows = holdout(spec, settings)
    model = mlflow.sklearn.load_model(str(registry.download(version.name, version.version)))
    metrics = evaluate(model, rows)
    with Tracking(settings).run("tabular", f"evaluate {version.ref}",
                                tags={"llmops.model": version.ref,
                                      "llmops.gold_version": gold_version}) as run:
        run.log_batch(params={"model": version.ref, "gold_version": gold_version,
                              "holdout_rows": len(rows)},
                      metrics={f"holdout_{k}": v for k, v in metrics.items()})
    return version, gold_version, len(rows), metrics


def infer(spec: PipelineSpec, settings: Settings, registry: Registry, *,
          ref: str = "production", gold_version: int | None = None, scope: Scope = "batch",
          engine: Engine | None = None, force: bool = False) -> Scored:
    """Score gold rows with a version of `tabular.<name>` into the predictions table."""
    version = resolve(spec, registry, ref)
    return batch_infer(medallion(spec, settings), name=spec.name, version=int(version.version),
                       model_dir=registry.download(version.name, version.version),
                       gold_version=gold_version, scope=scope,
                       engine=engine or settings.tabular.engine,
                       spark_master=settings.spark.master, force=force)


@dataclass(frozen=True)
class DriftCheck:
    model: str  # the version whose training set is the reference
    gold_version: int  # whose added rows are the batch
    batch_rows: int
    reference_rows: int
    features: list[FeatureDrift]

    @property
    def drifted(self) -> list[FeatureDrift]:
        return [d for d in self.features if d.drifted]


def drift(spec: PipelineSpec, settings: Settings, registry: Registry, *,
          ref: str = "staging") -> DriftCheck:
    """The newest gold batch against the training set of `tabular.<name>@ref`."""
    version = resolve(spec, registry, ref)
    gold_version = int(version.tags["lineage.gold_version"])
    m = medallion(spec, settings)
    trained_on = read(m.paths["gold"], gold_version)
    head = version_of(m.paths["gold"])
    assert head is not None
    batch = new_rows(m.paths["gold"], head - 1, head)
    if batch.empty:
        raise ConfigError(f"{spec.name}: the newest gold version added no rows to compare")
    return DriftCheck(version.ref, head, len(batch), len(trained_on),
                      feature_drift(trained_on, batch))
