"""Chroma access: one client per process and location, embedded or server.

An embedded Chroma (`PersistentClient`) keeps each collection's vector index in
memory once loaded, and a process does not see another process's later writes
to it: its queries keep returning the ids it loaded, and an id deleted since
comes back with no document. So readers here reopen the client when

- the collection's generation (bumped by every refresh that wrote) differs
  from the one their client loaded, or
- a query returns a hit without a document (deleted since the client loaded).

A collection another process creates is visible at once; the server mode
(`HttpClient`) has none of this and never reopens.

The collection's own metadata is the version record readers use (see
`job.py`): `llmops_index_version`, `llmops_generation` and friends.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from llmops.config import VectorSettings
from llmops.errors import VectorStoreError
from llmops.validation import one_line

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

# Keys of the version record in the collection's metadata.
META_VERSION = "llmops_index_version"
META_GENERATION = "llmops_generation"
META_REFRESHED_AT = "llmops_refreshed_at"
META_MODEL = "llmops_embedding_model"
META_DOCUMENTS = "llmops_documents"
META_CHUNKS = "llmops_chunks"


class VectorStore:
    """A process-wide Chroma client for one location, reopened when stale."""

    def __init__(self, vector: VectorSettings) -> None:
        self.vector = vector
        self.embedded = vector.mode == "embedded"
        self._lock = threading.RLock()
        self._client: ClientAPI | None = None
        self._loaded_generation: dict[str, int | None] = {}

    @property
    def location(self) -> str:
        if self.embedded:
            return str(self.vector.path)
        return f"http://{self.vector.host}:{self.vector.port}"

    def client(self) -> ClientAPI:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> ClientAPI:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        try:
            if self.embedded:
                assert self.vector.path is not None
                self.vector.path.mkdir(parents=True, exist_ok=True)
                return chromadb.PersistentClient(path=str(self.vector.path), settings=chroma_settings)
            return chromadb.HttpClient(
                host=self.vector.host, port=self.vector.port, settings=chroma_settings
            )
        except Exception as exc:  # chromadb raises bare ValueError/Exception on connect
            raise VectorStoreError(
                f"cannot open the Chroma {self.vector.mode} store at {self.location}: {one_line(exc)}"
            ) from exc

    def reopen(self) -> None:
        """Drop the cached client so the next call loads the collections afresh."""
        with self._lock:
            if self._client is not None and self.embedded:
                _forget_system(self._client)
            self._client = None
            self._loaded_generation.clear()

    def collection(self, name: str) -> Collection | None:
        """The collection, or None if it does not exist."""
        from chromadb.errors import NotFoundError

        try:
            return self.client().get_collection(name, embedding_function=None)
        except NotFoundError:
            return None
        except Exception as exc:
            raise VectorStoreError(
                f"Chroma at {self.location}: cannot read collection {name!r}: {one_line(exc)}"
            ) from exc

    def create(self, name: str, metadata: dict[str, Any]) -> Collection:
        """Create the collection (cosine space, no embedding function: we embed)."""
        return self.client().create_collection(
            name,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
            metadata=metadata,
        )

    def delete(self, name: str) -> None:
        self.client().delete_collection(name)

    # Staleness bookkeeping (embedded mode only).
    def is_stale(self, name: str, generation: int | None) -> bool:
        """Whether this process's view of `name` predates `generation`."""
        if not self.embedded:
            return False
        with self._lock:
            if name not in self._loaded_generation:
                self._loaded_generation[name] = generation
                return False
            return self._loaded_generation[name] != generation

    def is_current(self, name: str, generation: int | None) -> bool:
        """Whether this process holds a view of `name` known to be that of `generation`."""
        if not self.embedded:
            return True
        with self._lock:
            return self._client is not None and self._loaded_generation.get(name, -1) == generation

    def mark_fresh(self, name: str, generation: int | None) -> None:
        """Record that this process's view of `name` is that of `generation` (it wrote it)."""
        with self._lock:
            self._loaded_generation[name] = generation


_STORES: dict[tuple[str, str], VectorStore] = {}
_STORES_LOCK = threading.Lock()


def get_store(vector: VectorSettings) -> VectorStore:
    """The process-wide store of a location."""
    key = (
        vector.mode,
        str(vector.path) if vector.mode == "embedded" else f"{vector.host}:{vector.port}",
    )
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = VectorStore(vector.model_copy())
        return store


def _forget_system(client: ClientAPI) -> None:
    """Make the next PersistentClient of this path load from disk, leaving other clients alone."""
    from chromadb.api.shared_system_client import SharedSystemClient

    identifier = getattr(client, "_identifier", None)
    systems = getattr(SharedSystemClient, "_identifier_to_system", None)
    refcounts = getattr(SharedSystemClient, "_identifier_to_refcount", None)
    if isinstance(systems, dict) and isinstance(refcounts, dict) and identifier is not None:
        systems.pop(identifier, None)
        refcounts.pop(identifier, None)
    else:  # a chromadb without those internals: the public, process-wide reset
        SharedSystemClient.clear_system_cache()
