"""The refresh job: sources -> chunks -> embeddings -> Chroma, incrementally and crash-safely.

Design: one Chroma collection per index, updated in place, new before old.

The alternative was a collection per index version, filled by copying the
unchanged embeddings forward from the previous one. It gives readers perfect
snapshots, but every refresh would rewrite every unchanged chunk (which should
be neither re-embedded nor rewritten), its cost grows with the index
rather than with the change (5,000 records cost seconds to add to Chroma on
this machine while a 1% change embeds a few dozen chunks), and it doubles the
database while it runs. In place, a refresh touches only what changed:

1. Plan. Desired state: the chunks of the sources now (ids from content,
   see `chunking.py`). Actual state: the manifest of the last commit, or, if a
   refresh was interrupted (the `dirty` flag) or the collection differs from
   what the manifest describes, the ids and record hashes read back from the
   collection itself. So the collection, not a log of intentions, says what is
   done, and whatever a killed refresh managed to write is kept, not redone.
2. Write new records first: embed the chunks missing from the collection
   (sorted by length, in batches, with a progress bar) and upsert them; then
   rewrite the metadata of chunks whose text is unchanged but whose metadata
   changed (no embedding); only then delete the chunks that are gone. A
   changed document therefore always has its new chunks, its old ones, or
   both: a reader never sees it missing.
3. Commit: one SQLite transaction (`state.py`) records the new version with
   its stats, the manifest and `dirty = 0`; then the version record readers
   use is written into the collection's metadata (`llmops_index_version`,
   `llmops_generation`, ...; see `store.py`), which works the same for an
   embedded and a server Chroma. A refresh killed between the two is rolled
   forward by the next one. Then the version is logged as an MLflow run (a
   version whose logging failed or was killed is logged by the next refresh).

A refresh killed at any point thus leaves (a) the old version's records, (b)
some new records, and possibly (c) some old ones already deleted; the next
refresh reads the collection back and converges to exactly what a clean build
writes: the same ids, texts and metadata, and the same embeddings (up to the
float noise of batching).

What readers see: the last committed version, plus, while a refresh runs,
the next version's new chunks beside the old ones (never fewer documents;
an embedded reader in another process sees them once it reloads, which it
does at each commit and whenever a hit it loaded has been deleted: see
`store.py`). A hit's `index_version` is the version committed when the query
ran. The price of in place: no snapshot reads, and for a moment a changed
document may answer with old and new chunks side by side.

`--full` re-embeds and rewrites every chunk and deletes everything else, in
place, so readers are served throughout; it also recreates the collection
when the embedding model changed (the dimension may differ).

The plan (step 1) is `plan.py`; the MLflow logging, `tracking.py`. A refresh
calls `step_hook`, when set, at each named step: `dirty`, `batch-<n>`,
`written`, `updated`, `deleted`, `state-committed`, `committed` (the crash
tests stop a refresh there and SIGKILL it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

from llmops.config import CONFIG_FILE, Settings, get_settings
from llmops.errors import IndexStateError, SourceError, VectorStoreError
from llmops.index.chunking import Chunk, chunk_documents
from llmops.index.config import IndexConfig, load_index_config
from llmops.index.embed import encode, load_embedder
from llmops.index.lock import refresh_lock
from llmops.index.plan import RefreshStats, actual_state, diff_stats
from llmops.index.sources import Document, make_source
from llmops.index.state import IndexState
from llmops.index.store import (
    META_CHUNKS,
    META_DOCUMENTS,
    META_GENERATION,
    META_MODEL,
    META_REFRESHED_AT,
    META_VERSION,
    VectorStore,
    get_store,
)
from llmops.index.tracking import log_pending_runs

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

log = logging.getLogger(__name__)

# The seam a test fills to act at each named step of a refresh (see the module doc);
# None outside tests.
step_hook: Callable[[str], None] | None = None


@dataclass
class RefreshResult:
    """The outcome of `refresh()`."""

    collection: str
    version: int | None  # the current version after the run
    previous_version: int | None
    created: bool  # whether this run created `version`
    full: bool
    recovered: bool  # the collection differed from the last commit (interrupted refresh, drift)
    stats: RefreshStats = field(default_factory=RefreshStats)
    mlflow_run_id: str | None = None

    def summary(self) -> str:
        s = self.stats
        head = f"index {self.collection!r}: version {self.version}"
        head += " (new)" if self.created else " (unchanged)"
        return (
            f"{head}; documents +{s.documents_added} ~{s.documents_updated} "
            f"-{s.documents_deleted} ={s.documents_unchanged} ({s.documents} in all); "
            f"chunks +{s.chunks_added} ~{s.chunks_updated} -{s.chunks_deleted} "
            f"={s.chunks_unchanged} ({s.chunks} in all); embedded {s.embedded} "
            f"({s.embeddings_per_s:.1f}/s); {s.duration_s:.2f}s"
            + ("; recovered an interrupted refresh" if self.recovered else "")
        )


def refresh(
    full: bool = False,
    *,
    settings: Settings | None = None,
    config: IndexConfig | None = None,
    progress: bool = True,
) -> RefreshResult:
    """Bring the index up to date with its sources; one new version if anything changed.

    Args:
        full: re-embed and rewrite every chunk (and recreate the collection if
            the embedding model changed) instead of touching only what changed.
        settings: defaults to `get_settings()`.
        config: defaults to the `index:` section of the project's llmops.yaml.
        progress: show a progress bar while embedding.

    Raises:
        IndexLockedError: another refresh of this index is running.
        SourceError: a source is misconfigured, missing or empty.

    Example:
        >>> result = llmops.index.refresh()
        >>> result.version, result.stats.embedded
    """
    settings = settings or get_settings()
    cfg = config or load_index_config(settings.project_dir)
    where = f"{settings.project_dir / CONFIG_FILE}: index"
    if not cfg.sources:
        raise SourceError(f"{where}.sources: no source configured; add at least one")
    started = time.perf_counter()
    home = settings.ensure_home()
    # a Chroma server is shared: its refresh lock must hold across hosts too
    shared = settings.lock_database_url if settings.vector.mode == "server" else None
    with refresh_lock(home, cfg.collection, database_url=shared):
        docs = load_documents(cfg, settings, where)
        desired = chunk_documents(docs, cfg.chunk_size, cfg.chunk_overlap)
        if not desired:
            raise SourceError(f"{where}.sources: the sources hold no text to index")
        store = get_store(settings.vector)
        state = IndexState.for_collection(home, cfg.collection)
        try:
            return _run(settings, cfg, store, state, desired, full, progress, started)
        finally:
            state.close()


def load_documents(cfg: IndexConfig, settings: Settings, where: str) -> list[Document]:
    """Every document of every source; a source with no document is an error."""
    docs: list[Document] = []
    for i, src_cfg in enumerate(cfg.sources):
        at = f"{where}.sources.{i}"
        source = make_source(src_cfg, settings.project_dir, at)
        found = list(source.documents())
        if not found:
            raise SourceError(f"{source.where}: no documents")
        docs.extend(found)
    return docs


def _run(
    settings: Settings,
    cfg: IndexConfig,
    store: VectorStore,
    state: IndexState,
    desired: dict[str, Chunk],
    full: bool,
    progress: bool,
    started: float,
) -> RefreshResult:
    name = cfg.collection
    model_ref = settings.embedding_identity  # the model, and its backend unless torch
    found = store.collection(name)
    committed_gen = int(state.get("generation") or 0)
    if (
        state.dirty
        or found is None
        or (found.metadata or {}).get(META_GENERATION) != committed_gen
        or not store.is_current(name, committed_gen)
    ):
        # This process's view may predate another process's writes (each commit
        # bumps the generation; a killed refresh leaves `dirty`): load afresh.
        store.reopen()
    col = _open_collection(store, name, model_ref, full)
    latest = state.latest()
    previous = latest.version if latest else None
    meta = dict(col.metadata or {})
    if META_VERSION in meta and not state.dirty:
        _sync_pointer(col, state, meta)  # roll forward a commit whose pointer write was lost

    committed = state.manifest()
    actual, recovered = actual_state(col, state, committed, read_back=full)
    if full:
        to_embed = list(desired.values())
        to_update: list[Chunk] = []
    else:
        to_embed = [c for c in desired.values() if c.id not in actual]
        to_update = [c for c in desired.values() if c.id in actual and actual[c.id] != c.record_hash]
    to_delete = [cid for cid in actual if cid not in desired]
    stats = diff_stats(desired, committed)
    wrote = bool(to_embed or to_update or to_delete)

    if wrote:
        state.mark_dirty()
        _step("dirty")
    max_batch = store.client().get_max_batch_size()
    spark = settings.spark if cfg.embed_engine == "spark" else None
    stats.embedded, stats.embed_s = _embed_and_upsert(
        col, to_embed, model_ref, min(cfg.batch_size, max_batch), cfg.embed_batch_size, progress,
        spark=spark,
    )
    _step("written")
    for batch in _batches(to_update, max_batch):
        col.update(ids=[c.id for c in batch], metadatas=[c.metadata for c in batch])
    _step("updated")
    for ids in _batches(to_delete, max_batch):
        col.delete(ids=ids)
    _step("deleted")
    stats.written = len(to_embed) + len(to_update)
    stats.removed = len(to_delete)
    stats.embeddings_per_s = stats.embedded / stats.embed_s if stats.embed_s > 0 else 0.0

    create = stats.changed or full
    version = previous
    if create:
        version = max(previous or 0, _as_int(meta.get(META_VERSION)) or 0) + 1
    generation = int(state.get("generation") or 0)
    upserts = [
        (c.id, c.doc_id, c.record_hash)
        for c in desired.values()
        if committed.get(c.id) != (c.doc_id, c.record_hash)
    ]
    deletes = [cid for cid in committed if cid not in desired]
    stale_meta = state.dirty or state.get("collection_id") != str(col.id)
    stats.duration_s = time.perf_counter() - started
    if wrote or create or upserts or deletes or stale_meta:
        if wrote:
            generation += 1
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with state.transaction() as db:
            IndexState.apply_manifest(db, upserts, deletes)
            if create:
                assert version is not None
                IndexState.add_version(db, version, now, full, asdict(stats))
            state.set("generation", str(generation), db)
            state.set("collection_id", str(col.id), db)
            state.set("dirty", "0", db)
        _step("state-committed")
        _write_pointer(col, state, generation)
        store.mark_fresh(name, generation)
        _step("committed")
    run_id = log_pending_runs(settings, cfg, state, version if create else None)
    return RefreshResult(name, version, previous, create, full, recovered, stats, run_id)


def _open_collection(store: VectorStore, name: str, model_ref: str, full: bool) -> Collection:
    col = store.collection(name)
    if col is not None:
        built_with = (col.metadata or {}).get(META_MODEL)
        if built_with is not None and built_with != model_ref:
            if not full:
                raise IndexStateError(
                    f"index {name!r} was built with embedding {built_with!r}, the settings "
                    f"name {model_ref!r}; rebuild it with: llmops index refresh --full"
                )
            store.delete(name)
            col = None
    if col is None:
        try:
            col = store.create(name, {META_MODEL: model_ref, META_GENERATION: 0})
        except Exception as exc:
            raise VectorStoreError(f"cannot create collection {name!r}: {exc}") from exc
    return col


def _embed_and_upsert(
    col: Collection,
    chunks: list[Chunk],
    model_ref: str,
    batch_size: int,
    embed_batch_size: int,
    progress: bool,
    spark: Any = None,
) -> tuple[int, float]:
    """Embed and upsert `chunks` in batches; returns (texts embedded, seconds in the model).
    `spark` (the settings' `spark` section): every text embedded on Spark first."""
    if not chunks:
        return 0, 0.0
    from tqdm.auto import tqdm

    # Longest first, as sentence-transformers orders one call, so batches pad
    # least; equal texts side by side, so that each is embedded once.
    ordered = sorted(chunks, key=lambda c: (-len(c.embed_text), c.embed_text))
    embed_s = 0.0
    embedded = 0
    bulk: dict[str, np.ndarray] = {}
    if spark is not None:
        from llmops.index.spark_embed import spark_encode

        unique_all = list(dict.fromkeys(c.embed_text for c in ordered))
        t = time.perf_counter()
        vectors_all = spark_encode(unique_all, model_ref, batch_size=embed_batch_size,
                                   master=spark.master, driver_memory=spark.driver_memory)
        embed_s, embedded = time.perf_counter() - t, len(unique_all)
        bulk = dict(zip(unique_all, vectors_all, strict=True))
    model = load_embedder(model_ref) if spark is None else None
    with tqdm(
        total=len(ordered), desc=f"embedding {col.name}", unit="chunk", disable=not progress
    ) as bar:
        for n, batch in enumerate(_batches(ordered, batch_size), 1):
            texts = [c.embed_text for c in batch]
            if model is None:
                vectors = np.stack([bulk[text] for text in texts])
            else:
                unique = list(dict.fromkeys(texts))
                t = time.perf_counter()
                vectors = encode(model, unique, embed_batch_size)
                embed_s += time.perf_counter() - t
                embedded += len(unique)
                if len(unique) < len(texts):
                    row = {text: i for i, text in enumerate(unique)}
                    vectors = vectors[[row[text] for text in texts]]
            col.upsert(
                ids=[c.id for c in batch],
                embeddings=vectors,
                documents=[c.text for c in batch],
                metadatas=[c.metadata for c in batch],
            )
            bar.update(len(batch))
            _step(f"batch-{n}")
    return embedded, embed_s


def _write_pointer(col: Collection, state: IndexState, generation: int) -> None:
    """Write the version record readers use into the collection's metadata."""
    latest = state.latest()
    meta = dict(col.metadata or {})
    meta.update(
        {
            META_GENERATION: generation,
            META_DOCUMENTS: latest.stats.get("documents", 0) if latest else 0,
            META_CHUNKS: latest.stats.get("chunks", 0) if latest else 0,
        }
    )
    if latest is not None:
        meta[META_VERSION] = latest.version
        meta[META_REFRESHED_AT] = latest.created_at
    col.modify(metadata=meta)


def _sync_pointer(col: Collection, state: IndexState, meta: dict[str, Any]) -> None:
    latest = state.latest()
    generation = int(state.get("generation") or 0)
    if latest is None or state.get("collection_id") != str(col.id):
        return
    if meta.get(META_VERSION) != latest.version or meta.get(META_GENERATION) != generation:
        log.info("index %s: completing the commit of version %s", col.name, latest.version)
        _write_pointer(col, state, generation)


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _step(name: str) -> None:
    if step_hook is not None:
        step_hook(name)
