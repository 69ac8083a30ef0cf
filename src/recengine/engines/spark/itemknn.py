"""ItemKNN's item-item neighbourhoods as Spark SQL jobs, written as the single-node ItemKNN artifact.

The same definitions as recengine.models.itemknn and _similarity, step by step: the item x user matrix of
binary or summed weights; optional TF-IDF or BM25 weighting with items as documents and users as terms (N = all
items of the vocabulary, df = a user's distinct items, BM25's length = an item's summed raw values over the mean
of the items that have any); co-occurrence dot products by a self-join on the user; cosine, asymmetric cosine or
Jaccard with the shrinkage added to the denominator; the item itself and non-positive similarities dropped; the
`neighbors` most similar history items kept for every scored item; optionally each history item's row scaled to
sum to 1. Pearson and adjusted cosine need every (item, item) pair, not only co-occurring ones: single-node only.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recengine.errors import DataError
from recengine.models.base import Interval, Options
from recengine.models.itemknn import ItemKNN

SPARK_SIMILARITIES = ("cosine", "asymmetric", "jaccard")


class SparkItemKNN:
    """ItemKNN fitted by Spark SQL; the hyper-parameters are ItemKNN's, with the similarities above."""

    parameter_constraints = {
        **ItemKNN.parameter_constraints,
        "similarity": Options(SPARK_SIMILARITIES),
    }

    def __init__(self, similarity: str = "cosine", neighbors: int = 200, shrink: float = 10.0, weighting: str = "none",
                 bm25_k1: float = 1.2, bm25_b: float = 0.75, asymmetric_alpha: float = 0.5, normalize: bool = False,
                 values: str = "binary", history_half_life: float = 0.0):
        self.similarity = similarity
        self.neighbors = neighbors
        self.shrink = shrink
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.asymmetric_alpha = asymmetric_alpha
        self.normalize = normalize
        self.values = values
        self.history_half_life = history_half_life

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.parameter_constraints}

    def fit(self, interactions, n_users: int, n_items: int) -> Self:
        from pyspark.sql import functions as F
        from pyspark.sql.window import Window

        for key, constraint in self.parameter_constraints.items():
            constraint.check(key, getattr(self, key))
        Interval(int, 1).check("n_items", n_items)
        value = F.lit(1.0) if self.values == "binary" else F.sum("weight")
        entries = interactions.groupBy("u", "i").agg(value.cast("double").alias("x"))
        weighted = self._weighted(entries, n_items).cache()
        norms = weighted.groupBy("i").agg(F.sum(F.col("w") * F.col("w")).alias("sq"))
        a, b = weighted.alias("a"), weighted.alias("b")
        # Rows: t the scored (target) item, n the history (neighbour) item; dot over their shared users.
        dots = (a.join(b, (F.col("a.u") == F.col("b.u")) & (F.col("a.i") != F.col("b.i")))
                .groupBy(F.col("a.i").alias("t"), F.col("b.i").alias("n"))
                .agg(F.sum(F.col("a.w") * F.col("b.w")).alias("dot")))
        sims = (dots.join(F.broadcast(norms.select(F.col("i").alias("t"), F.col("sq").alias("sq_t"))), "t")
                .join(F.broadcast(norms.select(F.col("i").alias("n"), F.col("sq").alias("sq_n"))), "n")
                .select("t", "n", self._formula().alias("s"))
                .filter(F.col("s") > 0))
        ranked = Window.partitionBy("t").orderBy(F.col("s").desc(), F.col("n"))
        nearest = sims.withColumn("r", F.row_number().over(ranked)).filter(F.col("r") <= self.neighbors)
        if self.normalize:
            nearest = nearest.withColumn("s", F.col("s") / F.sum("s").over(Window.partitionBy("n")))
        frame = nearest.select("n", "t", "s").toPandas()
        weighted.unpersist()
        # item_weights_[history item, scored item], as ItemKNN stores the transpose of its neighbour lists.
        weights = sp.csr_matrix((frame["s"].to_numpy(np.float32), (frame["n"].to_numpy(np.int64),
                                                                   frame["t"].to_numpy(np.int64))),
                                shape=(n_items, n_items), dtype=np.float32)
        weights.sort_indices()
        model = ItemKNN(**self.get_params())
        model.item_weights_ = weights
        model.n_items_ = n_items
        self.model_ = model
        return self

    def _weighted(self, entries, n_items: int):
        """(u, i, w): the entries after the weighting, fitted on these entries as fit_weighting does."""
        from pyspark.sql import functions as F

        if self.weighting == "none":
            return entries.withColumn("w", F.col("x"))
        low = entries.agg(F.min("x")).first()[0]
        if low is not None and low < 0:
            raise DataError(f"{self.weighting} weighting needs non-negative interaction weights; use weighting='none' "
                            "or values='binary'")
        df = entries.groupBy("u").agg(F.count("*").cast("double").alias("df"))
        if self.weighting == "tfidf":
            idf = F.log((1.0 + n_items) / (1.0 + F.col("df"))) + 1.0
            return entries.join(df.select("u", idf.alias("idf")), "u").withColumn("w", F.col("x") * F.col("idf"))
        idf = F.log1p((n_items - F.col("df") + 0.5) / (F.col("df") + 0.5))
        lengths = entries.groupBy("i").agg(F.sum("x").alias("length"))
        average = lengths.agg(F.avg("length")).first()[0]
        k1, b = float(self.bm25_k1), float(self.bm25_b)
        norm = (1.0 - b) + b * F.col("length") / average
        return (entries.join(df.select("u", idf.alias("idf")), "u").join(F.broadcast(lengths), "i")
                .withColumn("w", F.col("x") * (k1 + 1.0) / (F.col("x") + k1 * norm) * F.col("idf")))

    def _formula(self):
        """The similarity column from dot, sq_t (the scored item's) and sq_n, as pairwise_similarity."""
        from pyspark.sql import functions as F

        dot, sq_t, sq_n = F.col("dot"), F.col("sq_t"), F.col("sq_n")
        if self.similarity == "cosine":
            denom = F.sqrt(sq_t) * F.sqrt(sq_n)
        elif self.similarity == "asymmetric":
            alpha = float(self.asymmetric_alpha)
            denom = F.pow(sq_t, alpha) * F.pow(sq_n, 1.0 - alpha)
        else:
            denom = sq_t + sq_n - dot
        return F.when(denom > 0, dot / (denom + float(self.shrink))).otherwise(F.lit(0.0))
