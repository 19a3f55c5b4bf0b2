"""The plan of a refresh: what the sources want against what the collection holds.

Desired state: the chunks of the sources now (ids from content, see
`chunking.py`). Actual state: the manifest of the last commit, or, when a
refresh was interrupted or the collection differs from the manifest, the ids
and record hashes read back from the collection itself (`actual_state`). The
difference counted against the last committed version is the version's
`RefreshStats` (`diff_stats`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llmops.index.chunking import HASH_KEY, Chunk

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

    from llmops.index.state import IndexState

_READ_PAGE = 20_000  # records per page when reading a collection back


@dataclass
class RefreshStats:
    """What a refresh found and did. Changes are counted against the previous version.

    A chunk is identified by its embedded text (title and text), so a changed
    chunk counts as one added and one deleted; `chunks_updated` counts chunks
    whose other metadata alone changed (rewritten, not re-embedded).
    """

    documents: int = 0  # documents in the index after the refresh
    chunks: int = 0  # chunks in the index after the refresh
    documents_added: int = 0
    documents_updated: int = 0
    documents_deleted: int = 0
    documents_unchanged: int = 0
    chunks_added: int = 0
    chunks_updated: int = 0
    chunks_deleted: int = 0
    chunks_unchanged: int = 0
    embedded: int = 0  # chunks embedded by this run
    written: int = 0  # records upserted or rewritten by this run
    removed: int = 0  # records deleted by this run
    duration_s: float = 0.0  # seconds, whole refresh
    embed_s: float = 0.0  # seconds spent in the embedding model
    embeddings_per_s: float = 0.0  # embedding throughput, chunks per second

    @property
    def changed(self) -> bool:
        return bool(
            self.chunks_added or self.chunks_updated or self.chunks_deleted or self.documents_deleted
        )


def actual_state(
    col: Collection, state: IndexState, committed: dict[str, tuple[str, str]], read_back: bool
) -> tuple[dict[str, str | None], bool]:
    """chunk id -> record hash of what the collection holds, and whether it had to be
    read back because it may differ from the manifest (an interrupted refresh, drift)."""
    if (
        not read_back
        and not state.dirty
        and state.get("collection_id") == str(col.id)
        and col.count() == len(committed)
    ):
        return {cid: h for cid, (_, h) in committed.items()}, False
    actual: dict[str, str | None] = {}
    offset = 0
    while True:
        page = col.get(include=["metadatas"], limit=_READ_PAGE, offset=offset)
        metas = page["metadatas"] or []
        for cid, meta in zip(page["ids"], metas, strict=True):
            value = (meta or {}).get(HASH_KEY)
            actual[cid] = value if isinstance(value, str) else None
        if len(page["ids"]) < _READ_PAGE:
            break
        offset += _READ_PAGE
    return actual, actual != {cid: h for cid, (_, h) in committed.items()}


def diff_stats(desired: dict[str, Chunk], committed: dict[str, tuple[str, str]]) -> RefreshStats:
    """The change from the committed manifest to the desired chunks, per chunk and document."""
    stats = RefreshStats(chunks=len(desired))
    new_docs: dict[str, set[tuple[str, str]]] = defaultdict(set)
    old_docs: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for c in desired.values():
        new_docs[c.doc_id].add((c.id, c.record_hash))
        old = committed.get(c.id)
        if old is None:
            stats.chunks_added += 1
        elif old[1] != c.record_hash:
            stats.chunks_updated += 1
        else:
            stats.chunks_unchanged += 1
    for cid, (doc_id, rhash) in committed.items():
        old_docs[doc_id].add((cid, rhash))
        if cid not in desired:
            stats.chunks_deleted += 1
    stats.documents = len(new_docs)
    for doc_id, chunks in new_docs.items():
        if doc_id not in old_docs:
            stats.documents_added += 1
        elif old_docs[doc_id] != chunks:
            stats.documents_updated += 1
        else:
            stats.documents_unchanged += 1
    stats.documents_deleted = sum(1 for d in old_docs if d not in new_docs)
    return stats
