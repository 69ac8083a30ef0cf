"""Ranking metrics as Spark aggregations over a recommendation table and a test table.

The definitions are recengine.evaluation.metrics' (``_from_hits``): recall over min(k, |relevant|), precision over
k (a short list's missing places are misses), binary-gain NDCG with log2 discount over the ideal of
min(k, |relevant|) hits, MAP over min(k, |relevant|), hit rate, reciprocal rank of the first hit, and catalog
coverage of the top-k lists. The means are over the users of the test table, so a test user without
recommendations counts with zeros, as a list of padding does on a single node. Only one row of means reaches the
driver.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from recengine.errors import ConfigError, DataError
from recengine.evaluation.metrics import RANKING_METRICS

__all__ = ["ranking_metrics"]

_INTEGER_TYPES = ("tinyint", "smallint", "int", "bigint")


def ranking_metrics(
    recommendations,
    test,
    ks: Iterable[int] = (10, 20),
    *,
    n_items: int,
    metrics: Sequence[str] = RANKING_METRICS,
) -> dict[str, float]:
    """Mean of every metric at every cut-off, and catalog coverage: {"ndcg@10": 0.31, ..., "coverage@10": 0.12}.

    recommendations: user, item, rank (1-based; each user's items distinct). test: user, item (the held-out
    events; a repeated pair counts once). n_items: the catalog size that coverage divides by.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ks = sorted({_cut_off(k) for k in ks})
    if not ks:
        raise ConfigError("give at least one cut-off k")
    unknown = [m for m in metrics if m not in RANKING_METRICS]
    if unknown:
        raise ConfigError(f"unknown ranking metric(s) {unknown}; available: {', '.join(RANKING_METRICS)}")
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise DataError(f"n_items must be the catalog size (an integer >= 1), got {n_items!r}")
    _require(recommendations, ("user", "item", "rank"), "recommendations")
    _require(test, ("user", "item"), "test")

    if dict(recommendations.dtypes)["rank"] not in _INTEGER_TYPES or recommendations.filter(
            F.col("rank").isNull() | (F.col("rank") < 1)).limit(1).count():
        raise DataError("recommendations: rank must be an integer >= 1 (1 = the top of the list)")

    truth = test.select("user", "item").distinct()
    relevant = truth.groupBy("user").agg(F.count("*").alias("_relevant"))
    if relevant.limit(1).count() == 0:
        raise DataError("the test table has no events: there is nothing to measure")
    top = (recommendations.select("user", "item", F.col("rank").cast("long").alias("rank"))
           .filter(F.col("rank") <= ks[-1])
           .join(relevant.select("user"), "user", "left_semi"))

    hits = top.join(truth, ["user", "item"], "left_semi")
    # MAP's precision at a hit's rank: how many hits up to it, over the rank.
    hits = hits.withColumn("_nth", F.row_number().over(Window.partitionBy("user").orderBy("rank")))
    within = {k: F.col("rank") <= k for k in ks}
    per_hit = []
    for k in ks:
        per_hit += [F.sum(F.when(within[k], 1).otherwise(0)).alias(f"_hits{k}"),
                    F.sum(F.when(within[k], 1.0 / F.log2(F.col("rank") + 1.0)).otherwise(0.0)).alias(f"_dcg{k}"),
                    F.sum(F.when(within[k], F.col("_nth") / F.col("rank")).otherwise(0.0)).alias(f"_ap{k}")]
    per_hit.append(F.min("rank").alias("_first"))
    per_user = relevant.join(hits.groupBy("user").agg(*per_hit), "user", "left")

    means = []
    for k in ks:
        n_hits = F.coalesce(F.col(f"_hits{k}"), F.lit(0)).cast("double")
        capped = F.least(F.lit(k), F.col("_relevant"))
        ideal = F.aggregate(F.sequence(F.lit(1), capped), F.lit(0.0), lambda total, j: total + 1.0 / F.log2(j + 1.0))
        first = F.col("_first")
        per_metric = {
            "recall": n_hits / capped,
            "precision": n_hits / k,
            "ndcg": F.coalesce(F.col(f"_dcg{k}"), F.lit(0.0)) / ideal,
            "map": F.coalesce(F.col(f"_ap{k}"), F.lit(0.0)) / capped,
            "hr": (n_hits > 0).cast("double"),
            "mrr": F.when(first.isNotNull() & (first <= k), 1.0 / first).otherwise(0.0),
        }
        means += [F.avg(per_metric[m]).alias(f"{m}@{k}") for m in metrics]
    row = per_user.agg(*means).first().asDict() if means else {}
    coverage = top.agg(*[F.count_distinct(F.when(within[k], F.col("item"))).alias(f"coverage@{k}")
                         for k in ks]).first().asDict()
    out: dict[str, float] = {}
    for k in ks:
        out.update({f"{m}@{k}": float(row[f"{m}@{k}"]) for m in metrics})
        out[f"coverage@{k}"] = coverage[f"coverage@{k}"] / n_items
    return out


def _cut_off(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"a cut-off k must be an integer >= 1, got {k!r}")
    return k


def _require(frame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"the {name} table lacks column(s) {missing}; it has {frame.columns}")
