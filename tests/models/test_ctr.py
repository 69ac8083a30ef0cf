import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.data import Dataset, Histories
from recengine.errors import ConfigError
from recengine.evaluation.metrics import auc
from recengine.models import Recommender
from recengine.models.neural.ctr import DeepFM, WideDeep, _contexts

FAST = {"lr": 1e-2, "batch_size": 128, "epochs": 8, "patience": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    """40 users, 30 items: women take genre X items, men genre Y (8 each, one a day); plus a year and titles."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        liked = rng.choice(np.arange(15) + 15 * (u % 2), size=8, replace=False)
        rows += [(f"u{u}", f"i{i}", 86_400 * t) for t, i in enumerate(liked)]
    events = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    items = pd.DataFrame({"genres": [["X"] if i < 15 else ["Y"] for i in range(30)],
                          "year": np.arange(30) + 1990, "title": [f"film {i}" for i in range(30)]},
                         index=[f"i{i}" for i in range(30)])
    users = pd.DataFrame({"gender": ["F", "M"] * 20, "age": np.arange(40) + 20}, index=[f"u{u}" for u in range(40)])
    return Dataset.from_events(events, items, users)


def test_features_found_in_the_data(data):
    model = DeepFM(**{**FAST, "epochs": 1}).fit(data)
    assert model.feature_fields_ == ["user.id", "user.gender", "user.age", "context.history", "context.log_length",
                                     "context.category_affinity", "context.category_recency", "item.id",
                                     "item.genres", "item.year"]  # titles are all distinct: not a category


def test_contexts_hold_only_earlier_events():
    # One row of 4 events on days 0, 1, 3, 10; items 0 and 2 are in category 0, item 1 in category 1.
    categories = np.array([[1, 0], [0, 1], [1, 0]])
    indptr, items = np.array([0, 4]), np.array([0, 1, 2, 1])
    timestamps = np.array([0, 1, 3, 10]) * 86_400
    ends = np.arange(5)
    out = _contexts(indptr, items, timestamps, ends, np.zeros(5, np.int64), categories, 3, 2.0)
    np.testing.assert_array_equal(out["window"], [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 2]])
    np.testing.assert_allclose(out["log_length"], np.log1p(np.arange(5)))
    np.testing.assert_allclose(out["share"], [[0, 0], [1, 0], [0.5, 0.5], [2 / 3, 1 / 3], [0.5, 0.5]])
    # Days from the latest category-c event to the context's latest event, through exp(-days / 2).
    expected = np.exp(-np.array([[np.inf, np.inf], [0, np.inf], [1, 0], [0, 2], [7, 0]]) / 2.0)
    np.testing.assert_allclose(out["recency"], expected, rtol=1e-6)
    plain = _contexts(indptr, items, None, ends, np.zeros(5, np.int64), categories, 3, 2.0)
    assert (plain["recency"] == 0).all()


@pytest.mark.parametrize("cls", [DeepFM, WideDeep])
def test_a_new_history_ranks_its_genre_first(cls, data):
    model = cls(**FAST).fit(data)
    x_films, y_films = ([data.items.index(f"i{i}") for i in first] for first in ([0, 1, 2], [15, 16, 17]))
    scores = model.score(Histories.from_lists([x_films, y_films], 30))
    genre_x = np.array([int(i[1:]) < 15 for i in data.items.ids])
    rest = ~np.isin(np.arange(30), x_films + y_films)
    assert auc(genre_x[rest], scores[0, rest]) > 0.8 and auc(~genre_x[rest], scores[1, rest]) > 0.8


def test_predict_scores_only_the_given_pairs_like_score(data):
    model = WideDeep(**FAST).fit(data)
    h = data.histories()[:5]
    pairs = sp.csr_matrix(np.random.default_rng(1).random((5, 30)) < 0.2, dtype=np.float32)
    predicted = model.predict(h, pairs)
    rows, cols = pairs.nonzero()
    np.testing.assert_allclose(np.asarray(predicted[rows, cols]).ravel(), model.score(h)[rows, cols], rtol=1e-5,
                               atol=1e-5)


def test_early_stopping_and_save_load(data, tmp_path):
    model = DeepFM(**{**FAST, "patience": 2, "epochs": 6, "validation_metric": "log_loss"}).fit(data)
    assert 1 <= model.best_epoch_ <= len(model.validation_scores_) <= 6
    assert all(v < 0 for v in model.validation_scores_)  # minus the log-loss
    model.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    fresh = Histories.from_lists([[0, 3], []], 30)
    np.testing.assert_allclose(loaded.score(fresh), model.score(fresh), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("params", [{"validation_metric": "ndcg"}, {"user_dropout": 1.5}, {"cross_buckets": 0}])
def test_bad_parameters(params, data):
    with pytest.raises(ConfigError):
        WideDeep(**params).fit(data)
