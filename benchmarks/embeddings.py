"""Embedding backends against sentence-transformers' torch `encode`, on the index's corpus.

The corpus is the reference index's own: the chunks `llmops index refresh` embeds
(llmops.yaml's sources, chunked as configured). Each backend of `embedding_backend`
(torch, torch-bf16, onnx, onnx-int8) embeds every chunk, batch 32, in this process,
with the threads its runtime chooses on this machine; the arms are timed after a
warm-up, best of `--rounds`. Quality, against the torch vectors:
- recall@10: for each question of `eval/qa.jsonl`, the share of torch's ten nearest
  chunks that the backend's ten nearest (its own query and chunk vectors) contain;
- the cosine of each chunk's two vectors (minimum and mean).

Goal (the issue's): onnx-int8 at least 2x torch's chunks/s with recall@10 at least 0.98.

Run: `python benchmarks/embeddings.py [--rounds 2] [--chunks N]`. Exit status 1 if missed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from llmops import hub
from llmops.config import EMBEDDING_BACKENDS, get_settings
from llmops.index.chunking import chunk_documents
from llmops.index.config import load_index_config
from llmops.index.job import load_documents

REPO = Path(__file__).resolve().parent.parent


def corpus(limit: int | None) -> tuple[list[str], list[str]]:
    settings = get_settings()
    cfg = load_index_config(REPO)
    docs = load_documents(cfg, settings, "index")
    chunks = [c.embed_text for c in chunk_documents(docs, cfg.chunk_size, cfg.chunk_overlap).values()]
    questions = [json.loads(line)["question"] for line in (REPO / "eval/qa.jsonl").open()]
    return chunks[:limit], questions


def top10(queries: np.ndarray, chunks: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ chunks.T), axis=1)[:, :10]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--chunks", type=int, default=None, help="the first N chunks only")
    args = ap.parse_args()
    chunks, questions = corpus(args.chunks)
    ref = get_settings().embedding_model
    print(f"{len(chunks)} chunks of the index's sources, {len(questions)} questions; "
          f"model {ref}")
    rows = {}
    base_chunks = base_top = None
    for backend in EMBEDDING_BACKENDS:
        t = time.perf_counter()
        model = hub.load_embedder(f"{ref}#{backend}")
        model.encode(chunks[:64], batch_size=32)  # warm-up (and the ONNX export, once)
        ready = time.perf_counter() - t
        best = float("inf")
        for _ in range(args.rounds):
            t = time.perf_counter()
            vectors = np.asarray(model.encode(chunks, batch_size=32, normalize_embeddings=True))
            best = min(best, time.perf_counter() - t)
        queries = np.asarray(model.encode(questions, batch_size=32, normalize_embeddings=True))
        found = top10(queries, vectors)
        if base_chunks is None:
            base_chunks, base_top = vectors, found
        assert base_top is not None
        recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(base_top, found,
                                                                          strict=True)]))
        cos = (vectors * base_chunks).sum(axis=1)
        rows[backend] = len(chunks) / best
        print(f"{backend:11s} {rows[backend]:7.1f} chunks/s  {rows[backend] / rows['torch']:5.2f}x"
              f"  recall@10 {recall:.3f}  cosine min {cos.min():.4f} mean {cos.mean():.5f}"
              f"  (load {ready:.1f} s)", flush=True)
        if backend == "onnx-int8":
            int8 = (rows[backend] / rows["torch"], recall)
    ok = int8[0] >= 2.0 and int8[1] >= 0.98
    print(f"goal: onnx-int8 >= 2x torch with recall@10 >= 0.98: {int8[0]:.2f}x, "
          f"recall {int8[1]:.3f}: {'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
