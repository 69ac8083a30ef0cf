import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Vocabulary
from recengine.data.splits import ratings_split
from recengine.errors import ConfigError, DataError, NotFittedError
from recengine.models import Recommender, create_model
from recengine.models.biased_mf import BiasedMF
from recengine.models.knn_baseline import KNNBaseline
from recengine.models.rating_blend import RatingBlend

ML100K = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ml-100k"

#: Two fast bases whose errors differ: a low-rank model and a neighbourhood model.
BASES = [{"name": "biased-mf", "params": {"factors": 3, "epochs": 40, "learning_rate": 0.02,
                                          "bias_learning_rate": 0.02, "lr_decay": 0.98}},
         {"name": "knn-baseline", "params": {"k": 20}}]


def planted_ratings(n_users: int = 150, n_items: int = 80, seed: int = 0):
    """A rank-2 interaction plus taste groups plus noise, on 40% of the matrix, split 80/20."""
    rng = np.random.default_rng(seed)
    U, V = rng.normal(0, 0.5, (n_users, 2)), rng.normal(0, 0.5, (n_items, 2))
    groups = np.where(rng.integers(0, 2, n_users)[:, None] == np.arange(n_items) % 2, 0.5, -0.5)
    truth = 3.2 + rng.normal(0, 0.3, (n_users, 1)) + rng.normal(0, 0.3, (1, n_items)) + U @ V.T + groups
    u, i = np.nonzero(rng.random((n_users, n_items)) < 0.4)
    frame = pd.DataFrame({"user": u, "item": i, "timestamp": np.arange(len(u)),
                          "rating": np.clip(truth[u, i] + rng.normal(0, 0.3, len(u)), 1, 5)})
    test = rng.random(len(frame)) < 0.2
    train = Dataset.from_events(frame[~test], users=Vocabulary(np.arange(n_users)),
                                items=Vocabulary(np.arange(n_items)))
    return train, frame[test]


def rmse(scores: np.ndarray, test: pd.DataFrame) -> float:
    return float(np.sqrt(np.mean((scores[test.user, test.item] - test.rating) ** 2)))


@pytest.fixture(scope="module")
def blend_and_data():
    train, test = planted_ratings()
    return RatingBlend(models=BASES).fit(train), train, test


def test_weights_are_the_ridge_solution_on_the_carved_holdout(blend_and_data):
    blend, train, _ = blend_and_data
    holdout = ratings_split(train, test_fraction=0.1, random_state=42)
    columns = [np.ones(holdout.truth.nnz)]
    for base in (BiasedMF(**BASES[0]["params"]), KNNBaseline(**BASES[1]["params"])):
        columns.append(base.fit(holdout.train).predict(holdout.query, holdout.truth).data)
    X = np.column_stack(columns).astype(np.float64)
    coef = np.linalg.solve(X.T @ X + np.diag([0.0, 1.0, 1.0]), X.T @ holdout.truth.data)
    assert blend.intercept_ == pytest.approx(coef[0], abs=1e-6)
    np.testing.assert_allclose(blend.weights_, coef[1:], rtol=1e-6, atol=1e-8)
    # Least squares on the holdout is at least as good there as either base alone (the ridge is tiny).
    assert blend.holdout_blend_rmse_ <= min(blend.holdout_rmse_) + 1e-4


def test_scores_blend_the_bases_refitted_on_all_data(blend_and_data):
    blend, train, test = blend_and_data
    h = train.histories()
    bases = [BiasedMF(**BASES[0]["params"]).fit(train), KNNBaseline(**BASES[1]["params"]).fit(train)]
    expected = blend.intercept_ + sum(w * b.score(h) for w, b in zip(blend.weights_, bases, strict=True))
    np.testing.assert_allclose(blend.score(h), np.clip(expected, blend.rating_min_, blend.rating_max_),
                               rtol=1e-5, atol=1e-5)
    # On planted data mixing low-rank and group structure, the blend beats both of its bases on unseen ratings.
    assert rmse(blend.score(h), test) < min(rmse(b.score(h), test) for b in bases)


def test_round_trip_restores_the_bases(blend_and_data, tmp_path):
    blend, train, _ = blend_and_data
    blend.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["params"]["models"] == BASES
    back = Recommender.load(tmp_path / "m")
    assert isinstance(back, RatingBlend) and back.get_params() == blend.get_params()
    h = train.histories(np.arange(30))
    np.testing.assert_array_equal(back.score(h), blend.score(h))
    np.testing.assert_array_equal(back.score(h.with_users(None)), blend.score(h.with_users(None)))
    assert [type(b) for b in back._bases()] == [BiasedMF, KNNBaseline]
    back.save(tmp_path / "again")  # a loaded blend saves again
    np.testing.assert_array_equal(Recommender.load(tmp_path / "again").score(h), blend.score(h))


def test_bad_configurations():
    train, _ = planted_ratings(n_users=40, n_items=20)
    with pytest.raises(NotFittedError):
        RatingBlend(models=BASES).score(train.histories())
    bad_models = [[], ["no-such-model"], ["ials"], [{"name": "svdpp", "params": {"no_such_param": 1}}],
                  [{"model": "svdpp"}], [42], "svdpp"]
    for models in bad_models:
        with pytest.raises(ConfigError):
            RatingBlend(models=models).fit(train)
    for fraction in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError):
            RatingBlend(models=BASES, holdout_fraction=fraction).fit(train)
    events = pd.DataFrame({"user": [0, 1], "item": [0, 1], "timestamp": [1, 2]})
    with pytest.raises(DataError, match="explicit ratings"):
        RatingBlend(models=BASES).fit(Dataset.from_events(events))
    assert isinstance(create_model("blend"), RatingBlend)
    assert RatingBlend()._specs() == [("bayesian-svdpp", {}), ("svdpp", {}), ("biased-mf", {}), ("knn-baseline", {})]


@pytest.mark.skipif(not (ML100K / "u1.base").is_file(), reason="ml-100k not available")
def test_movielens_100k_u1_rmse_with_the_default_bases():
    from recengine.data.movielens import read_ml100k_fold
    from recengine.data.splits import predefined_split
    from recengine.evaluation import fit_and_evaluate

    split = predefined_split(*read_ml100k_fold(ML100K, "u1"), drop_unseen_items=False)
    blend = RatingBlend()
    rmse = fit_and_evaluate(blend, split, metrics=["rmse"]).metrics["rmse"]
    # 0.8864 with the defaults; the weights come from a holdout carved out of u1.base inside fit.
    assert rmse < 0.8885
    assert blend.holdout_blend_rmse_ < min(blend.holdout_rmse_)
