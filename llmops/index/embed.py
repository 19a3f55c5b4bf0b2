"""The embedding model, loaded once per process, and batched encoding."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llmops.hub import resolve_embedding_model

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


@functools.lru_cache(maxsize=2)
def _load(path: str) -> SentenceTransformer:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(path, local_files_only=True)


def load_embedder(ref: str) -> SentenceTransformer:
    """The sentence-transformers model of an embedding reference (cached per process)."""
    return _load(str(Path(resolve_embedding_model(ref)).resolve()))


def encode(model: SentenceTransformer, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Float32 embeddings of `texts`, one row each."""
    out = model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(out, dtype=np.float32)
