"""Bulk embedding on Spark: the chunks a refresh must embed, through `mapInPandas`.

`index.embed_engine: spark` in llmops.yaml: the refresh job hands the texts to embed to
Spark (`spark.master` in the settings; `local[2]` by default), each task loads the
embedding model from its package once (with the settings' `embedding_backend`; an ONNX
file is exported on the driver first) and encodes its rows with one thread (the
executor's cores run tasks side by side), and the vectors come back to the job, which
writes them to the new index version as it writes its own (so versions and the
readers' guarantees are the same either way). The model must be installed where the
executors run (the same package; on Databricks, a cluster library).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROWS_PER_TASK = 20_000  # enough to amortize a task's model load (about a second)


def spark_encode(texts: list[str], identity: str | None, *, batch_size: int = 32,
                 master: str = "local[2]", driver_memory: str = "2g") -> np.ndarray:
    """Float32 embeddings of `texts` (one row each, in order), computed on Spark.
    `identity`: the embedding model and backend (`Settings.embedding_identity`)."""
    from llmops import hub
    from llmops.config import get_settings, split_embedding_identity
    from llmops.spark import spark_session

    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    ref, backend = split_embedding_identity(identity or get_settings().embedding_identity)
    path = hub.resolve_embedding_model(ref)
    onnx = None
    if backend in ("onnx", "onnx-int8"):
        from llmops.embedders import onnx_file

        onnx = onnx_file(path, backend, get_settings().models_dir)  # exported once, here
    spark = spark_session(master, app="llmops-index-embed", driver_memory=driver_memory)
    n = len(texts)
    tasks = max(spark.sparkContext.defaultParallelism, math.ceil(n / ROWS_PER_TASK))
    frame = pd.DataFrame({"i": np.arange(n, dtype=np.int64), "text": texts})
    df = spark.createDataFrame(frame).repartition(tasks)

    def embed(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = _task_model(path, backend, onnx)
        for b in batches:
            vectors = model.encode(b["text"].tolist(), batch_size=batch_size,
                                   show_progress_bar=False, convert_to_numpy=True)
            yield pd.DataFrame({"i": b["i"].to_numpy(),
                                "vector": list(np.asarray(vectors, dtype=np.float32))})

    out = df.mapInPandas(embed, schema="i long, vector array<float>").toPandas()
    out = out.sort_values("i")
    if len(out) != n:
        raise RuntimeError(f"Spark returned {len(out)} embeddings for {n} texts")
    return np.vstack(out["vector"].to_numpy()).astype(np.float32)


def _task_model(path: Path, backend: str, onnx: Path | None) -> Any:
    """The embedding model of one Spark task: one thread (the executor's cores run tasks
    side by side)."""
    import torch

    torch.set_num_threads(1)
    if onnx is not None:
        from llmops.embedders import OnnxEmbedder

        return OnnxEmbedder(path, onnx, threads=1)
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
    if backend == "torch-bf16":
        from llmops.embedders import Bf16Embedder

        return Bf16Embedder(model)
    return model
