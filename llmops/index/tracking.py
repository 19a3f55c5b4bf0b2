"""Each index version as an MLflow run in the experiment `<prefix>/index`, through the registry."""

from __future__ import annotations

from typing import Any

from llmops.config import Settings

RUN_METRICS = (
    "documents", "chunks",
    "documents_added", "documents_updated", "documents_deleted", "documents_unchanged",
    "chunks_added", "chunks_updated", "chunks_deleted", "chunks_unchanged",
    "embedded", "written", "removed", "duration_s", "embed_s", "embeddings_per_s",
)  # fmt: skip


AREA = "index"


def experiment_name(settings: Settings) -> str:
    return f"{settings.experiment_prefix}/{AREA}"


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
    from llmops.registry import Registry

    tags = {
        "llmops.kind": "index-refresh",
        "llmops.index.collection": collection,
        "llmops.index.version": str(version),
        "llmops.index.full": str(full).lower(),
    }
    with Registry(settings).run(AREA, f"{collection}-v{version}", tags=tags) as run:
        run.log_batch(params=params,
                      metrics={k: float(stats[k]) for k in RUN_METRICS if k in stats})
    return run.run_id
