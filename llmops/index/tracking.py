"""Each index version as an MLflow run in the experiment `<prefix>-index`.

Kept to one small function so that it can move behind `llmops/registry.py`
(the project's one door to MLflow) when that module offers run logging.
"""

from __future__ import annotations

import json
from typing import Any

from llmops.config import Settings

RUN_METRICS = (
    "documents", "chunks",
    "documents_added", "documents_updated", "documents_deleted", "documents_unchanged",
    "chunks_added", "chunks_updated", "chunks_deleted", "chunks_unchanged",
    "embedded", "written", "removed", "duration_s", "embed_s", "embeddings_per_s",
)  # fmt: skip


def experiment_name(settings: Settings) -> str:
    return f"{settings.experiment_prefix}-index"


def log_version_run(
    settings: Settings,
    *,
    collection: str,
    version: int,
    full: bool,
    stats: dict[str, Any],
    params: dict[str, Any],
) -> str:
    """Log one index version (params, stats as metrics, tags) and return the run id."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param
    from mlflow.exceptions import MlflowException

    client = MlflowClient(
        tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_registry_uri
    )
    name = experiment_name(settings)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        try:
            experiment_id = client.create_experiment(
                name, artifact_location=f"{settings.artifact_root}/{name}"
            )
        except MlflowException:  # created meanwhile by another process
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            experiment_id = found.experiment_id
    tags = {
        "llmops.kind": "index-refresh",
        "llmops.index.collection": collection,
        "llmops.index.version": str(version),
        "llmops.index.full": str(full).lower(),
    }
    run = client.create_run(experiment_id, run_name=f"{collection}-v{version}", tags=tags)
    run_id = run.info.run_id
    now = run.info.start_time
    metrics = [Metric(key, float(stats[key]), now, 0) for key in RUN_METRICS if key in stats]
    mlflow_params = [
        Param(k, v if isinstance(v, str) else json.dumps(v, sort_keys=True))
        for k, v in sorted(params.items())
    ]
    client.log_batch(run_id, metrics=metrics, params=mlflow_params)
    client.set_terminated(run_id, "FINISHED")
    return run_id
