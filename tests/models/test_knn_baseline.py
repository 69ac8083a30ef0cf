from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Vocabulary
from recengine.errors import ConfigError, DataError, NotFittedError
from recengine.models import Recommender, create_model
from recengine.models.knn_baseline import KNNBaseline

ML100K = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "ml-100k"


def random_ratings(n_users: int = 14, n_items: int = 11, density: float = 0.55, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    frame = pd.DataFrame({"user": u, "item": i, "timestamp": np.arange(len(u)),
                          "rating": rng.integers(1, 6, len(u)).astype(float)})
    return Dataset.from_events(frame, users=Vocabulary(np.arange(n_users)), items=Vocabulary(np.arange(n_items)))


def naive_knn_baseline(data: Dataset, k: int, shrinkage: float, min_k: int, reg_u: float, reg_i: float,
                       epochs: int) -> np.ndarray:
    """Surprise's KNNBaseline (pearson_baseline, item-based), written out with loops: the full score matrix."""
    R = data.matrix("rating").toarray()
    rated = R > 0
    n_users, n_items = R.shape
    mu = R[rated].mean()
    bu, bi = np.zeros(n_users), np.zeros(n_items)
    for _ in range(epochs):
        for i in range(n_items):
            users = np.flatnonzero(rated[:, i])
            bi[i] = sum(R[u, i] - mu - bu[u] for u in users) / (reg_i + len(users))
        for u in range(n_users):
            items = np.flatnonzero(rated[u])
            bu[u] = sum(R[u, i] - mu - bi[i] for i in items) / (reg_u + len(items))
    base = mu + bu[:, None] + bi[None, :]
    sim = np.zeros((n_items, n_items))
    for i in range(n_items):
        for j in range(n_items):
            common = np.flatnonzero(rated[:, i] & rated[:, j])
            if i == j or len(common) == 0 or len(common) - 1 + shrinkage == 0:
                continue
            zi, zj = R[common, i] - base[common, i], R[common, j] - base[common, j]
            denom = np.sqrt((zi ** 2).sum() * (zj ** 2).sum())
            if denom > 0:
                sim[i, j] = (zi @ zj) / denom * (len(common) - 1) / (len(common) - 1 + shrinkage)
    out = np.empty((n_users, n_items))
    for u in range(n_users):
        for i in range(n_items):
            neighbours = sorted(((sim[i, j], R[u, j] - base[u, j]) for j in np.flatnonzero(rated[u])),
                                key=lambda t: -t[0])[:k]
            neighbours = [(s, z) for s, z in neighbours if s > 0]
            out[u, i] = base[u, i]
            if len(neighbours) >= min_k and neighbours:
                out[u, i] += sum(s * z for s, z in neighbours) / sum(s for s, _ in neighbours)
    return np.clip(out, R[rated].min(), R[rated].max())


@pytest.mark.parametrize("params", [
    {"k": 3, "shrinkage": 2.0, "min_k": 1, "user_regularization": 3.0, "item_regularization": 2.0},
    {"k": 40, "shrinkage": 0.0, "min_k": 2, "user_regularization": 0.5, "item_regularization": 7.0},
])
def test_scores_equal_a_literal_implementation(params):
    data = random_ratings()
    model = KNNBaseline(baseline_iterations=4, **params).fit(data)
    expected = naive_knn_baseline(data, params["k"], params["shrinkage"], params["min_k"],
                                  params["user_regularization"], params["item_regularization"], 4)
    np.testing.assert_allclose(model.score(data.histories()), expected, rtol=1e-4, atol=1e-4)
    # Scoring reads only the history: the same rows as unknown users score the same.
    np.testing.assert_allclose(model.score(data.histories().with_users(None)), expected, rtol=1e-4, atol=1e-4)


def test_max_neighbors_keeps_the_strongest_similarities():
    data = random_ratings(n_users=30, n_items=12, density=0.7, seed=1)
    full = KNNBaseline(shrinkage=1.0).fit(data).similarities_.toarray()
    capped = KNNBaseline(shrinkage=1.0, max_neighbors=3).fit(data).similarities_.toarray()
    assert (np.count_nonzero(capped, axis=1) <= 3).all()
    for i in range(12):
        kept = np.flatnonzero(capped[i])
        np.testing.assert_allclose(capped[i, kept], full[i, kept], rtol=1e-6)
        if len(kept):
            assert full[i, kept].min() >= np.sort(full[i])[-len(kept)] - 1e-7
    assert (np.diag(full) == 0).all() and (full >= 0).all()


def planted_ratings(n_users: int = 150, n_items: int = 60, seed: int = 0):
    """Two item groups; each user likes one group (4-5 stars) and dislikes the other (1-2); 80/20 split."""
    rng = np.random.default_rng(seed)
    group_of_user, group_of_item = rng.integers(0, 2, n_users), np.arange(n_items) % 2
    u, i = np.nonzero(rng.random((n_users, n_items)) < 0.4)
    liked = group_of_user[u] == group_of_item[i]
    rating = np.where(liked, rng.integers(4, 6, len(u)), rng.integers(1, 3, len(u))).astype(float)
    frame = pd.DataFrame({"user": u, "item": i, "timestamp": np.arange(len(u)), "rating": rating})
    test = rng.random(len(frame)) < 0.2
    train = Dataset.from_events(frame[~test], users=Vocabulary(np.arange(n_users)),
                                items=Vocabulary(np.arange(n_items)))
    return train, frame[test]


def test_planted_taste_groups_are_recovered():
    train, test = planted_ratings()
    spread = np.sqrt(np.mean((test.rating - train.rating.mean()) ** 2))

    def error(model: KNNBaseline) -> float:
        scores = model.fit(train).score(train.histories())
        return float(np.sqrt(np.mean((scores[test.user, test.item] - test.rating) ** 2)))

    # min_k = k = more than any history holds: never enough neighbours, so the baselines alone.
    assert error(KNNBaseline(k=1000, min_k=1000)) > 0.9 * spread
    assert error(KNNBaseline()) < 0.4 * spread  # ratings are uniform over {4, 5} or {1, 2}: 0.32 at best
    model = KNNBaseline().fit(train)
    items, _ = model.similar_items(np.array([0, 1]), k=5)
    assert (items % 2 == np.array([[0], [1]])).all(), "an item's neighbours are in its own group"


def test_explain_shares_add_up_to_the_neighbourhood_term():
    train, _ = planted_ratings()
    model = KNNBaseline(k=5).fit(train)
    h = train.histories([3])
    explanation = model.explain(h, item=10, top=100)
    assert 1 <= len(explanation.contributions) <= 5
    rated = h.row(0)
    assert all(j in rated for j, _ in explanation.contributions)
    _, bu, _ = model._residuals(h)
    base = model.global_mean_ + bu[0] + model.item_biases_[10]
    unclipped = base + sum(share for _, share in explanation.contributions)
    assert explanation.score == pytest.approx(np.clip(unclipped, 1, 5), abs=1e-5)


def test_round_trip_and_registry(tmp_path):
    train, _ = planted_ratings()
    model = create_model("knn-baseline", k=10).fit(train)
    assert isinstance(model, KNNBaseline)
    model.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    h = train.histories(np.arange(20))
    np.testing.assert_array_equal(back.score(h), model.score(h))
    assert back.get_params() == model.get_params()


def test_bad_parameters_and_data():
    train, _ = planted_ratings()
    with pytest.raises(NotFittedError):
        KNNBaseline().score(train.histories())
    with pytest.raises(ConfigError, match="min_k"):
        KNNBaseline(k=5, min_k=6).fit(train)
    for bad in ({"k": 0}, {"shrinkage": -1.0}, {"user_regularization": -0.1}, {"max_neighbors": -3}):
        with pytest.raises(ConfigError):
            KNNBaseline(**bad).fit(train)
    events = pd.DataFrame({"user": [0, 1], "item": [0, 1], "timestamp": [1, 2]})
    with pytest.raises(DataError, match="explicit ratings"):
        KNNBaseline().fit(Dataset.from_events(events))


@pytest.mark.skipif(not (ML100K / "u1.base").is_file(), reason="ml-100k not available")
def test_movielens_100k_u1_rmse():
    from recengine.data.movielens import read_ml100k_fold
    from recengine.data.splits import predefined_split
    from recengine.evaluation import fit_and_evaluate

    split = predefined_split(*read_ml100k_fold(ML100K, "u1"), drop_unseen_items=False)
    rmse = fit_and_evaluate(KNNBaseline(), split, metrics=["rmse"]).metrics["rmse"]
    assert rmse < 0.933  # 0.9296 with the tuned defaults (validation carved from u1.base)
