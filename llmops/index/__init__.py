"""The vector index: sources -> chunks -> embeddings -> Chroma, kept fresh by a refresh job.

Public API:
    refresh(full=False) -> RefreshResult     # incremental; one new version per change
    status() -> IndexStatus
    query(text, k=5) -> list[Hit]            # each Hit carries chunk id and index_version
    current_version() -> int | None
    as_retriever(k=5) -> a LangChain BaseRetriever

Configured by the `index:` section of llmops.yaml (`config.py`); the design
(in-place updates, new before old, crash recovery) is told in `job.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmops.errors import (
    IndexLockedError,
    IndexNotBuiltError,
    IndexStateError,
    SourceError,
    VectorStoreError,
)
from llmops.index.config import IndexConfig, load_index_config
from llmops.index.job import RefreshResult, refresh
from llmops.index.plan import RefreshStats
from llmops.index.reader import Hit, IndexStatus, current_version, query, status
from llmops.index.sources import Document, Source, SourceConfig, register_source, source_kinds

if TYPE_CHECKING:
    from llmops.index.retriever import IndexRetriever


def as_retriever(k: int = 5, **kwargs: Any) -> IndexRetriever:
    """A LangChain retriever over the index (see `retriever.as_retriever`)."""
    from llmops.index.retriever import as_retriever as _as_retriever

    return _as_retriever(k, **kwargs)


__all__ = [
    "Document",
    "Hit",
    "IndexConfig",
    "IndexLockedError",
    "IndexNotBuiltError",
    "IndexStateError",
    "IndexStatus",
    "RefreshResult",
    "RefreshStats",
    "Source",
    "SourceConfig",
    "SourceError",
    "VectorStoreError",
    "as_retriever",
    "current_version",
    "load_index_config",
    "query",
    "refresh",
    "register_source",
    "source_kinds",
    "status",
]
