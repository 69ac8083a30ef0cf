"""recengine on Apache Spark: read, split, train, score and measure as Spark jobs.

Everything here writes what the single-node path writes (a `Dataset`-compatible event table, the same `Split`
semantics, the same model artifacts), so evaluation and the service never know which engine did the work.
Needs `pip install 'recengine[spark]'` and Java 17+.
"""

from recengine.engines.spark.data import SparkEvents, read_events
from recengine.engines.spark.metrics import ranking_metrics
from recengine.engines.spark.session import spark_session
from recengine.engines.spark.splits import split

__all__ = ["SparkEvents", "ranking_metrics", "read_events", "spark_session", "split"]
