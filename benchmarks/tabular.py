"""Tabular pipelines: batch inference over a million rows, and incremental refreshes.

1. Batch inference. A gold Delta table of N rows (default 1,000,000: the breast-cancer
   rows resampled with 1% noise, unique entity ids) and the pipeline's model (scaling and
   logistic regression, saved as the registry saves it: an MLflow sklearn model in skops
   format). Arms, each on the same in-memory DataFrame, best of 3:
   - raw: the scikit-learn model's own `predict` (the model already loaded);
   - llmops pandas: what `batch-infer` calls, `predict_pandas` (the MLflow pyfunc, loaded
     once, then its `predict` with the signature's checks), timed on the predict call;
   - end to end: `batch_infer(scope="all")`: read the gold version, load the model,
     predict, write the predictions table (one Delta commit): rows/s, for context;
   - Spark local[2]: `predict_spark` (`mlflow.pyfunc.spark_udf`, Arrow in and out) with
     a warm session, and the session's start, reported beside.
   Every arm must give the raw model's predictions. Goal: llmops pandas >= 0.8x raw.
2. Incremental refresh. Two medallions: H days of history and 10 H days, each day D rows
   (defaults 10, 2,000). The time to ingest and refresh one more day, median of 5 days,
   in each. Goal: 10x the history costs under 1.5x the time.

Exit status 1 if a goal is missed.

Run: `python benchmarks/tabular.py [--rows 1000000] [--days 10] [--day-rows 2000]
[--only infer|refresh]`
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from llmops.spark import spark_session
from llmops.tabular.infer import batch_infer, predict_pandas, predict_spark
from llmops.tabular.model import fit, save
from llmops.tabular.source import FEATURES, START, reference_frame
from llmops.tabular.tables import Medallion, append, read


def synthetic(rows: int, *, seed: int, start_id: int = 0, day: int = 0) -> pd.DataFrame:
    """`rows` feature rows like the reference data (resampled, 1% noise), one day's times."""
    ref = reference_frame()
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(ref), rows)
    values = ref[FEATURES].to_numpy()[pick] * (1 + 0.01 * rng.standard_normal((rows, 30)))
    frame = pd.DataFrame(np.abs(values), columns=FEATURES)
    frame.insert(0, "entity_id", [f"b{start_id + i:08d}" for i in range(rows)])
    seconds = rng.integers(0, 86400, rows)
    frame.insert(1, "event_time", pd.to_datetime(
        [START + timedelta(days=day, seconds=int(s)) for s in seconds], utc=True))
    return frame


def best(fn: Any, rounds: int = 3) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def bench_infer(rows: int, tmp: Path, spark_rows: int) -> bool:
    ref = reference_frame()
    model, _ = fit(ref.assign(label=ref["label"]), seed=0)
    model_dir = save(model, tmp / "model", ref)
    m = Medallion(tmp / "infer")
    t = time.perf_counter()
    frame = synthetic(rows, seed=1)
    append(m.paths["gold"], frame, operation="features")
    print(f"gold table: {rows:,} rows written in {time.perf_counter() - t:.1f} s")
    gold = read(m.paths["gold"])

    raw_s, expected = best(lambda: model.predict(gold[FEATURES]))
    predict_pandas(model_dir, gold.head(10))  # the pyfunc's imports, once, as a process would
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    ours_s, ours = best(lambda: np.asarray(pyfunc.predict(gold[FEATURES])))
    load_s, _ = best(lambda: predict_pandas(model_dir, gold.head(1)))
    e2e_s, scored = best(lambda: batch_infer(m, name="bench", version=1, model_dir=model_dir,
                                             scope="all", force=True), rounds=2)
    assert np.array_equal(ours, expected), "the pyfunc disagrees with the model"
    written = read(m.root / "predictions")
    assert len(written) == 2 * rows and scored.rows == rows
    by_key = written.tail(rows).set_index("entity_id")["prediction"]
    assert np.array_equal(by_key.loc[gold["entity_id"]].to_numpy(), expected)

    ratio = (rows / ours_s) / (rows / raw_s)
    print(f"raw model.predict        {rows / raw_s:>12,.0f} rows/s  ({raw_s:.3f} s)")
    print(f"llmops pandas (pyfunc)   {rows / ours_s:>12,.0f} rows/s  ({ours_s:.3f} s)  "
          f"ratio {ratio:.2f}  (goal >= 0.80)")
    print(f"  loading the pyfunc model: {load_s:.3f} s, once per run")
    print(f"end to end batch_infer   {rows / e2e_s:>12,.0f} rows/s  ({e2e_s:.2f} s: read gold, "
          f"load, predict, write {rows:,} predictions)")

    t = time.perf_counter()
    spark = spark_session("local[2]")
    start_s = time.perf_counter() - t
    try:
        part = gold.head(spark_rows)
        predict_spark(model_dir, part.head(100), spark=spark)  # the workers' imports, once
        spark_s, by_spark = best(lambda: predict_spark(model_dir, part, spark=spark), rounds=2)
    finally:
        spark.stop()
    assert np.array_equal(by_spark, expected[:spark_rows]), "Spark disagrees with pandas"
    print(f"Spark local[2] spark_udf {spark_rows / spark_s:>12,.0f} rows/s  ({spark_s:.2f} s "
          f"for {spark_rows:,} rows; session start {start_s:.1f} s)  same predictions")
    return ratio >= 0.8


def bench_refresh(days: int, day_rows: int, tmp: Path) -> bool:
    def medallion_with(history: int, name: str) -> tuple[Medallion, int]:
        m = Medallion(tmp / name)
        for day in range(history):
            m.ingest(synthetic(day_rows, seed=day, start_id=day * day_rows, day=day),
                     source=f"day-{day}")
            m.refresh()
        return m, history

    def one_more(m: Medallion, day: int) -> float:
        batch = synthetic(day_rows, seed=day, start_id=day * day_rows, day=day)
        t = time.perf_counter()
        m.ingest(batch, source=f"day-{day}")
        report = m.refresh()
        took = time.perf_counter() - t
        assert report.gold_rows == day_rows, report
        return took

    out = {}
    for history in (days, 10 * days):
        t = time.perf_counter()
        m, next_day = medallion_with(history, f"h{history}")
        built = time.perf_counter() - t
        times = [one_more(m, next_day + i) for i in range(5)]
        out[history] = statistics.median(times)
        print(f"history {history:>4} days ({history * day_rows:>9,} rows, built in "
              f"{built:.0f} s): one more day of {day_rows:,} rows refreshed in "
              f"{out[history] * 1000:.0f} ms (median of 5)")
    ratio = out[10 * days] / out[days]
    print(f"10x the history: {ratio:.2f}x the time (goal < 1.5)")
    return ratio < 1.5


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--spark-rows", type=int, default=200_000)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--day-rows", type=int, default=2_000)
    ap.add_argument("--only", choices=["infer", "refresh"], help="one of the two parts")
    args = ap.parse_args()
    infer_ok = refresh_ok = True
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if args.only != "refresh":
            print("== batch inference")
            infer_ok = bench_infer(args.rows, tmp, args.spark_rows)
        if args.only != "infer":
            print("\n== incremental refresh")
            refresh_ok = bench_refresh(args.days, args.day_rows, tmp)
    return 0 if infer_ok and refresh_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
