import math

import numpy as np
import pandas as pd
import pytest

import recengine.models._similarity as similarity_module
from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import ConfigError, NotFittedError
from recengine.models import Recommender
from recengine.models.userknn import UserKNN


def dataset_from_rows(rows: list[list[int]], weights: list[list[float]] | None = None) -> Dataset:
    """User u interacted with rows[u] (item "k" has internal index k), optionally with weights."""
    n_items = max(max(r) for r in rows if r) + 1
    events = [(f"u{u}", f"{i}", t, 1.0 if weights is None else weights[u][t])
              for u, items in enumerate(rows) for t, i in enumerate(items)]
    frame = pd.DataFrame(events, columns=["user", "item", "timestamp", "weight"])
    return Dataset.from_events(frame, items=Vocabulary(range(n_items)))


def planted() -> Dataset:
    """Items 0-4 form cluster A (6 users), items 5-9 cluster B (12 users, so B is more popular)."""
    rows = [[0, 1, 2], [1, 2, 3], [2, 3, 4], [0, 3, 4], [0, 1, 4], [1, 3, 4]]
    rows += [[5 + (u + k) % 5 for k in range(3)] for u in range(12)]
    return dataset_from_rows(rows)


TINY = [[0, 1], [0, 2], [0, 1, 2]]  # user rows: u0 = (1,1,0), u1 = (1,0,1), u2 = (1,1,1)
QUERY = Histories.from_lists([[0, 1]], 3)


@pytest.mark.parametrize("params", [
    {}, {"similarity": "jaccard"}, {"similarity": "pearson"}, {"similarity": "asymmetric"},
    {"weighting": "bm25"}, {"weighting": "tfidf"}, {"neighbors": 3},
])
def test_planted_clusters_rank_own_cluster_first_for_a_new_user(params):
    ds = planted()
    model = UserKNN(**params).fit(ds)
    history = Histories.from_lists([[0, 1]], ds.n_items)
    items, _ = model.recommend(history, 3)
    assert set(items[0].tolist()) == {2, 3, 4}
    scores = model.score(history)[0]
    assert scores[[2, 3, 4]].min() > scores[5:].max()


def test_cosine_neighbours_and_scores_match_hand_values():
    model = UserKNN(shrink=0.0).fit(dataset_from_rows(TINY))
    r6 = math.sqrt(6)
    np.testing.assert_allclose(model.nearest_users(QUERY).toarray(), [[1.0, 0.5, 2 / r6]], rtol=1e-6)
    # score = 1 * u0 + 0.5 * u1 + (2 / sqrt 6) * u2
    np.testing.assert_allclose(model.score(QUERY), [[1.5 + 2 / r6, 1 + 2 / r6, 0.5 + 2 / r6]], rtol=1e-6)
    only_best = UserKNN(shrink=0.0, neighbors=1).fit(dataset_from_rows(TINY))
    np.testing.assert_allclose(only_best.score(QUERY), [[1.0, 1.0, 0.0]])


def test_jaccard_and_shrink_match_hand_values():
    ds = dataset_from_rows(TINY)
    jac = UserKNN(similarity="jaccard", shrink=0.0).fit(ds).nearest_users(QUERY).toarray()
    np.testing.assert_allclose(jac, [[1.0, 1 / 3, 2 / 3]], rtol=1e-6)
    shrunk = UserKNN(shrink=1.0).fit(ds).nearest_users(QUERY).toarray()
    np.testing.assert_allclose(shrunk, [[2 / 3, 1 / 3, 2 / (math.sqrt(6) + 1)]], rtol=1e-6)


def test_bm25_uses_training_idf_for_the_query():
    model = UserKNN(weighting="bm25", shrink=0.0).fit(dataset_from_rows(TINY))
    a, c = math.log(1.6), math.log(8 / 7)  # item df = 3, 2, 2 among N = 3 users: idf c, a, a
    np.testing.assert_allclose(model.idf_, [c, a, a])
    sims = model.nearest_users(QUERY).toarray()[0]
    # The query has u0's support, so they are parallel; with u1 they share item 0 only (tf factors cancel).
    np.testing.assert_allclose(sims[:2], [1.0, c * c / (c * c + a * a)], rtol=1e-6)


def test_pearson_correlates_over_all_items():
    # Over 4 items: u0 = (1,0,1,0), query = (1,1,1,0) -> 0.5 / sqrt(0.75); u1 = (0,0,0,1): negative, dropped.
    model = UserKNN(similarity="pearson", shrink=0.0).fit(dataset_from_rows([[0, 2], [3]]))
    sims = model.nearest_users(Histories.from_lists([[0, 1, 2]], 4)).toarray()
    np.testing.assert_allclose(sims, [[0.5 / math.sqrt(0.75), 0.0]], rtol=1e-6)


def test_known_users_are_not_their_own_neighbour():
    ds = dataset_from_rows(TINY)
    model = UserKNN(shrink=0.0).fit(ds)
    known = model.nearest_users(ds.histories(np.array([0]))).toarray()
    anonymous = model.nearest_users(ds.histories(np.array([0])).with_users(None)).toarray()
    assert known[0, 0] == 0 and anonymous[0, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(known[0, 1:], anonymous[0, 1:])


def test_blocking_over_queries_and_users_changes_nothing(monkeypatch):
    rng = np.random.default_rng(3)
    rows = [sorted(rng.choice(25, size=rng.integers(2, 9), replace=False).tolist()) for _ in range(30)]
    rows[0] = list(range(25))
    ds = dataset_from_rows(rows)
    history = ds.histories().with_users(None)
    expected = UserKNN(neighbors=4, shrink=10.0).fit(ds).score(history)
    monkeypatch.setattr(similarity_module, "BLOCK_FLOATS", 50)
    monkeypatch.setattr("recengine.models.userknn.BLOCK_FLOATS", 50)
    np.testing.assert_allclose(UserKNN(neighbors=4, shrink=10.0).fit(ds).score(history), expected, rtol=1e-6)
    x = ds.matrix("binary").toarray()
    norms = np.linalg.norm(x, axis=1)
    sims = x @ x.T / (np.outer(norms, norms) + 10.0)
    top = np.argsort(-sims, axis=1, kind="stable")[:, :4]
    ref = np.zeros_like(sims)
    np.put_along_axis(ref, top, np.take_along_axis(sims, top, axis=1), axis=1)
    # Ties at the 4th neighbour may keep either user; compare on rows without such ties.
    fourth, fifth = np.sort(sims, axis=1)[:, -4], np.sort(sims, axis=1)[:, -5]
    clear = fourth > fifth + 1e-9
    assert clear.sum() > 10
    np.testing.assert_allclose(expected[clear], (ref @ x)[clear], rtol=1e-5)


def test_save_load_round_trip(tmp_path):
    ds = planted()
    model = UserKNN(weighting="bm25", neighbors=5).fit(ds)
    model.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert isinstance(back, UserKNN)
    history = ds.histories()
    for a, b in zip(model.recommend(history, 5), back.recommend(history, 5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_unfitted_model_raises():
    with pytest.raises(NotFittedError):
        UserKNN().score(QUERY)


@pytest.mark.parametrize("params", [
    {"similarity": "adjusted_cosine"}, {"neighbors": 0}, {"shrink": -0.5}, {"weighting": "okapi"},
    {"bm25_k1": -1.0}, {"values": "ratings"},
])
def test_bad_hyper_parameters_raise_config_error_at_fit(params):
    with pytest.raises(ConfigError):
        UserKNN(**params).fit(planted())
