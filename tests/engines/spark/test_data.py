"""Events read and prepared on Spark equal what the single-node readers and prepare_events build."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset
from recengine.data.prepare import prepare_events as prepare_local
from recengine.data.readers import load_dataset
from recengine.data.readers import read_events as read_local
from recengine.engines.spark.data import events_to_dataset, prepare_events, read_events
from recengine.errors import ConfigError, DataError

RATINGS = Path(__file__).parents[3] / "src" / "recengine" / "datasets" / "ml-latest-small" / "ratings.csv"
MOVIELENS = {"user": "userId", "item": "movieId", "rating": "rating"}
WEIGHTS = {"view": 1.0, "cart": 3.0, "buy": 8.0}


def assert_same_dataset(got: Dataset, expected: Dataset) -> None:
    assert got.users == expected.users and got.items == expected.items  # same ids, in the same order
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.item_index, expected.item_index)
    np.testing.assert_array_equal(got.timestamp, expected.timestamp)
    np.testing.assert_array_equal(got.weight, expected.weight)
    assert (got.rating is None) == (expected.rating is None)
    if got.rating is not None:
        np.testing.assert_array_equal(got.rating, expected.rating)
    assert got.event_types == expected.event_types
    if got.event is not None:
        np.testing.assert_array_equal(got.event, expected.event)


def test_movielens_csv_gives_the_single_node_dataset(spark, tmp_path):
    path = tmp_path / "ratings.csv"
    pd.read_csv(RATINGS, nrows=4000).to_csv(path, index=False)
    # Small splits: the file is read by several tasks, and its rows must still be numbered in file order.
    spark.conf.set("spark.sql.files.maxPartitionBytes", "20k")
    try:
        events = read_events(spark, str(path), columns=MOVIELENS)
        assert events.frame.rdd.getNumPartitions() > 1
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert (events.read, events.rejected, events.kept) == (4000, 0, 4000)
    assert events.frame.columns == ["user", "item", "timestamp", "weight", "rating", "input_order"]
    assert_same_dataset(events.to_dataset(), load_dataset(path, columns=MOVIELENS))


@pytest.fixture(scope="module")
def clicks(spark, tmp_path_factory):
    """Typed events full of timestamp ties and repeated pairs, as a CSV file and its Spark event table."""
    rng = np.random.default_rng(11)
    n = 400
    frame = pd.DataFrame({"user": rng.integers(0, 120, n), "item": rng.integers(0, 25, n),
                          "timestamp": rng.integers(0, 3, n), "event": rng.choice(list(WEIGHTS), n),
                          "weight": rng.integers(1, 4, n) / 2})
    path = tmp_path_factory.mktemp("clicks") / "clicks.csv"
    frame.to_csv(path, index=False)
    return path, read_events(spark, str(path)).frame


@pytest.mark.parametrize("duplicates", ["first", "sum", "max"])  # "sum" keeps the row "last" keeps
def test_prepare_steps_equal_single_node(clicks, duplicates):
    path, table = clicks
    options = {"event_weights": WEIGHTS, "duplicates": duplicates, "k_core": 3}
    prepared, report = prepare_events(table, **options)
    local, local_report = prepare_local(read_local(path).events, **options)
    assert report == local_report and report["duplicates"] > 0 and report["k_core"] > 0
    assert_same_dataset(events_to_dataset(prepared), Dataset.from_events(local))


def test_unknown_event_types_are_named_or_dropped(clicks):
    _, table = clicks
    with pytest.raises(DataError, match=r"\['cart'\] have no weight"):
        prepare_events(table, event_weights={"view": 1, "buy": 2})
    _, report = prepare_events(table, event_weights={"view": 1, "buy": 2}, unknown_events="drop")
    assert report["unknown_events"] > 0 and report["unknown_event_types"] == ["cart"]


BAD_CSV = """user,item,timestamp,rating
u1,i1,100,4
u1,i2,2021-03-04T05:06:07Z,3.5
,i3,101,2

u2,i1,yesterday,4
u2,i2,102,lots
u3,i4,103
u3,i5,104,5
"""


def test_bad_rows_stop_the_job_with_file_row_and_problem(spark, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(BAD_CSV)
    with pytest.raises(DataError, match=r"events\.csv, line 4: missing user \(column 'user'\) \(4 bad line"):
        read_events(spark, str(path))


def test_bad_rows_go_to_the_rejects_table_as_single_node_rejects_them(spark, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text(BAD_CSV)
    events = read_events(spark, str(path), reject_path=str(tmp_path / "rejects"))
    local_rejects = tmp_path / "local.rejected.csv"
    expected = load_dataset(path, on_error="reject", reject_path=local_rejects)
    assert (events.read, events.rejected, events.kept, events.blank_lines) == (7, 4, 3, 1)
    rejects = spark.read.option("header", True).csv(str(tmp_path / "rejects")).toPandas()
    assert rejects["line"].astype(int).tolist() == pd.read_csv(local_rejects)["line"].tolist() == [4, 6, 7, 8]
    assert rejects["problem"].tolist()[:3] == ["missing user (column 'user')", "unparsable timestamp 'yesterday'",
                                               "rating is not a number 'lots'"]
    assert rejects["record"].tolist()[3] == "u3,i4,103"
    assert_same_dataset(events.to_dataset(), expected)


def test_partitioned_parquet_folder(spark, tmp_path):
    days = {"2024-01-02": [("b", "x", 30), ("a", "y", 31)], "2024-01-01": [("c", "x", 10), ("a", "z", 10)]}
    for day, rows in days.items():
        folder = tmp_path / "events" / f"date={day}"
        folder.mkdir(parents=True)
        pd.DataFrame(rows, columns=["user", "item", "ts"]).to_parquet(folder / "part-0.parquet")
    with pytest.raises(DataError, match="format="):
        read_events(spark, str(tmp_path / "events"))
    events = read_events(spark, str(tmp_path / "events"), format="parquet", columns={"timestamp": "ts"})
    # Files in path order (the partitions by date), rows in file order.
    in_order = pd.DataFrame([*days["2024-01-01"], *days["2024-01-02"]], columns=["user", "item", "timestamp"])
    assert_same_dataset(events.to_dataset(), Dataset.from_events(in_order))
    by_day = read_events(spark, str(tmp_path / "events"), format="parquet", columns={"timestamp": "date"})
    assert sorted(by_day.frame.toPandas()["timestamp"].unique()) == [1704067200.0, 1704153600.0]


def test_json_lines_match_single_node(spark, tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"user": 7, "item": "a", "timestamp": 5, "rating": 4.5}\n\n'
                    '{"user": 8, "item": "b", "timestamp": "2020-01-01", "rating": 3}\n'
                    'not json\n{"user": 7, "item": "b", "timestamp": 6, "rating": 1}\n')
    events = read_events(spark, str(path), reject_path=str(tmp_path / "rejects"))
    expected = load_dataset(path, on_error="reject", reject_path=tmp_path / "local.csv")
    assert (events.read, events.rejected, events.kept) == (4, 1, 3)
    assert_same_dataset(events.to_dataset(), expected)


def test_options_and_paths_are_checked(spark, tmp_path):
    with pytest.raises(ConfigError, match="unknown format"):
        read_events(spark, "events.csv", format="xls")
    with pytest.raises(ConfigError, match="timestamp_format"):
        read_events(spark, "events.csv", timestamp_format="%d/%m/%Y")
    with pytest.raises(ConfigError, match="duplicates"):
        read_events(spark, "events.csv", duplicates="newest")
    with pytest.raises(DataError, match="does not exist"):
        read_events(spark, str(tmp_path / "missing.csv"))
