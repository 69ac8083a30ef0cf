"""Spark ranking metrics equal the single-node metrics' means (to 1e-9) on the same lists and truth."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.engines.spark.metrics import ranking_metrics
from recengine.errors import ConfigError, DataError
from recengine.evaluation import metrics as M

N_ITEMS, WIDTH = 40, 12


@pytest.fixture(scope="module")
def lists():
    """Ragged top lists (some empty, some shorter than k), truth with users that get no hit, and lists for users
    outside the test table (not measured)."""
    rng = np.random.default_rng(3)
    n_users = 60
    items = np.full((n_users, WIDTH), -1, dtype=np.int64)
    for u in range(n_users):
        length = [0, 3, 7, WIDTH][u % 4]
        items[u, :length] = rng.choice(N_ITEMS, size=length, replace=False)
    truth_rows, truth_items = [], []
    for u in range(n_users):
        # Users 1, 5, 9, ... hold only items their list never has: no hit at all.
        pool = np.setdiff1d(np.arange(N_ITEMS), items[u]) if u % 4 == 1 else np.arange(N_ITEMS)
        chosen = rng.choice(pool, size=int(rng.integers(1, 9)), replace=False)
        truth_rows += [u] * len(chosen)
        truth_items += list(chosen)
    truth = sp.csr_matrix((np.ones(len(truth_rows)), (truth_rows, truth_items)), shape=(n_users, N_ITEMS))
    return items, truth


def tables(spark, items: np.ndarray, truth: sp.csr_matrix):
    rows, ranks = np.nonzero(items >= 0)
    recs = pd.DataFrame({"user": "u" + pd.Series(rows).astype(str), "item": "i" + pd.Series(items[rows, ranks])
                         .astype(str), "rank": ranks + 1})
    # Lists of users without test events must not count.
    outsiders = pd.DataFrame({"user": ["x1", "x1"], "item": ["i0", "i1"], "rank": [1, 2]})
    coo = truth.tocoo()
    test = pd.DataFrame({"user": "u" + pd.Series(coo.row).astype(str), "item": "i" + pd.Series(coo.col).astype(str)})
    test = pd.concat([test, test.iloc[:5]], ignore_index=True)  # a repeated test pair counts once
    return spark.createDataFrame(pd.concat([recs, outsiders], ignore_index=True)), spark.createDataFrame(test)


def test_metrics_equal_single_node_means(spark, lists):
    items, truth = lists
    recs, test = tables(spark, items, truth)
    ks = (1, 5, 10, WIDTH)
    got = ranking_metrics(recs, test, ks=ks, n_items=N_ITEMS)
    expected = {name: float(np.mean(values)) for name, values in M.ranking_metrics(items, truth, ks).items()}
    expected.update({f"coverage@{k}": M.catalog_coverage(items[:, :k], N_ITEMS) for k in ks})
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-9), name
    assert 0 < got["ndcg@10"] < 1 and got["hr@10"] < 1  # neither trivial nor perfect


def test_a_test_user_without_recommendations_counts_as_zero(spark):
    recs = spark.createDataFrame(pd.DataFrame({"user": ["a", "a"], "item": ["x", "y"], "rank": [1, 2]}))
    test = spark.createDataFrame(pd.DataFrame({"user": ["a", "b"], "item": ["y", "x"]}))
    got = ranking_metrics(recs, test, ks=(2,), n_items=4)
    assert got["hr@2"] == 0.5 and got["mrr@2"] == 0.25 and got["precision@2"] == 0.25
    assert got["coverage@2"] == 0.5


def test_bad_inputs_are_errors(spark):
    recs = spark.createDataFrame(pd.DataFrame({"user": ["a"], "item": ["x"], "rank": [0]}))
    test = spark.createDataFrame(pd.DataFrame({"user": ["a"], "item": ["x"]}))
    with pytest.raises(DataError, match="rank"):
        ranking_metrics(recs, test, n_items=3)
    with pytest.raises(DataError, match="lacks"):
        ranking_metrics(recs.drop("rank"), test, n_items=3)
    with pytest.raises(ConfigError, match="cut-off"):
        ranking_metrics(recs, test, ks=(0,), n_items=3)
    with pytest.raises(DataError, match="n_items"):
        ranking_metrics(recs, test, n_items=0)
