"""Batch prediction with a registered chain: in process, or on Spark with `spark_udf`.

`predict(ref, frame)` answers every row of a DataFrame (a `question` column, or
OpenAI-style `messages`) with one chain version and returns the rows with `answer`,
`sources`, `lineage` (the chain, prompt and index versions, the chunks, the tokens),
`error` (None, or why that row failed: one failing row never loses the others), and
`contexts` when asked (for evaluation: `llmops eval run --engine spark` uses it).

Engines:
- `pandas`: the version's MLflow pyfunc, loaded once, rows run concurrently as the
  chain's backend likes (`max_concurrency`);
- `spark`: `mlflow.pyfunc.spark_udf` over the downloaded version (`env_manager=local`:
  the executors run this interpreter) on a Spark session (`spark.master` in the
  settings, `local[2]` by default); each Python worker loads the chain once. The
  executors get this process's llmops settings (home, project, profile) through
  `extra_env`, so the chain reads the same index and LLM. `predict_spark_frame`
  takes and returns Spark DataFrames, for tables that never fit one machine.

On Databricks the same call runs on the cluster's session; the platform's own
equivalent is `ai_query` or `spark_udf` over a model in Unity Catalog, which the
chain version is too (an MLflow pyfunc).
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import pandas as pd

from llmops.config import Settings, get_settings
from llmops.errors import ChainError
from llmops.registry import Registry, get_registry

Engine = Literal["pandas", "spark"]
KIND = "chain"

_SOURCE = "struct<id:string,score:double,title:string,doc_id:string,url:string,snippet:string>"
_LINEAGE = ("struct<chain:string,chain_version:int,chain_hash:string,prompt:string,"
            "prompt_version:int,index_collection:string,index_version:int,"
            "chunk_ids:array<string>,backend:string,base_model:string,adapter:string,"
            "adapter_version:int,prompt_tokens:int,completion_tokens:int,latency_ms:double,"
            "finish_reason:string,fallback_from:string>")
_INPUTS = ("question", "messages")


def predict(ref: str, frame: pd.DataFrame, *, engine: Engine = "pandas",
            contexts: bool = False, max_concurrency: int = 0,
            registry: Registry | None = None, settings: Settings | None = None) -> pd.DataFrame:
    """`frame` with the chain version's answer of each row (see the module's docstring)."""
    import mlflow.pyfunc

    reg = registry or get_registry()
    s = settings or get_settings()
    info = reg.resolve(ref, kind=KIND)
    columns = [c for c in _INPUTS if c in frame.columns]
    if not columns:
        raise ChainError(f"batch input has columns {list(frame.columns)}; it needs a "
                         "'question' column or a 'messages' column")
    folder = reg.download(info.name, info.version)
    params = _params(folder, contexts, max_concurrency)
    if engine == "spark":
        from llmops.spark import spark_session

        spark = spark_session(s.spark.master, app="llmops-chain-batch",
                              driver_memory=s.spark.driver_memory)
        data = frame[columns].assign(_row=range(len(frame)))
        if "messages" in data:
            data["messages"] = data["messages"].map(_plain_messages)
        sdf = predict_spark_frame(spark.createDataFrame(data), str(folder), params=params,
                                  settings=s)
        out = sdf.drop(*columns).toPandas().sort_values("_row").drop(columns="_row")
        out = out.reset_index(drop=True)
        out["sources"] = out["sources"].map(_plain)
        out["lineage"] = out["lineage"].map(_plain)
        if "contexts" in out:
            out["contexts"] = out["contexts"].map(lambda v: list(v) if v is not None else [])
    elif engine == "pandas":
        model = mlflow.pyfunc.load_model(str(folder))
        out = pd.DataFrame(model.predict(frame[columns], params=params))
    else:
        raise ChainError(f"unknown batch engine {engine!r}; allowed: pandas, spark")
    if "error" not in out:  # a version logged before `on_error`: any failure raised
        out["error"] = None
    result = frame.reset_index(drop=True).copy()
    for col in out.columns:  # object columns: None, never NaN, where a row has none
        values = [v if isinstance(v, str) else None for v in out[col]] \
            if col in ("answer", "error") else list(out[col])
        result[col] = pd.Series(values, dtype=object)
    # A pyfunc loaded from its folder does not know its registry version; this does.
    out["lineage"] = [{**lin, "chain_version": info.version} if lin else lin
                      for lin in out["lineage"]]
    result["lineage"] = pd.Series(list(out["lineage"]), dtype=object)
    result["chain_version"] = info.version
    return result


def predict_spark_frame(sdf: Any, model_path: str, *, params: dict[str, Any] | None = None,
                        settings: Settings | None = None) -> Any:
    """A Spark DataFrame with `question` and/or `messages` columns -> the same with a
    `prediction` struct unpacked into `answer`, `sources`, `lineage`, `error` (and
    `contexts` if `params['contexts']`). `model_path`: a chain version's folder."""
    import mlflow.pyfunc
    from pyspark.sql import functions as F

    params = dict(params or {})
    columns = [c for c in _INPUTS if c in sdf.columns]
    fields = [f"answer string, sources array<{_SOURCE}>, lineage {_LINEAGE}"]
    if params.get("contexts"):
        fields.append("contexts array<string>")
    if "on_error" in params:
        fields.append("error string")
    udf = mlflow.pyfunc.spark_udf(sdf.sparkSession, model_path, result_type=", ".join(fields),
                                  env_manager="local", params=params,
                                  extra_env=_settings_env(settings or get_settings()))
    return (sdf.withColumn("_prediction", udf(F.struct(*[F.col(c) for c in columns])))
            .select("*", "_prediction.*").drop("_prediction"))


def _params(folder: Any, contexts: bool, max_concurrency: int) -> dict[str, Any]:
    """The predict parameters this version's signature accepts (older versions lack some)."""
    from mlflow.models import Model

    schema = Model.load(str(folder)).get_params_schema()
    known = {p.name for p in schema.params} if schema else set()
    params: dict[str, Any] = {}
    if max_concurrency and "max_concurrency" in known:
        params["max_concurrency"] = max_concurrency
    if "on_error" in known:
        params["on_error"] = "record"
    if contexts:
        if "contexts" not in known:
            raise ChainError(f"{folder}: this chain version was logged before `contexts` "
                             "existed; evaluate it in process (engine pandas)")
        params["contexts"] = True
    return params


def _settings_env(s: Settings) -> dict[str, str]:
    """What the executors need to resolve the same settings as this process."""
    env = {k: v for k, v in os.environ.items() if k.startswith("LLMOPS_")}
    env.update(LLMOPS_HOME=str(s.home_dir), LLMOPS_PROJECT_DIR=str(s.project_dir),
               LLMOPS_PROFILE=s.profile, LLMOPS_MODEL_CACHE=str(s.models_dir))
    return env


def _plain_messages(messages: Any) -> list[dict[str, str]]:
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in messages]


def _plain(value: Any) -> Any:
    """Spark Rows, arrays and numpy scalars as the dicts, lists and numbers the pandas
    engine returns."""
    if hasattr(value, "asDict"):
        return {k: _plain(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
