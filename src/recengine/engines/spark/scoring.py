"""Batch top-K on Spark: every user's list from any saved model, history excluded, as a Parquet table.

The model and its popularity fallback are broadcast to the executors as their saved files (for a factor model,
that is the item factors broadcast); the users' histories are a Spark table, one row per user with arrays in
time order; each task scores its users with the model's own `recommend`, in Arrow batches. Lists therefore equal
the single-node `TrainedModel.recommend` on the same artifact, ties aside.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.engines.spark.ids import vocabulary_table
from recengine.errors import ConfigError
from recengine.models.base import Interval, Recommender
from recengine.models.topk import PAD_ITEM
from recengine.trained import TrainedModel

#: Schema of the scored lists before the ids are joined back.
_SCORED = "u int, i int, rank int, score double"
#: Models loaded from broadcasts, per Python worker (workers are reused between tasks).
_LOADED: dict[str, tuple[Recommender, Recommender]] = {}


def dataset_interactions(spark, dataset: Dataset):
    """A Dataset's interactions as an indexed Spark table (u, i, weight, timestamp, rating, input_order)."""
    frame = pd.DataFrame({"u": dataset.user_index, "i": dataset.item_index, "weight": dataset.weight,
                          "timestamp": dataset.timestamp, "input_order": np.arange(dataset.n_interactions)})
    schema = "u int, i int, weight float, timestamp long, input_order long"
    if dataset.rating is not None:
        frame["rating"] = dataset.rating
        schema += ", rating float"
    return spark.createDataFrame(frame, schema=schema)


def history_table(interactions, ratings: bool = False):
    """One row per user u with arrays items, weights, timestamps (and ratings, for rating models) in time order,
    ties by input order."""
    from pyspark.sql import functions as F

    order = [c for c in ("timestamp", "input_order") if c in interactions.columns]
    fields = [F.col(c) for c in order] + [F.col("i"), F.col("weight").cast("float").alias("weight")]
    if ratings:
        fields.append(F.col("rating").cast("float").alias("rating"))
    entries = F.array_sort(F.collect_list(F.struct(*fields)))
    grouped = interactions.groupBy("u").agg(entries.alias("_entries"))
    arrays = [F.col("_entries.i").alias("items"), F.col("_entries.weight").alias("weights"),
              F.col("_entries.timestamp").cast("array<bigint>").alias("timestamps")]
    if ratings:
        arrays.append(F.col("_entries.rating").alias("ratings"))
    return grouped.select("u", *arrays)


def top_k(histories, model: Recommender, fallback: Recommender, users, items, k: int = 10, *,
          exclude_seen: bool = True):
    """(user, item, rank, score) for the users of `users` (an (id, index) table: user, index).

    histories: history_table's rows; a user without a row has an empty history and is answered by the fallback,
    as TrainedModel.recommend does. items: the (item, index) table of the model's vocabulary.
    """
    from pyspark.sql import functions as F

    Interval(int, 1).check("k", k)
    spark = histories.sparkSession
    shipped = spark.sparkContext.broadcast(_saved_files(model, fallback))
    token = uuid.uuid4().hex  # names this broadcast in the workers' cache
    n_items = model.n_items_
    has_ratings = "ratings" in histories.columns

    def score(batches):
        scorer, backup = _load(shipped, token)
        for batch in batches:
            h = _histories(batch, n_items, has_ratings)
            top, scores = scorer.recommend(h, k, exclude_seen=exclude_seen)
            empty = np.flatnonzero(h.lengths == 0)
            if len(empty) and scorer.name != backup.name:
                top[empty], scores[empty] = backup.recommend(h[empty], k, exclude_seen=exclude_seen)
            rows, ranks = np.nonzero(top != PAD_ITEM)
            yield pd.DataFrame({"u": h.users[rows].astype(np.int32), "i": top[rows, ranks].astype(np.int32),
                                "rank": (ranks + 1).astype(np.int32), "score": scores[rows, ranks].astype(np.float64)})

    wanted = users.select(F.col("index").alias("u"), "user")
    scored = wanted.select("u").join(histories, "u", "left").mapInPandas(score, _SCORED)
    return (scored.join(wanted, "u").join(F.broadcast(items.withColumnRenamed("index", "i")), "i")
            .select("user", "item", "rank", "score"))


def recommend_bundle(spark, model_dir: str | Path, k: int = 10, *, exclude_seen: bool = True):
    """Top-k for every training user of a model directory written by `recengine fit` (either engine)."""
    trained = TrainedModel.load(model_dir)
    dataset = trained.dataset
    histories = history_table(dataset_interactions(spark, dataset), ratings=dataset.has_ratings)
    return top_k(histories, trained.model, trained.fallback, vocabulary_table(spark, dataset.users, "user"),
                 vocabulary_table(spark, dataset.items, "item"), k, exclude_seen=exclude_seen)


def write_parquet(recommendations, path: str) -> None:
    """Write the lists as Parquet (any Spark-supported path), replacing what is there."""
    if not path:
        raise ConfigError("give the Parquet output path")
    recommendations.write.mode("overwrite").parquet(str(path))


# ------------------------------------------------------------------------------------------- executors
def _saved_files(model: Recommender, fallback: Recommender) -> dict[str, dict[str, bytes]]:
    """The saved files of both models, {"model" | "fallback": {file name: bytes}}, for a broadcast."""
    shipped = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, m in (("model", model), ("fallback", fallback)):
            m.save(Path(tmp) / name)
            shipped[name] = {f.name: f.read_bytes() for f in (Path(tmp) / name).iterdir()}
    return shipped


def _load(shipped, token: str) -> tuple[Recommender, Recommender]:
    """Both models of a broadcast, loaded once per Python worker."""
    if token not in _LOADED:
        with tempfile.TemporaryDirectory() as tmp:
            loaded = []
            for name, files in shipped.value.items():
                folder = Path(tmp) / name
                folder.mkdir()
                for file, content in files.items():
                    (folder / file).write_bytes(content)
                loaded.append(Recommender.load(folder))
        _LOADED[token] = (loaded[0], loaded[1])
    return _LOADED[token]


def _histories(batch: pd.DataFrame, n_items: int, has_ratings: bool) -> Histories:
    """Histories of a batch of history_table rows (missing arrays: empty histories), marked as known users."""
    def flat(column: str, dtype) -> np.ndarray:
        parts = [np.asarray(v, dtype=dtype) for v in batch[column] if v is not None and len(v)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

    lengths = np.array([0 if v is None else len(v) for v in batch["items"]], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    return Histories(indptr, flat("items", np.int32), n_items, flat("weights", np.float32),
                     flat("timestamps", np.int64), flat("ratings", np.float32) if has_ratings else None,
                     users=batch["u"].to_numpy(np.int64))
