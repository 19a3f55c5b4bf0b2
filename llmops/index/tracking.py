"""Each index version as an MLflow run in the experiment `<prefix>/index`, through the registry.

A version whose logging failed, or whose refresh was killed before it, stays
pending in the index state; the next refresh logs it (`log_pending_runs`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from llmops.config import Settings

if TYPE_CHECKING:
    from llmops.index.config import IndexConfig
    from llmops.index.state import IndexState

log = logging.getLogger(__name__)

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


def log_pending_runs(
    settings: Settings, cfg: IndexConfig, state: IndexState, version: int | None
) -> str | None:
    """Log every version that has no MLflow run yet; the run id of `version`."""
    pending = state.unlogged()
    if not pending:
        return None
    run_id = None
    params = {
        "collection": cfg.collection,
        "chunk_size": str(cfg.chunk_size),
        "chunk_overlap": str(cfg.chunk_overlap),
        "embedding_model": settings.embedding_model,
        "embedding_backend": settings.embedding_backend,
        "vector_mode": settings.vector.mode,
        "sources": [s.model_dump(mode="json", exclude_none=True) for s in cfg.sources],
    }
    for record in pending:
        try:
            rid = log_version_run(
                settings,
                collection=cfg.collection,
                version=record.version,
                full=record.full,
                stats=record.stats,
                params={**params, "full": str(record.full).lower()},
            )
        except Exception as exc:  # the version stands; the next refresh retries the logging
            log.warning("index %s: MLflow logging of version %s failed: %s",
                        cfg.collection, record.version, exc)  # fmt: skip
            continue
        state.set_run_id(record.version, rid)
        if record.version == version:
            run_id = rid
    return run_id
