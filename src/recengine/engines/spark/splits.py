"""The time-based evaluation protocols as Spark jobs, identical to recengine.data.splits on the same events.

One tie rule in both engines: among a user's events with equal timestamps, the later in the input is the newer.
The single-node Dataset stores ties in input order; the event table carries that order as ``input_order``
(recengine.engines.spark.data). Every protocol then applies the single-node Split's cleaning: test events whose
item never occurs in train are dropped, and so are test events of an item the user already has in train.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from recengine.errors import ConfigError, DataError

__all__ = ["PROTOCOLS", "split"]

PROTOCOLS = ("temporal-user", "global-temporal", "loo")
_ALIASES = {"leave-one-out": "loo"}
_REQUIRED = ("user", "item", "timestamp", "input_order")


def split(events, protocol: str, **options: Any):
    """(train, test) event tables of `events` under the named protocol, with the single-node options:
    temporal-user (test_fraction=0.2, min_interactions=5), global-temporal (test_fraction=0.2, cut=None) and loo
    (min_interactions=2); each also takes random_state, which these deterministic protocols ignore. The split is
    computed once and cached (both tables read one persisted frame)."""
    name = _ALIASES.get(str(protocol).strip().lower().replace("_", "-"), str(protocol).strip().lower())
    functions = {"temporal-user": _temporal_user, "global-temporal": _global_temporal, "loo": _leave_one_out}
    if name not in functions:
        raise ConfigError(f"unknown protocol {protocol!r} on the Spark engine; available: {', '.join(PROTOCOLS)}")
    valid = [p for p in inspect.signature(functions[name]).parameters if p != "events"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"protocol {name!r} has no option(s) {unknown}; valid options: {', '.join(valid)}")
    missing = [c for c in _REQUIRED if c not in events.columns]
    if missing:
        raise DataError(f"the event table lacks {missing} (it has {events.columns}); read it with "
                        f"recengine.engines.spark.read_events, which numbers the input for the tie rule")
    return functions[name](events, **options)


def _temporal_user(events, *, test_fraction: float = 0.2, min_interactions: int = 5,
                   random_state: int | None = 42):
    """Per user with >= min_interactions events, the newest round(n * test_fraction) (half to even, at least one,
    leaving at least one) are test."""
    from pyspark.sql import functions as F

    test_fraction = _fraction("test_fraction", test_fraction)
    min_interactions = _integer("min_interactions", min_interactions, 2)
    ranked = _ranked(events)
    n = F.col("_n")
    n_test = F.least(F.greatest(F.bround(n * F.lit(test_fraction), 0).cast("long"), F.lit(1)),
                     F.greatest(n - 1, F.lit(1)))
    n_test = F.when(n >= min_interactions, n_test).otherwise(F.lit(0))
    marked = ranked.withColumn("_test", F.col("_position") >= n - n_test)
    return _finish("temporal-user", marked, events.columns, drop_cold_users=False)


def _leave_one_out(events, *, min_interactions: int = 2, n_negatives: int | None = None,
                   random_state: int | None = 42):
    """Each user's latest event (the later in the input on a time tie) is test, for users with >= min_interactions."""
    from pyspark.sql import functions as F

    min_interactions = _integer("min_interactions", min_interactions, 2)
    if n_negatives is not None:
        raise ConfigError("loo with sampled negatives (n_negatives) runs on the single-node engine only; the Spark "
                          "engine ranks over all items")
    ranked = _ranked(events)
    n = F.col("_n")
    marked = ranked.withColumn("_test", (n >= min_interactions) & (F.col("_position") == n - 1))
    return _finish("loo", marked, events.columns, drop_cold_users=False)


def _global_temporal(events, *, test_fraction: float = 0.2, cut: float | None = None,
                     random_state: int | None = 42):
    """Events strictly after `cut` (default: numpy's 'lower' 1 - test_fraction quantile of all timestamps) are
    test; test events of users without train events are dropped."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if cut is None:
        test_fraction = _fraction("test_fraction", test_fraction)
        n = events.count()
        if n == 0:
            raise DataError("global-temporal: the event table has no events to split")
        # numpy's 'lower' method: the element at floor((n - 1) * q) of the sorted timestamps.
        k = math.floor((n - 1) * (1.0 - test_fraction))
        counts = events.groupBy("timestamp").count()
        through = Window.orderBy("timestamp").rowsBetween(Window.unboundedPreceding, Window.currentRow)
        cumulative = counts.withColumn("_through", F.sum("count").over(through))
        cut = cumulative.filter(F.col("_through") > k).agg(F.min("timestamp")).first()[0]
    elif isinstance(cut, bool) or not isinstance(cut, int | float):
        raise ConfigError(f"cut must be a timestamp (a number), got {cut!r}")
    marked = events.withColumn("_test", F.col("timestamp") > F.lit(float(cut)))
    flags = marked.agg(F.max(F.col("_test").cast("int")), F.min(F.col("_test").cast("int"))).first()
    if flags[0] != 1 or flags[1] != 0:
        which = "no" if flags[0] != 1 else "only"
        raise DataError(f"global-temporal: cut {cut} leaves {which} test events; choose another cut")
    return _finish("global-temporal", marked, events.columns, drop_cold_users=True)


# ------------------------------------------------------------------------------------------------- helpers
def _fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _integer(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _ranked(events):
    """Each event's 0-based place in its user's history (time, then input order) and the history length."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    user = Window.partitionBy("user")
    return (events.withColumn("_position", F.row_number().over(user.orderBy("timestamp", "input_order")) - 1)
            .withColumn("_n", F.count("*").over(user)))


def _finish(protocol: str, marked, columns: list[str], *, drop_cold_users: bool):
    """Train and test tables from a _test flag, cleaned as Split.from_datasets cleans the single-node test set."""
    from pyspark.sql import functions as F

    marked = marked.persist()
    train = marked.filter(~F.col("_test")).select(*columns)
    test = marked.filter(F.col("_test")).select(*columns)
    if drop_cold_users:
        test = test.join(train.select("user").distinct(), "user", "left_semi")
    test = (test.join(train.select("item").distinct(), "item", "left_semi")
            .join(train.select("user", "item").distinct(), ["user", "item"], "left_anti")
            .select(*columns))
    test = test.persist()
    if test.limit(1).count() == 0:
        raise DataError(f"{protocol}: no test interactions remain with a user and an item seen in train; the "
                        "data is too small or too sparse for this protocol (try another protocol or more data)")
    return train, test
