"""One way to get a SparkSession: local by default, any master by URL, Spark's own logging kept quiet."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

from recengine.errors import RecengineError

DEFAULT_MASTER = "local[2]"


def _require_spark() -> None:
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the dev install carries pyspark
        raise RecengineError("the Spark engine needs pyspark: pip install 'recengine[spark]'") from exc
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise RecengineError("the Spark engine needs Java 17+ (Debian: apt-get install default-jre-headless)")


def spark_session(
    master: str | None = None,
    app_name: str = "recengine",
    config: dict[str, Any] | None = None,
    verbose: bool = False,
):
    """Get or create the SparkSession.

    `master` is a Spark master URL (`local[2]`, `spark://host:7077`, …); None keeps the one spark-submit set, or
    `local[2]` when there is none. Spark's INFO logs and console progress bar stay out of the terminal unless
    `verbose`; recengine prints its own progress line per stage.
    """
    _require_spark()
    from pyspark.sql import SparkSession

    # Python tasks (recengine's scoring) run in this interpreter, where recengine is installed, unless the
    # environment names another; pyspark's own default is whatever `python3` is on the PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    builder = SparkSession.builder.appName(app_name)
    master = master or os.environ.get("RECENGINE_SPARK_MASTER")
    if master:
        builder = builder.master(master)
    elif "spark.master" not in (config or {}) and "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Under spark-submit the JVM is already running with its --master and hands its gateway over; only a
        # plain Python process gets the local default.
        builder = builder.master(DEFAULT_MASTER)
    settings = {
        # Few partitions: the default 200 shuffle partitions cost more than they buy below a cluster's scale.
        "spark.sql.shuffle.partitions": "8",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.driver.memory": "4g",
        **(config or {}),
    }
    for key, value in settings.items():
        builder = builder.config(key, str(value))
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("INFO" if verbose else "ERROR")
    return session
