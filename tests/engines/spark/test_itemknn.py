"""ItemKNN neighbourhoods from Spark SQL equal the single-node ones for the same settings (ml-100k users)."""

from pathlib import Path

import numpy as np
import pytest

from recengine.data.movielens import read_ml100k
from recengine.engines.spark.training import fit_bundle
from recengine.errors import ConfigError
from recengine.models.itemknn import ItemKNN
from recengine.trained import TrainedModel

ML100K = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "ml-100k"


@pytest.fixture(scope="module")
def ml100k():
    if not (ML100K / "u.data").is_file():
        pytest.skip(f"needs MovieLens 100K at {ML100K}")
    data = read_ml100k(ML100K)
    # The 300 lightest users keep the self-join small enough for a test; every item they rated stays.
    light = np.argsort(np.diff(data.indptr), kind="stable")[:300]
    keep = np.isin(data.user_index, light)
    return data.select(keep)


def assert_same_neighbours(spark_weights, local_weights):
    """Equal neighbour lists per scored item (a column), ties at the cut-off aside, values to float32 rounding."""
    a, b = spark_weights.tocsc(), local_weights.tocsc()
    assert a.shape == b.shape
    for j in range(a.shape[1]):
        sa, sb = a[:, j], b[:, j]
        va, vb = np.sort(sa.data)[::-1], np.sort(sb.data)[::-1]
        assert len(va) == len(vb), f"item {j}: {len(va)} vs {len(vb)} neighbours"
        np.testing.assert_allclose(va, vb, rtol=1e-5, err_msg=f"item {j}")
        if len(va):
            cut = va[-1] * (1 + 1e-5)  # neighbours strictly above the last kept value are not a tie choice
            above_a = set(sa.indices[sa.data > cut])
            above_b = set(sb.indices[sb.data > cut])
            assert above_a == above_b, f"item {j}"


@pytest.mark.parametrize("settings", [
    {"similarity": "cosine", "shrink": 10.0, "neighbors": 20},
    # Every positive neighbour kept: normalised rows then do not depend on how ties at a cut-off are broken.
    {"similarity": "cosine", "shrink": 5.0, "weighting": "bm25", "neighbors": 5000, "normalize": True},
    {"similarity": "asymmetric", "asymmetric_alpha": 0.3, "weighting": "tfidf", "values": "weight",
     "neighbors": 15},
])
def test_spark_itemknn_equals_single_node_neighbours(spark, ml100k, settings, tmp_path):
    events = spark.createDataFrame(ml100k.to_frame())
    trained = fit_bundle(events, ml100k, "itemknn", settings)
    local = ItemKNN(**settings).fit(ml100k)
    assert_same_neighbours(trained.model.item_weights_, local.item_weights_)
    trained.save(tmp_path / "model")
    loaded = TrainedModel.load(tmp_path / "model")
    assert type(loaded.model) is ItemKNN and loaded.model.get_params() == local.get_params()
    assert len(loaded.recommend(list(ml100k.users.ids[:5]), k=5)) == 25


def test_pearson_is_single_node_only(spark, ml100k):
    events = spark.createDataFrame(ml100k.to_frame().head(100))
    with pytest.raises(ConfigError, match="similarity"):
        fit_bundle(events, ml100k, "itemknn", {"similarity": "pearson"})
