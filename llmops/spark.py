"""Spark for bulk work, in local mode or on a cluster: one way to get a session.

Used by batch inference of tabular models (`mlflow.pyfunc.spark_udf`) and bulk embedding
of an index (`mapInPandas`). `spark.master` in the settings says where (`local[2]` by
default; `spark://host:7077`, `yarn`, or `k8s://...` on a cluster; on Databricks the
session that exists is used). The workers run this interpreter, with its packages,
unless PYSPARK_PYTHON says otherwise.
"""

from __future__ import annotations

import os
import sys
from typing import Any


def spark_session(master: str = "local[2]", *, app: str = "llmops",
                  driver_memory: str = "2g") -> Any:
    """A Spark session (the active one if there is one): Arrow on, quiet, no UI."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    spark = (SparkSession.builder.master(master).appName(app)
             .config("spark.sql.execution.arrow.pyspark.enabled", "true")
             .config("spark.sql.shuffle.partitions", "4")
             .config("spark.ui.enabled", "false")
             .config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.memory", driver_memory)
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    return spark
