"""The steps of a tabular pipeline, as the CLI runs them: refresh, train, drift."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from llmops.config import Settings
from llmops.errors import ConfigError
from llmops.registry import Ref, Registry, Tracking
from llmops.tabular.config import PipelineSpec
from llmops.tabular.drift import FeatureDrift, feature_drift
from llmops.tabular.model import evaluate, fit, register, split
from llmops.tabular.source import daily_batches
from llmops.tabular.tables import Medallion, RefreshReport, read, version_of
from llmops.tabular.training import training_set


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
    features, labels = daily_batches(spec.source.days, seed=spec.source.seed)[day]
    m.ingest(features, source=f"day-{day}")
    m.ingest_labels(labels, source=f"day-{day}")
    return day, m.refresh()


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
    m = medallion(spec, settings)
    labels = read(m.paths["labels"])
    if version_of(m.paths["gold"]) is None or labels.empty:
        raise ConfigError(f"{spec.name}: no features or labels yet: run "
                          f"`llmops tabular features refresh {spec.name}` first")
    ts = training_set(m.paths["gold"], labels)
    parts = split(ts, holdout=spec.holdout, seed=spec.seed)
    model, info = fit(parts.train, seed=spec.seed)
    metrics = evaluate(model, parts.holdout)
    with Tracking(settings).run("tabular", f"train {spec.name}",
                                tags={"llmops.gold_version": ts.gold_version}) as run:
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


def drift(spec: PipelineSpec, settings: Settings, registry: Registry, *,
          ref: str = "staging") -> tuple[str, list[FeatureDrift]]:
    """The newest gold batch against the training set of `tabular.<name>@ref`."""
    version = registry.resolve(Ref.parse(f"{spec.registered_name}@{ref}" if not ref.isdigit()
                                         else f"{spec.registered_name}/{ref}"))
    gold_version = int(version.tags["lineage.gold_version"])
    m = medallion(spec, settings)
    trained_on = read(m.paths["gold"], gold_version)
    head = version_of(m.paths["gold"])
    assert head is not None
    newest = read(m.paths["gold"], head)
    previous = read(m.paths["gold"], head - 1) if head > 0 else newest.iloc[:0]
    batch = newest.merge(previous[["entity_id", "event_time"]], how="left", indicator=True,
                         on=["entity_id", "event_time"])
    batch = batch[batch["_merge"] == "left_only"].drop(columns="_merge")
    if batch.empty:
        raise ConfigError(f"{spec.name}: the newest gold version added no rows to compare")
    return version.ref, feature_drift(trained_on, pd.DataFrame(batch))
