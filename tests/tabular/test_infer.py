"""Batch inference into the predictions table: the pandas path against the model's own
predict, a rerun scores nothing twice, bad input is named; the Spark path (local[2],
`mlflow.pyfunc.spark_udf`) gives the same predictions as the pandas one."""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import numpy as np
import pytest

from llmops.config import get_settings
from llmops.errors import ConfigError
from llmops.registry import get_registry
from llmops.spark import spark_session
from llmops.tabular.config import load_pipeline
from llmops.tabular.infer import predict_pandas, predict_spark
from llmops.tabular.pipeline import infer, medallion, refresh, train
from llmops.tabular.source import FEATURES
from llmops.tabular.tables import read


@pytest.fixture
def trained(home: Path) -> int:
    settings = get_settings()
    spec = load_pipeline("cancer", settings)
    for _ in range(3):
        refresh(spec, settings)
    return int(train(spec, settings, get_registry()).ref.split("/")[1])


def test_batch_infer_writes_each_prediction_with_its_model_and_gold_version(
        trained: int) -> None:
    settings, reg = get_settings(), get_registry()
    spec = load_pipeline("cancer", settings)
    m = medallion(spec, settings)
    model = mlflow.sklearn.load_model(str(reg.download("tabular.cancer", trained)))

    batch = infer(spec, settings, reg, ref="staging")
    gold = read(m.paths["gold"])
    newest_day = gold[gold["event_time"] >= gold["event_time"].max().normalize()]
    assert (batch.model, batch.gold_version, batch.rows) == (
        f"tabular.cancer/{trained}", 2, len(newest_day))
    everything = infer(spec, settings, reg, ref=str(trained), scope="all")
    assert everything.rows == len(gold) and everything.table_version == 1

    out = read(m.root / "predictions")
    assert len(out) == batch.rows + everything.rows
    assert set(out["model"]) == {"tabular.cancer"} and set(out["model_version"]) == {trained}
    assert set(out["gold_version"]) == {2} and set(out["engine"]) == {"pandas"}
    rows = out.tail(everything.rows)
    expected = gold.set_index(["entity_id", "event_time"]).loc[
        list(zip(rows["entity_id"], rows["event_time"], strict=True))]
    assert np.array_equal(rows["prediction"].to_numpy(),
                          model.predict(expected[FEATURES]))  # the model's own answers

    again = infer(spec, settings, reg, ref="staging")
    assert again.skipped and again.rows == 0
    assert len(read(m.root / "predictions")) == len(out)  # nothing written twice
    forced = infer(spec, settings, reg, ref="staging", force=True)
    assert forced.rows == batch.rows and forced.table_version == 2

    with pytest.raises(ConfigError, match="gold version 9 does not exist"):
        infer(spec, settings, reg, ref="staging", gold_version=9)


def test_batch_infer_needs_a_gold_table(home: Path) -> None:
    settings = get_settings()
    spec = load_pipeline("cancer", settings)
    from llmops.tabular.infer import rows_to_score

    with pytest.raises(ConfigError, match="no gold table yet"):
        rows_to_score(medallion(spec, settings), None, "batch")


@pytest.mark.spark
def test_spark_and_pandas_give_the_same_predictions(trained: int) -> None:
    settings, reg = get_settings(), get_registry()
    spec = load_pipeline("cancer", settings)
    gold = read(medallion(spec, settings).paths["gold"])
    model_dir = reg.download("tabular.cancer", trained)
    spark = spark_session("local[2]")
    try:
        by_spark = predict_spark(model_dir, gold, spark=spark)
    finally:
        spark.stop()
    by_pandas = predict_pandas(model_dir, gold)
    assert len(by_spark) == len(gold) and by_spark.dtype == np.int64
    assert np.array_equal(by_spark, by_pandas)
    assert 0 < by_pandas.sum() < len(gold)  # both classes: not a constant answer
