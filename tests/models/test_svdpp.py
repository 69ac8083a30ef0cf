from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import ConfigError, DataError, NotFittedError
from recengine.models import Recommender, create_model
from recengine.models.svdpp import SVDpp, _sgd_epoch
from recengine.testing import planted_ratings

ML100K = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ml-100k"


def rmse(scores: np.ndarray, test: pd.DataFrame) -> float:
    return float(np.sqrt(np.mean((scores[test.user, test.item] - test.rating) ** 2)))


def fitted(**params) -> tuple[SVDpp, Dataset, pd.DataFrame]:
    train, test, _ = planted_ratings()
    defaults = {"factors": 4, "epochs": 60, "learning_rate": 0.02, "bias_learning_rate": 0.02,
                "implicit_learning_rate": 0.005, "regularization": 0.02, "implicit_regularization": 0.02,
                "lr_decay": 0.98}
    return SVDpp(**{**defaults, **params}).fit(train), train, test


def test_planted_low_rank_ratings_are_recovered():
    model, train, test = fitted()
    baseline = float(np.sqrt(np.mean((test.rating - train.rating.mean()) ** 2)))
    assert rmse(model.score(train.histories()), test) < 0.25 * baseline
    # An unknown user with the same history: p_u, b_u by ridge, the implicit part from the history.
    assert rmse(model.score(train.histories().with_users(None)), test) < 0.3 * baseline


def naive_epoch(users, items, ratings, order, mu, P, Q, Y, bu, bi, lr, lr_y, lr_b, reg, reg_y, reg_b):
    """Koren's SVD++ step, literally: every rating recomputes z from the y_j and updates every y_j of N(u)."""
    for e in order:
        u, i, r = users[e], items[e], ratings[e]
        n_u = items[users == u]
        z = Y[n_u].sum(axis=0) / np.sqrt(len(n_u))
        err = r - (mu + bu[u] + bi[i] + Q[i] @ (P[u] + z))
        bu[u] += lr_b * (err - reg_b * bu[u])
        bi[i] += lr_b * (err - reg_b * bi[i])
        p, q = P[u].copy(), Q[i].copy()
        P[u] += lr * (err * q - reg * p)
        Q[i] += lr * (err * (p + z) - reg * q)
        Y[n_u] += lr_y * (err * q / np.sqrt(len(n_u)) - reg_y * Y[n_u])


def test_grouped_implicit_update_equals_kornes_per_rating_update():
    rng = np.random.default_rng(3)
    indptr = np.array([0, 3, 3, 7, 9])  # user 1 has no ratings
    items = np.array([0, 2, 4, 1, 2, 3, 5, 0, 5], dtype=np.int32)
    ratings = rng.uniform(1, 5, 9).astype(np.float32)
    users = np.repeat(np.arange(4), np.diff(indptr))
    P, Q, Y = (rng.normal(0, 0.3, (n, 3)).astype(np.float32) for n in (4, 6, 6))
    bu, bi = rng.normal(0, 0.1, 4).astype(np.float32), rng.normal(0, 0.1, 6).astype(np.float32)
    user_order = np.array([2, 0, 3, 1])
    entry_order = np.array([2, 0, 1, 5, 3, 6, 4, 8, 7])  # each user's slice permuted within itself
    rates, regs = np.array([0.05, 0.03, 0.04], np.float32), np.array([0.1, 0.2, 0.05], np.float32)
    expected = [a.astype(np.float64) for a in (P, Q, Y, bu, bi)]
    flat_order = [e for u in user_order for e in entry_order[indptr[u]:indptr[u + 1]]]
    naive_epoch(users, items, ratings.astype(np.float64), flat_order, 3.2, *expected, *rates, *regs)
    _sgd_epoch(user_order, entry_order, indptr, items, ratings, np.float32(3.2), P, Q, Y, bu, bi, rates, regs)
    for got, want in zip((P, Q, Y, bu, bi), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_implicit_part_follows_the_history():
    model, train, _ = fitted(epochs=10)
    h = Histories.from_lists([[0, 3, 3], []], train.n_items, ratings=[[4.0, 2.0, 3.0], []])
    z = model.implicit_part(h)
    np.testing.assert_allclose(z[0], (model.implicit_factors_[0] + model.implicit_factors_[3]) / np.sqrt(2),
                               rtol=1e-5)
    assert (z[1] == 0).all()
    # An empty history predicts from the global mean and item biases alone.
    expected = np.clip(model.global_mean_ + model.item_biases_, model.rating_min_, model.rating_max_)
    np.testing.assert_allclose(model.score(h)[1], expected, rtol=1e-6)


def test_fit_needs_ratings():
    events = pd.DataFrame({"user": [0, 1], "item": [0, 1], "timestamp": [1, 2]})
    with pytest.raises(DataError, match="explicit ratings"):
        SVDpp().fit(Dataset.from_events(events))


def test_reproducible_and_round_trips(tmp_path):
    a, train, _ = fitted(epochs=5, random_state=1)
    b, _, _ = fitted(epochs=5, random_state=1)
    c, _, _ = fitted(epochs=5, random_state=2)
    np.testing.assert_array_equal(a.implicit_factors_, b.implicit_factors_)
    assert not np.allclose(a.implicit_factors_, c.implicit_factors_)
    a.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert isinstance(back, SVDpp)
    h = train.histories([0, 1])
    np.testing.assert_array_equal(back.score(h), a.score(h))
    np.testing.assert_array_equal(back.score(h.with_users(None)), a.score(h.with_users(None)))


def test_registry_errors_and_unfitted_use():
    assert isinstance(create_model("svdpp"), SVDpp)
    train, _, _ = planted_ratings()
    with pytest.raises(NotFittedError):
        SVDpp().score(train.histories())
    with pytest.raises(ConfigError):
        SVDpp(implicit_regularization=-1.0).fit(train)


@pytest.mark.skipif(not (ML100K / "u1.base").is_file(), reason="ml-100k not available")
def test_movielens_100k_u1_rmse():
    cols = ["user", "item", "rating", "timestamp"]
    base = pd.read_csv(ML100K / "u1.base", sep="\t", names=cols)
    test = pd.read_csv(ML100K / "u1.test", sep="\t", names=cols)
    both = pd.concat([base, test])
    users, items = Vocabulary.from_values(both.user), Vocabulary.from_values(both.item)
    train = Dataset.from_events(base, users=users, items=items)
    scores = SVDpp().fit(train).score(train.histories())
    error = np.sqrt(np.mean((scores[users.index(test.user), items.index(test.item)] - test.rating) ** 2))
    assert error < 0.91  # 0.904 with the tuned defaults (validation carved from u1.base)
