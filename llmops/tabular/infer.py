"""Batch inference: a version of `tabular.<name>` over gold rows, into the predictions table.

Two engines give the same predictions:
- `pandas` (the default): the model loaded once as an MLflow pyfunc and called on the
  whole frame, in this process;
- `spark` (`tabular: {engine: spark}` in a profile): `mlflow.pyfunc.spark_udf` on a Spark
  session (`spark.master` in the settings, `local[2]` by default), the model's own environment
  (`env_manager="local"`), rows in and out through Arrow.

What is scored: the rows the newest gold version added (the day's batch), or every row
of a gold version (`scope="all"`). The predictions go to the Delta table `predictions`
beside the medallion, one commit per run, each row with the model's name and version,
the gold version it read and the engine; a run killed midway commits nothing. The same
model version over the same gold rows is scored once: a second run finds the commit
(its metadata names model version, gold version and scope) and writes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmops.errors import ConfigError
from llmops.spark import spark_session
from llmops.tabular.source import FEATURES, KEY
from llmops.tabular.tables import Medallion, append, new_rows, read, version_of

Scope = Literal["batch", "all"]
Engine = Literal["pandas", "spark"]
SCORED = "llmops.scored"  # commit metadata: "<model>/<version>@gold-<version>:<scope>"


@dataclass(frozen=True)
class Scored:
    model: str  # tabular.<name>/<version>
    gold_version: int
    scope: str
    engine: str
    rows: int
    table_version: int | None  # of the predictions table; None if nothing was written
    seconds: float
    skipped: bool = False  # scored before: nothing written


def rows_to_score(m: Medallion, gold_version: int | None, scope: Scope) -> tuple[int, pd.DataFrame]:
    """The gold version read, and its rows to score (KEY + FEATURES)."""
    head = version_of(m.paths["gold"])
    if head is None:
        raise ConfigError(f"{m.root}: no gold table yet: run `llmops tabular features "
                          "refresh` first")
    v = head if gold_version is None else gold_version
    if not 0 <= v <= head:
        raise ConfigError(f"gold version {v} does not exist (newest: {head})")
    if scope == "all":
        return v, read(m.paths["gold"], v)
    return v, new_rows(m.paths["gold"], v - 1, v)


def predict_pandas(model_dir: Path, frame: pd.DataFrame) -> np.ndarray:
    """The model's predictions for `frame` (its FEATURES), through the pyfunc flavour."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(model_dir))
    return np.asarray(model.predict(frame[FEATURES])).astype(np.int64)


def predict_spark(model_dir: Path, frame: pd.DataFrame, *, master: str = "local[2]",
                  spark: Any = None) -> np.ndarray:
    """The same predictions through `mlflow.pyfunc.spark_udf`, in `frame`'s row order."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    spark = spark or spark_session(master)
    udf = mlflow.pyfunc.spark_udf(spark, str(model_dir), result_type="long",
                                  env_manager="local")
    data = frame[FEATURES].astype("float64").assign(_i=np.arange(len(frame), dtype=np.int64))
    sdf = spark.createDataFrame(data)
    out = (sdf.select("_i", udf(*[F.col(f) for f in FEATURES]).alias("prediction"))
           .toPandas().sort_values("_i"))
    return out["prediction"].to_numpy(dtype=np.int64)


def scored_before(path: Path, mark: str) -> bool:
    """Whether a commit of the predictions table carries `mark`."""
    from deltalake import DeltaTable

    if version_of(path) is None:
        return False
    return any(c.get(SCORED) == mark for c in DeltaTable(str(path)).history())


def batch_infer(m: Medallion, *, name: str, version: int, model_dir: Path,
                gold_version: int | None = None, scope: Scope = "batch",
                engine: Engine = "pandas", spark_master: str = "local[2]",
                force: bool = False) -> Scored:
    """Score gold rows with `tabular.<name>/<version>` and append them to `predictions`."""
    started = time.perf_counter()
    gold_v, frame = rows_to_score(m, gold_version, scope)
    model = f"tabular.{name}/{version}"
    mark = f"{model}@gold-{gold_v}:{scope}"
    target = m.root / "predictions"
    if not force and scored_before(target, mark):
        return Scored(model, gold_v, scope, engine, 0, version_of(target),
                      time.perf_counter() - started, skipped=True)
    if frame.empty:
        return Scored(model, gold_v, scope, engine, 0, version_of(target),
                      time.perf_counter() - started)
    if engine == "spark":
        predictions = predict_spark(model_dir, frame, master=spark_master)
    else:
        predictions = predict_pandas(model_dir, frame)
    keys = frame[KEY].reset_index(drop=True)  # as Series: their dtypes stay (no objects)
    out = pd.DataFrame({
        "entity_id": keys["entity_id"].astype("string"),
        "event_time": keys["event_time"],
        "prediction": predictions,
        "model": model.split("/")[0], "model_version": np.int64(version),
        "gold_version": np.int64(gold_v), "engine": engine,
        "scored_at": pd.Timestamp.now(tz="UTC")})
    table_version = append(target, out, operation=f"batch-infer {mark}",
                           meta={SCORED: mark})
    return Scored(model, gold_v, scope, engine, len(out), table_version,
                  time.perf_counter() - started)
