"""The embedding model, loaded once per process, and batched encoding."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from llmops import hub

if TYPE_CHECKING:
    from llmops.hub import Embedder


def load_embedder(identity: str) -> Embedder:
    """The embedding model of an identity (`ref` or `ref#backend`: one per process,
    shared with the chains and the evaluation metrics)."""
    return hub.load_embedder(identity)


def encode(model: Embedder, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Float32 embeddings of `texts`, one row each."""
    out = model.encode(texts, batch_size=batch_size, show_progress_bar=False, convert_to_numpy=True)
    return np.asarray(out, dtype=np.float32)
