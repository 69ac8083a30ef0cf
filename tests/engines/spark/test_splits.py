"""The Spark splits are identical to the single-node ones on the same events (ties in time: input order)."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from recengine.data import Dataset
from recengine.data.readers import read_events as read_local
from recengine.data.splits import split as split_local
from recengine.engines.spark.splits import split
from recengine.errors import ConfigError, DataError

RATINGS = Path(__file__).parents[3] / "src" / "recengine" / "datasets" / "ml-latest-small" / "ratings.csv"


def spark_table(spark, frame: pd.DataFrame):
    """The event table of a canonical frame, numbered in its row order (as read_events numbers the input)."""
    n = len(frame)
    rating = frame["rating"].astype(float) if "rating" in frame else pd.Series([None] * n, dtype=float)
    return spark.createDataFrame(pa.table({
        "user": frame["user"].astype(str).to_numpy(), "item": frame["item"].astype(str).to_numpy(),
        "timestamp": frame["timestamp"].astype(float).to_numpy(),
        "weight": (frame["weight"] if "weight" in frame else pd.Series(np.ones(n))).astype(float).to_numpy(),
        "rating": pa.array(rating.to_numpy(), from_pandas=True), "input_order": np.arange(n, dtype=np.int64),
    }))


def rows_of_spark(table) -> list[tuple]:
    df = table.select("user", "item", "timestamp", "weight", "rating").toArrow().to_pandas()
    return sorted(zip(df["user"], df["item"], df["timestamp"].astype(np.int64), df["weight"],
                      df["rating"].fillna(-1.0), strict=True))


def rows_of_dataset(ds: Dataset) -> list[tuple]:
    df = ds.to_frame()
    rating = df["rating"].astype(float) if "rating" in df else pd.Series(-1.0, index=df.index)
    return sorted(zip(df["user"], df["item"], df["timestamp"].astype(np.int64), df["weight"].astype(float),
                      rating, strict=True))


def assert_same_split(spark_pair, local) -> None:
    train, test = spark_pair
    assert rows_of_spark(train) == rows_of_dataset(local.train)
    assert rows_of_spark(test) == rows_of_dataset(local.test)


@pytest.fixture(scope="module")
def movielens(spark):
    frame = read_local(RATINGS, columns={"user": "userId", "item": "movieId", "rating": "rating"}).events
    return spark_table(spark, frame), Dataset.from_events(frame)


@pytest.fixture(scope="module")
def ties(spark):
    """Few timestamps, repeated (user, item) pairs, different weights: every tie rule is exercised."""
    rng = np.random.default_rng(7)
    n = 500
    frame = pd.DataFrame({"user": "u" + pd.Series(rng.integers(0, 25, n)).astype(str),
                          "item": "i" + pd.Series(rng.integers(0, 30, n)).astype(str),
                          "timestamp": rng.integers(0, 4, n), "weight": rng.integers(1, 5, n) / 2})
    return spark_table(spark, frame), Dataset.from_events(frame)


@pytest.mark.parametrize("protocol", ["temporal-user", "global-temporal", "loo"])
def test_splits_equal_single_node_on_movielens(movielens, protocol):
    table, dataset = movielens
    assert_same_split(split(table, protocol), split_local(dataset, protocol))


@pytest.mark.parametrize(("protocol", "options"), [
    ("temporal-user", {"test_fraction": 0.3, "min_interactions": 3}),
    ("temporal-user", {"test_fraction": 0.5, "min_interactions": 2}),
    ("loo", {"min_interactions": 4}),
    ("global-temporal", {"test_fraction": 0.4}),
    ("global-temporal", {"cut": 1.5}),
])
def test_splits_equal_single_node_on_timestamp_ties(ties, protocol, options):
    table, dataset = ties
    local = split_local(dataset, protocol, **options)
    assert local.test.n_interactions > 10  # a real test set, with ties cut through
    assert_same_split(split(table, protocol, **options), local)


def test_split_options_and_inputs_are_checked(ties, spark):
    table, _ = ties
    with pytest.raises(ConfigError, match="unknown protocol"):
        split(table, "strong")
    with pytest.raises(ConfigError, match="no option"):
        split(table, "loo", test_fraction=0.2)
    with pytest.raises(ConfigError, match="test_fraction"):
        split(table, "temporal-user", test_fraction=1.5)
    with pytest.raises(ConfigError, match="single-node"):
        split(table, "loo", n_negatives=99)
    with pytest.raises(DataError, match="input_order"):
        split(table.drop("input_order"), "loo")
    with pytest.raises(DataError, match="only test"):
        split(table, "global-temporal", cut=-1)
