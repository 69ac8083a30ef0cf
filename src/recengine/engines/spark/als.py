"""Alternating least squares on Spark MLlib, written as the single-node iALS and biased-MF artifacts.

Both trainers read an indexed interaction table (columns u, i, weight, timestamp, rating; see ids.indexed_events)
and return, as ``model_``, an ordinary fitted ``ImplicitALS`` or ``BiasedMF``: its factor rows follow the
vocabularies the table was indexed by, so the saved artifact is the single-node one and fold-in, explanations,
similar items and the service use it unchanged.

How MLlib's hyper-parameters map to ours (MLlib 3.x-4.x, ``org.apache.spark.ml.recommendation.ALS``):

* implicit: MLlib's confidence is c = 1 + alpha * w on the summed weight w of a (user, item) pair, preference
  p = 1 for w > 0 — our "linear" confidence with the same alpha. MLlib's L2 penalty of a user is
  regParam * n_u, n_u being the user's count of distinct items (ALS-WR scaling), which none of our
  regularizations reproduces exactly: ours is regularization * (n_items + sum(c - 1)) ** reg_exponent. The
  artifact keeps reg_exponent 1 and the regularization that gives MLlib's penalty at the mean user, so that
  folded-in users are penalised about as MLlib penalised the trained ones. MLlib solves each half step exactly
  (Cholesky), so the artifact says solver="cholesky"; one MLlib iteration is one user and one item half step,
  as ours.
* explicit: MLlib factorises ratings without biases. We fit recengine's biased model r ~ mu + b_u + b_i + p.q
  in two steps: the baseline biases first (ridge means of the residuals, item then user, penalised like
  ALS-WR: n * bias_regularization * b^2), then MLlib ALS on r - mu - b_u - b_i with regParam = regularization.
  BiasedMF's ridge fold-in applies that same n-scaled penalty, so regularization maps one to one. BiasedMF's
  SGD settings (epochs, learning rates) keep their defaults in the artifact: they are not what trained it, and
  the bundle's info records the Spark settings that did.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from recengine.errors import ConfigError, DataError
from recengine.models.base import Interval
from recengine.models.biased_mf import BiasedMF
from recengine.models.ials import ImplicitALS


class _SparkTrainer:
    """Hyper-parameters stored by the constructor, checked at fit, as the single-node models do."""

    parameter_constraints: dict[str, Interval] = {}

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.parameter_constraints}

    def _validate_params(self) -> None:
        for key, constraint in self.parameter_constraints.items():
            constraint.check(key, getattr(self, key))

    def _als(self, implicit: bool, rating_column: str, alpha: float = 1.0):
        from pyspark.ml.recommendation import ALS

        return ALS(rank=self.factors, maxIter=self.iterations, regParam=self.regularization,
                   implicitPrefs=implicit, alpha=alpha, userCol="u", itemCol="i", ratingCol=rating_column,
                   numUserBlocks=self.blocks, numItemBlocks=self.blocks, seed=self.random_state, nonnegative=False)


class SparkImplicitALS(_SparkTrainer):
    """iALS by MLlib: factors (rank), regularization (MLlib regParam, per observed item), alpha (linear
    confidence), iterations (maxIter), blocks (user and item blocks: the unit of MLlib's shuffle)."""

    parameter_constraints = {
        "factors": Interval(int, 1, 4096),
        "regularization": Interval(float, 0),
        "alpha": Interval(float, 0),
        "iterations": Interval(int, 1, 10_000),
        "blocks": Interval(int, 1),
        "random_state": Interval(int, 0),
    }

    def __init__(self, factors: int = 64, regularization: float = 0.1, alpha: float = 2.0, iterations: int = 15,
                 blocks: int = 10, random_state: int = 42):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.blocks = blocks
        self.random_state = random_state

    def fit(self, interactions, n_users: int, n_items: int) -> Self:
        from pyspark.sql import functions as F

        self._validate_params()
        pairs = interactions.groupBy("u", "i").agg(F.sum("weight").alias("weight")).cache()
        summary = pairs.agg(F.count("*").alias("pairs"), F.min("weight").alias("low"),
                            F.sum("weight").alias("total")).first()
        if not summary["pairs"]:
            raise DataError("spark ials: cannot fit on a table without interactions")
        if summary["low"] < 0:
            raise DataError(f"ials needs non-negative interaction weights; found {summary['low']}")
        fitted = self._als(True, "weight", self.alpha).fit(pairs)
        X = _factor_matrix(fitted.userFactors, n_users, self.factors)
        Y = _factor_matrix(fitted.itemFactors, n_items, self.factors)
        pairs.unpersist()
        # MLlib's penalty regParam * n_u, matched at the mean user by ours, regularization * (N + alpha * sum w).
        mean_items = summary["pairs"] / n_users
        mean_weight = summary["total"] / n_users
        regularization = self.regularization * mean_items / (n_items + self.alpha * mean_weight)
        model = ImplicitALS(factors=self.factors, regularization=float(regularization), alpha=float(self.alpha),
                            confidence="linear", reg_exponent=1.0, iterations=self.iterations, solver="cholesky",
                            random_state=self.random_state)
        model.user_factors_, model.item_factors_ = X, Y
        model.n_users_, model.n_items_ = n_users, n_items
        self.model_ = model
        return self


class SparkBiasedMF(_SparkTrainer):
    """Biased MF for explicit ratings: baseline biases by a Spark aggregation, then MLlib ALS on the residuals.

    factors (rank), regularization (MLlib regParam, per rating), bias_regularization (per rating, on the
    biases), iterations (maxIter), blocks (user and item blocks).
    """

    parameter_constraints = {
        "factors": Interval(int, 1, 4096),
        "regularization": Interval(float, 0),
        "bias_regularization": Interval(float, 0),
        "iterations": Interval(int, 1, 10_000),
        "blocks": Interval(int, 1),
        "random_state": Interval(int, 0),
    }

    def __init__(self, factors: int = 64, regularization: float = 0.05, bias_regularization: float = 0.1,
                 iterations: int = 15, blocks: int = 10, random_state: int = 42):
        self.factors = factors
        self.regularization = regularization
        self.bias_regularization = bias_regularization
        self.iterations = iterations
        self.blocks = blocks
        self.random_state = random_state

    def fit(self, interactions, n_users: int, n_items: int) -> Self:
        from pyspark.sql import functions as F

        self._validate_params()
        if "rating" not in interactions.columns:
            raise DataError("biased-mf learns from explicit ratings, but the events have no rating column")
        # The latest rating of a repeated (user, item) pair, as the single-node rating matrix keeps.
        ratings = (interactions.filter(F.col("rating").isNotNull())
                   .groupBy("u", "i").agg(F.max_by("rating", "timestamp").alias("rating")).cache())
        summary = ratings.agg(F.count("*").alias("n"), F.avg("rating").alias("mu"), F.min("rating").alias("low"),
                              F.max("rating").alias("high")).first()
        if not summary["n"]:
            raise DataError("biased-mf learns from explicit ratings, but no event has one")
        mu = float(summary["mu"])
        shrink = 1.0 + self.bias_regularization
        item_bias = (ratings.groupBy("i").agg((F.avg(F.col("rating") - mu) / shrink).alias("bi")))
        with_items = ratings.join(F.broadcast(item_bias), "i")
        user_bias = with_items.groupBy("u").agg((F.avg(F.col("rating") - mu - F.col("bi")) / shrink).alias("bu"))
        residuals = (with_items.join(user_bias, "u")
                     .select("u", "i", (F.col("rating") - mu - F.col("bi") - F.col("bu")).alias("residual"))
                     .cache())
        fitted = self._als(False, "residual").fit(residuals)
        model = BiasedMF(factors=self.factors, regularization=float(self.regularization),
                         bias_regularization=float(self.bias_regularization), random_state=self.random_state)
        model.user_factors_ = _factor_matrix(fitted.userFactors, n_users, self.factors)
        model.item_factors_ = _factor_matrix(fitted.itemFactors, n_items, self.factors)
        model.user_biases_ = _vector(user_bias, "u", "bu", n_users)
        model.item_biases_ = _vector(item_bias, "i", "bi", n_items)
        model.global_mean_, model.rating_min_, model.rating_max_ = mu, float(summary["low"]), float(summary["high"])
        model.n_users_, model.n_items_ = n_users, n_items
        ratings.unpersist()
        residuals.unpersist()
        self.model_ = model
        return self


def _factor_matrix(factors, n_rows: int, rank: int) -> np.ndarray:
    """(n_rows, rank) float32 from MLlib's (id, features) table; rows it has no factors for stay zero."""
    frame = factors.toPandas()
    out = np.zeros((n_rows, rank), dtype=np.float32)
    if len(frame):
        ids = frame["id"].to_numpy(np.int64)
        if ids.max() >= n_rows:
            raise ConfigError(f"factor row {ids.max()} is outside the {n_rows} rows of the vocabulary")
        out[ids] = np.stack(frame["features"].to_numpy()).astype(np.float32)
    return out


def _vector(table, key: str, value: str, n: int) -> np.ndarray:
    """A float32 vector of length n from a (key, value) table; keys it lacks stay zero."""
    frame = table.toPandas()
    out = np.zeros(n, dtype=np.float32)
    out[frame[key].to_numpy(np.int64)] = frame[value].to_numpy(np.float32)
    return out
