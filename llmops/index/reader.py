"""Reading the index: the current version, queries, status.

Readers use only the Chroma collection (its metadata is the version record,
see `job.py`), so a gateway that shares the Chroma server but not the
refresh job's LLMOPS_HOME reads the same thing; `status()` adds the history
from the job's state file when this machine has it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from llmops.config import Settings, get_settings
from llmops.errors import IndexNotBuiltError
from llmops.index.chunking import HASH_KEY
from llmops.index.config import IndexConfig, load_index_config
from llmops.index.embed import encode, load_embedder
from llmops.index.lock import owner_alive, read_owner
from llmops.index.state import IndexState
from llmops.index.store import (
    META_DOCUMENTS,
    META_GENERATION,
    META_MODEL,
    META_REFRESHED_AT,
    META_VERSION,
    get_store,
)

_REOPENS = 3  # at most, per query


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk."""

    id: str  # chunk id, `<doc id>#<hash>`
    score: float  # cosine similarity, higher is closer
    text: str
    metadata: dict[str, Any]  # title, source, url or path, doc_id, ...
    index_version: int

    @property
    def doc_id(self) -> str:
        return str(self.metadata.get("doc_id", self.id.split("#", 1)[0]))

    @property
    def title(self) -> str:
        return str(self.metadata.get("title", self.doc_id))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class IndexStatus:
    """What `llmops index status` shows."""

    collection: str
    mode: str  # embedded | server
    location: str  # folder or URL of the Chroma store
    version: int | None  # current version (None: never built)
    generation: int | None
    documents: int
    chunks: int  # records in the collection now
    refreshed_at: str | None  # when the current version was committed
    embedding_model: str | None
    refresh_running: bool  # a refresh holds the lock now (this machine)
    interrupted: bool  # a refresh began writing and did not commit; the next one repairs it
    last_stats: dict[str, Any] | None = None  # stats of the current version (this machine)
    history: list[dict[str, Any]] = field(default_factory=list)  # latest first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _resolve(settings: Settings | None, config: IndexConfig | None) -> tuple[Settings, IndexConfig]:
    settings = settings or get_settings()
    return settings, config or load_index_config(settings.project_dir)


def current_version(
    *, settings: Settings | None = None, config: IndexConfig | None = None
) -> int | None:
    """The index's current version, or None if it was never built.

    Example:
        >>> llmops.index.current_version()
        3
    """
    settings, cfg = _resolve(settings, config)
    col = get_store(settings.vector).collection(cfg.collection)
    if col is None:
        return None
    value = (col.metadata or {}).get(META_VERSION)
    return value if isinstance(value, int) else None


def query(
    text: str,
    k: int = 5,
    *,
    where: dict[str, Any] | None = None,
    settings: Settings | None = None,
    config: IndexConfig | None = None,
) -> list[Hit]:
    """The `k` chunks closest to `text`, best first, each with the index version that served it.

    Args:
        text: the question or passage to match.
        k: how many chunks.
        where: an optional Chroma metadata filter, e.g. `{"source": "python-docs"}`.

    Raises:
        IndexNotBuiltError: the index has no version yet.

    Example:
        >>> hits = llmops.index.query("how does the with statement work", k=3)
        >>> [(h.id, round(h.score, 2), h.title) for h in hits]
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    settings, cfg = _resolve(settings, config)
    store = get_store(settings.vector)
    vector = None
    reopened = 0
    while True:
        col = store.collection(cfg.collection)
        meta = (col.metadata or {}) if col is not None else {}
        version = meta.get(META_VERSION)
        if col is None or not isinstance(version, int):
            raise IndexNotBuiltError(
                f"index {cfg.collection!r} has no version yet; run: llmops index refresh"
            )
        if store.is_stale(cfg.collection, meta.get(META_GENERATION)) and reopened < _REOPENS:
            store.reopen()  # a refresh committed since this process loaded the collection
            reopened += 1
            continue
        if vector is None:
            # the model and backend that built this version, whatever the settings say now
            vector = encode(load_embedder(meta.get(META_MODEL) or settings.embedding_identity),
                            [text])
        res = col.query(
            query_embeddings=vector,
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        ids = res["ids"][0]
        docs = (res["documents"] or [[]])[0]
        metas = (res["metadatas"] or [[]])[0]
        dists = (res["distances"] or [[]])[0]
        if any(d is None for d in docs) and store.embedded and reopened < _REOPENS:
            store.reopen()  # a record deleted since this process loaded the collection
            reopened += 1
            continue
        return [
            Hit(
                cid,
                1.0 - float(dist),
                doc,
                {k_: v for k_, v in (m or {}).items() if k_ != HASH_KEY},
                version,
            )
            for cid, doc, m, dist in zip(ids, docs, metas, dists, strict=True)
            if doc is not None
        ]


def status(*, settings: Settings | None = None, config: IndexConfig | None = None) -> IndexStatus:
    """The index's current version, counts, last refresh and whether one is running."""
    settings, cfg = _resolve(settings, config)
    store = get_store(settings.vector)
    col = store.collection(cfg.collection)
    meta = (col.metadata or {}) if col is not None else {}
    st = IndexStatus(
        collection=cfg.collection,
        mode=settings.vector.mode,
        location=store.location,
        version=_int(meta.get(META_VERSION)),
        generation=_int(meta.get(META_GENERATION)),
        documents=_int(meta.get(META_DOCUMENTS)) or 0,
        chunks=col.count() if col is not None else 0,
        refreshed_at=meta.get(META_REFRESHED_AT),
        embedding_model=meta.get(META_MODEL),
        refresh_running=owner_alive(read_owner(settings.home_dir, cfg.collection)),
        interrupted=False,
    )
    path = settings.home_dir / "index" / f"{cfg.collection}.sqlite"
    if path.is_file():
        state = IndexState(path)
        try:
            st.interrupted = state.dirty and not st.refresh_running
            history = state.history()
            st.history = [
                {"version": r.version, "created_at": r.created_at, "full": r.full,
                 "mlflow_run_id": r.mlflow_run_id, **r.stats}
                for r in history
            ]  # fmt: skip
            current = next((r for r in history if r.version == st.version), None)
            st.last_stats = current.stats if current else None
        finally:
            state.close()
    return st


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


__all__ = ["Hit", "IndexStatus", "current_version", "query", "status"]
