"""Id maps between Spark event tables (external string ids) and a model's internal indices.

An artifact's factor rows and similarity columns are indexed by the vocabularies of its Dataset; every Spark job
that trains or scores for an artifact joins its events to those vocabularies as (id, index) tables, so Spark and
the single-node path agree on what index 17 means.
"""

from __future__ import annotations

import pandas as pd

from recengine.data.vocab import Vocabulary
from recengine.errors import DataError


def vocabulary_table(spark, vocab: Vocabulary, column: str):
    """A Spark table (column string, index int) of a vocabulary: position = internal index."""
    frame = pd.DataFrame({column: vocab.ids.astype(str), "index": range(len(vocab))})
    return spark.createDataFrame(frame, schema=f"{column} string, index int")


def spark_vocabulary(events, column: str):
    """(column string, index int) over the distinct ids of a Spark events table, in sorted id order.

    The index comes from zipWithIndex over the sorted ids, which needs no single-partition window.
    """
    distinct = events.select(column).distinct().orderBy(column)
    return distinct.rdd.zipWithIndex().map(lambda pair: (pair[0][0], int(pair[1]))).toDF(f"{column} string, index int")


def collect_vocabulary(table, column: str) -> Vocabulary:
    """The Vocabulary of an (id, index) table, collected to the driver in index order."""
    frame = table.orderBy("index").toPandas()
    return Vocabulary(frame[column].to_numpy())


def indexed_events(events, users, items):
    """Events with the internal indices u and i of their user and item (u, i, weight, timestamp, rating, input_order:
    those of the four the events have).

    users and items are (id, index) tables; an event whose user or item they lack is an error, never dropped.
    """
    from pyspark.sql import functions as F

    joined = (events.join(users.withColumnRenamed("index", "u"), "user", "left")
              .join(F.broadcast(items.withColumnRenamed("index", "i")), "item", "left"))
    unknown = joined.filter(F.col("u").isNull() | F.col("i").isNull()).select("user", "item").limit(1).collect()
    if unknown:
        raise DataError(f"event (user {unknown[0]['user']!r}, item {unknown[0]['item']!r}) is not in the model's "
                        "vocabularies; index the same events the model is trained on")
    columns = [c for c in ("weight", "timestamp", "rating", "input_order") if c in events.columns]
    return joined.select("u", "i", *columns)
