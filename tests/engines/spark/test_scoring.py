"""Batch top-K on Spark equals the single-node top-K on the same artifact, ties aside."""

import numpy as np
import pandas as pd
import pytest

from recengine.data.dataset import Dataset
from recengine.data.movielens import bundled_movielens
from recengine.engines.spark.scoring import recommend_bundle, write_parquet
from recengine.errors import ConfigError
from recengine.models.ials import ImplicitALS
from recengine.models.itemknn import ItemKNN
from recengine.trained import TrainedModel


@pytest.fixture(scope="module")
def small():
    """ml-latest-small's first 120 users, with one user whose history is emptied (the fallback answers it)."""
    data = bundled_movielens()
    first = Dataset.from_events(data.select(data.user_index < 120).to_frame())
    return first.select(first.user_index != 7)


def assert_same_lists(spark_frame: pd.DataFrame, local: pd.DataFrame, tolerance: float = 1e-5):
    """Same users, ranks and scores; the same item at every rank whose score is not tied with a neighbour's."""
    key = ["user", "rank"]
    a = spark_frame.sort_values(key).reset_index(drop=True)
    b = local.sort_values(key).reset_index(drop=True)
    assert (a["user"].astype(str).to_numpy() == b["user"].astype(str).to_numpy()).all()
    assert (a["rank"].to_numpy(np.int64) == b["rank"].to_numpy(np.int64)).all()
    np.testing.assert_allclose(a["score"], b["score"], rtol=tolerance, atol=tolerance)
    gap = b.groupby("user")["score"].transform(lambda s: np.minimum(s.diff().abs().fillna(np.inf),
                                                                    s.diff(-1).abs().fillna(np.inf)))
    clear = gap.to_numpy() > tolerance * np.maximum(1.0, b["score"].abs().to_numpy())
    assert clear.mean() > 0.5  # most places are not ties: the comparison below says something
    assert (a["item"].to_numpy()[clear] == b["item"].to_numpy()[clear]).all()


@pytest.mark.parametrize("model", [ImplicitALS(factors=16, iterations=3), ItemKNN(neighbors=50)],
                         ids=["ials", "itemknn"])
def test_spark_top_k_equals_single_node(spark, small, model, tmp_path):
    TrainedModel.fit(model, small).save(tmp_path / "model")
    trained = TrainedModel.load(tmp_path / "model")
    write_parquet(recommend_bundle(spark, tmp_path / "model", k=10), str(tmp_path / "recs"))
    from_spark = pd.read_parquet(tmp_path / "recs")
    assert list(from_spark.columns) == ["user", "item", "rank", "score"]
    local = trained.recommend(list(small.users.ids), k=10).drop(columns="source")
    assert from_spark["user"].nunique() == small.n_users  # the emptied user is answered too (by popularity)
    assert_same_lists(from_spark, local)
    seen = set(zip(small.to_frame()["user"], small.to_frame()["item"], strict=True))
    assert not any(pair in seen for pair in zip(from_spark["user"], from_spark["item"], strict=True))


def test_top_k_needs_a_positive_k(spark, small, tmp_path):
    TrainedModel.fit(ItemKNN(neighbors=5), small).save(tmp_path / "model")
    with pytest.raises(ConfigError, match="k must be"):
        recommend_bundle(spark, tmp_path / "model", k=0)
