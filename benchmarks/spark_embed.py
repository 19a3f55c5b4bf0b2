"""Bulk embedding on Spark local[2] (`mapInPandas`) against one process, per core.

A corpus of N chunks (default 20,000; the issue's figure is for 100,000: `--chunks
100000`, about 5x the time) of 200-800 characters, cut from the standard library's
documentation. Arms, each over the whole corpus, the embedding model from its
package:
- one process, one torch thread (the per-core baseline);
- one process, torch's default threads (both cores);
- `spark_encode` on local[2]: two tasks, one torch thread each, model loaded per task,
  rows in and out through Arrow (the session is started before timing; its start is
  printed beside).
Every arm's vectors must match the one-thread arm's (cosine > 0.9999). Goal: Spark's
chunks/s per core at least 0.9x the one-thread process's.

Run: `python benchmarks/spark_embed.py [--chunks 20000]`. Exit status 1 if missed.
"""

from __future__ import annotations

import argparse
import pydoc
import time

import numpy as np
import torch

from llmops.config import get_settings
from llmops.index.embed import encode, load_embedder
from llmops.index.spark_embed import spark_encode
from llmops.spark import spark_session


def corpus(n: int) -> list[str]:
    """`n` pieces of 200-800 characters of the standard library's own documentation."""
    text = "\n".join(pydoc.render_doc(m, renderer=pydoc.plaintext)
                     for m in ("collections", "itertools", "functools", "json", "pathlib",
                               "contextlib", "dataclasses", "typing"))
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        size = int(rng.integers(200, 800))
        start = int(rng.integers(0, len(text) - size))
        out.append(text[start:start + size])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=20_000)
    args = ap.parse_args()
    texts = corpus(args.chunks)
    ref = get_settings().embedding_model
    model = load_embedder(ref)
    encode(model, texts[:64])  # warm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    t = time.perf_counter()
    one = encode(model, texts)
    one_s = time.perf_counter() - t
    torch.set_num_threads(threads)
    t = time.perf_counter()
    both = encode(model, texts)
    both_s = time.perf_counter() - t

    t = time.perf_counter()
    spark = spark_session("local[2]")
    start_s = time.perf_counter() - t
    spark_encode(texts[:200], ref)  # the workers' imports, once
    t = time.perf_counter()
    on_spark = spark_encode(texts, ref)
    spark_s = time.perf_counter() - t
    spark.stop()
    for name, v in (("2 threads", both), ("spark", on_spark)):
        cos = float(np.sum(v * one, axis=1).min())
        assert cos > 0.9999, f"{name}: min cosine {cos}"

    n = len(texts)
    per_core = (n / spark_s / 2) / (n / one_s)
    print(f"{n:,} chunks")
    print(f"one process, 1 thread    {n / one_s:8.1f} chunks/s  ({one_s:.1f} s)")
    print(f"one process, {threads} threads   {n / both_s:8.1f} chunks/s  ({both_s:.1f} s)")
    print(f"Spark local[2]           {n / spark_s:8.1f} chunks/s  ({spark_s:.1f} s; session "
          f"start {start_s:.1f} s)")
    print(f"Spark per core / one process's 1 thread: {per_core:.2f} (goal >= 0.9)")
    return 0 if per_core >= 0.9 else 1


if __name__ == "__main__":
    raise SystemExit(main())
