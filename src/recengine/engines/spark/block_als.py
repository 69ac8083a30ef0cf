"""iALS on Spark with recengine's own conjugate-gradient solver: blocks kept in Spark, solved inside the tasks.

MLlib's ALS solves every row exactly (Cholesky on a k x k system built row by row in the JVM). This trainer keeps
the same distribution but swaps the solver: the interactions are cut into user blocks and item blocks (row r in
block r % blocks), each block a cached Spark row holding its CSR slice of the confidence matrix and its rows'
regularization. A half-iteration is one Spark job: every task takes one block, runs single-node iALS's CG half
step on it (recengine.models.ials.HalfStep: the numba kernel, warm-started at the block's previous factors, with
the Gram matrix of the fixed side) and returns the block's new factors, which the driver assembles.

How the fixed factors reach the blocks: broadcast, whole. A block of user rows touches most of the item factors
(popular items are in every block), so a join of factor blocks to the ids each block needs ships nearly the whole
matrix to every block anyway; a broadcast ships it once per executor. The broadcast is n x k float32 per half
step: 5 MB for 20k items at 64 factors, 35 MB for 138k users; past a few hundred MB MLlib's join of factor
blocks (which sends each block only the rows it uses) would be the better exchange.

Confidence, regularization, initial factors, iteration order and the CG kernel are single-node iALS's own, so
the factors are the single-node ones: equal to the bit where the kernel's row plan is the same (no row long
enough to be streamed, which at 64 factors takes 4,096 entries), and equal up to float rounding otherwise.
The trainer returns, as ``model_``, a fitted ``ImplicitALS`` (solver "cg"): the single-node artifact.
"""

from __future__ import annotations

import time
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recengine.errors import ConfigError, DataError
from recengine.models._factors import random_factors
from recengine.models.base import Interval
from recengine.models.ials import HalfStep, ImplicitALS

#: A block as built: its index and the bytes of its CSR slice (local rows) and of its rows' regularization.
_BLOCK_SCHEMA = "block int, indptr binary, indices binary, confidence binary, reg binary"


class SparkBlockALS:
    """iALS by block conjugate gradient on Spark: ImplicitALS's hyper-parameters (CG solver) plus `blocks`, the
    number of user blocks and of item blocks (the unit of a Spark task); 0, the default, is one block per core
    Spark offers (its default parallelism): a block's CG is milliseconds of work per 10k interactions, so every
    further task costs more in scheduling than it gains in balance."""

    parameter_constraints = {
        **{key: constraint for key, constraint in ImplicitALS.parameter_constraints.items()
           if key not in ("solver", "device")},
        "blocks": Interval(int, 0),
    }

    def __init__(self, factors: int = 64, regularization: float = 0.01, alpha: float = 2.0, confidence: str = "linear",
                 epsilon: float = 1.0, reg_exponent: float = 1.0, iterations: int = 15, cg_steps: int = 3,
                 init_std: float = 0.01, random_state: int = 42, blocks: int = 0):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.confidence = confidence
        self.epsilon = epsilon
        self.reg_exponent = reg_exponent
        self.iterations = iterations
        self.cg_steps = cg_steps
        self.init_std = init_std
        self.random_state = random_state
        self.blocks = blocks

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.parameter_constraints}

    def fit(self, interactions, n_users: int, n_items: int) -> Self:
        """Fit on an indexed interaction table (u, i, weight; see ids.indexed_events) of n_users x n_items."""
        from pyspark.sql import functions as F

        for key, constraint in self.parameter_constraints.items():
            constraint.check(key, getattr(self, key))
        Interval(int, 1).check("n_users", n_users)
        Interval(int, 1).check("n_items", n_items)
        pairs = interactions.groupBy("u", "i").agg(F.sum("weight").alias("weight")).cache()
        summary = pairs.agg(F.count("*").alias("pairs"), F.min("weight").alias("low"), F.min("u").alias("u_low"),
                            F.max("u").alias("u_high"), F.min("i").alias("i_low"), F.max("i").alias("i_high")).first()
        if not summary["pairs"]:
            pairs.unpersist()
            raise DataError("spark ials: cannot fit on a table without interactions")
        if summary["low"] < 0:
            pairs.unpersist()
            raise DataError(f"ials needs non-negative interaction weights; found {summary['low']}")
        for side, low, high, n in (("u", summary["u_low"], summary["u_high"], n_users),
                                   ("i", summary["i_low"], summary["i_high"], n_items)):
            if low < 0 or high >= n:
                pairs.unpersist()
                raise ConfigError(f"index {side}={low if low < 0 else high} is outside the {n} rows of the "
                                  "vocabulary; pass the n_users and n_items the table was indexed by")
        model = ImplicitALS(**{key: value for key, value in self.get_params().items() if key != "blocks"},
                            solver="cg", device="cpu")
        context = interactions.sparkSession.sparkContext
        self.n_blocks_ = self.blocks or context.defaultParallelism
        user_blocks = _blocks(pairs, "u", "i", n_users, n_items, self.n_blocks_, model)
        item_blocks = _blocks(pairs, "i", "u", n_items, n_users, self.n_blocks_, model)
        pairs.unpersist()

        rng = np.random.default_rng(self.random_state)
        X = random_factors(rng, n_users, self.factors, self.init_std)
        Y = random_factors(rng, n_items, self.factors, self.init_std)
        threads = int(context.getConf().get("spark.task.cpus", "1"))
        shared_x, shared_y = context.broadcast(X), context.broadcast(Y)
        self.iteration_seconds_ = []
        for _ in range(self.iterations):
            start = time.perf_counter()
            X = _half_step(user_blocks, shared_y, shared_x, self.n_blocks_, self.cg_steps, threads)
            shared_x.destroy()
            shared_x = context.broadcast(X)
            Y = _half_step(item_blocks, shared_x, shared_y, self.n_blocks_, self.cg_steps, threads)
            shared_y.destroy()
            shared_y = context.broadcast(Y)
            self.iteration_seconds_.append(time.perf_counter() - start)
        for shared in (shared_x, shared_y):
            shared.destroy()
        for blocks in (user_blocks, item_blocks):
            blocks.unpersist()
        model.user_factors_, model.item_factors_ = X, Y
        model.n_users_, model.n_items_ = n_users, n_items
        self.model_ = model
        return self


def _blocks(pairs, row: str, other: str, n_rows: int, n_other: int, n_blocks: int, model: ImplicitALS):
    """A cached RDD with one partition per block of `row` indices (row r in block r % n_blocks, local index
    r // n_blocks): (block, its confidence matrix as CSR arrays over its local rows with `other` indices as columns,
    and its row regularization), computed by the model's own methods. Every block exists, even one without
    interactions (its rows are solved as single-node solves empty rows).

    An RDD rather than a DataFrame: a half step is then one plain Python map, which on local[2] cost about a
    tenth of the scheduling and Arrow conversion of a mapInPandas over the same cached blocks (measured)."""
    from pyspark.sql import functions as F

    spark = pairs.sparkSession
    # An empty marker row per block, so that a block without interactions still gets its group.
    markers = spark.range(n_blocks).select(F.col("id").cast("int").alias("block"), F.lit(None).cast("int").alias("r"),
                                           F.lit(None).cast("int").alias("c"), F.lit(None).cast("double").alias("w"))
    entries = pairs.select((F.col(row) % n_blocks).cast("int").alias("block"), F.col(row).alias("r"),
                           F.col(other).alias("c"), F.col("weight").alias("w"))

    def build(group):
        import pandas as pd

        block = int(group["block"].iloc[0])
        group = group.dropna(subset=["r"])
        n_local = len(range(block, n_rows, n_blocks))
        weights = sp.csr_matrix((group["w"].to_numpy(np.float32),
                                 (group["r"].to_numpy(np.int64) // n_blocks, group["c"].to_numpy(np.int64))),
                                shape=(n_local, n_other))
        confidence = model._confidence_matrix(weights)
        reg = model._row_regularization(confidence, n_other)
        return pd.DataFrame({"block": [block], "indptr": [confidence.indptr.tobytes()],
                             "indices": [confidence.indices.tobytes()], "confidence": [confidence.data.tobytes()],
                             "reg": [reg.tobytes()]})

    table = entries.unionByName(markers).groupBy("block").applyInPandas(build, _BLOCK_SCHEMA)
    blocks = (table.rdd.map(lambda r: (r.block, (bytes(r.indptr), bytes(r.indices), bytes(r.confidence), bytes(r.reg))))
              .partitionBy(n_blocks, lambda block: block).cache())
    blocks.count()
    return blocks


def _half_step(blocks, fixed, current, n_blocks: int, steps: int, threads: int) -> np.ndarray:
    """New factors of one side: every block's rows solved by single-node iALS's CG half step, given the
    broadcast factors of the fixed side and, as the warm start, this side's current ones."""

    def solve(entry):
        import numba
        from threadpoolctl import threadpool_limits

        block, (indptr, indices, confidence, reg) = entry
        Y = fixed.value
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        indptr = _array(indptr, np.int64)
        rows = sp.csr_matrix((_array(confidence, np.float32), _array(indices, np.int32), indptr),
                             shape=(len(indptr) - 1, Y.shape[0]))
        rows.indptr = indptr  # scipy may narrow it; the kernels are compiled for int64
        X = current.value[block::n_blocks].copy()
        # One task per core: BLAS threads would only compete with the other tasks (as single-node).
        with threadpool_limits(1, "blas"):
            HalfStep(rows, Y.shape[1]).solve(Y, _array(reg, np.float32), X, steps, False)
        return block, X

    result = np.empty_like(current.value)
    for block, factors in blocks.map(solve).collect():
        result[block::n_blocks] = factors
    return result


def _array(blob: bytes, dtype) -> np.ndarray:
    """A writable array of a block's bytes (a read-only view would make numba compile the kernels again)."""
    return np.frombuffer(blob, dtype=dtype).copy()
