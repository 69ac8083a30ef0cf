import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recengine.models._similarity as similarity_module
from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import ConfigError, DataError, NotFittedError
from recengine.models import Recommender
from recengine.models._similarity import TermWeights, apply_weighting, fit_weighting
from recengine.models.itemknn import ItemKNN


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


TINY = [[0, 1], [0, 2], [0, 1, 2]]  # item columns: i0 = (1,1,1), i1 = (1,0,1), i2 = (0,1,1)


def dense(model: ItemKNN) -> np.ndarray:
    return model.item_weights_.toarray()


@pytest.mark.parametrize("params", [
    {}, {"similarity": "jaccard"}, {"similarity": "asymmetric", "asymmetric_alpha": 0.8},
    {"similarity": "pearson"}, {"weighting": "bm25"}, {"weighting": "tfidf"}, {"normalize": True},
    {"neighbors": 3, "shrink": 0.0},
])
def test_planted_clusters_rank_own_cluster_first(params):
    ds = planted()
    model = ItemKNN(**params).fit(ds)
    history = Histories.from_lists([[0, 1]], ds.n_items)
    items, _ = model.recommend(history, 3)
    assert set(items[0].tolist()) == {2, 3, 4}
    scores = model.score(history)[0]
    assert scores[[2, 3, 4]].min() > scores[5:].max()


def test_cosine_jaccard_and_shrink_match_hand_values():
    ds = dataset_from_rows(TINY)
    cos = dense(ItemKNN(shrink=0.0).fit(ds))
    r6 = math.sqrt(6)
    np.testing.assert_allclose(cos, [[0, 2 / r6, 2 / r6], [2 / r6, 0, 0.5], [2 / r6, 0.5, 0]], rtol=1e-6)
    jac = dense(ItemKNN(similarity="jaccard", shrink=0.0).fit(ds))
    np.testing.assert_allclose(jac, [[0, 2 / 3, 2 / 3], [2 / 3, 0, 1 / 3], [2 / 3, 1 / 3, 0]], rtol=1e-6)
    shrunk = dense(ItemKNN(shrink=1.0).fit(ds))
    np.testing.assert_allclose(shrunk[0, 1], 2 / (r6 + 1), rtol=1e-6)
    np.testing.assert_allclose(shrunk[1, 2], 1 / 3, rtol=1e-6)
    # Asymmetric cosine with alpha = 1 divides by the squared norm of the scored item (column) only.
    asym = dense(ItemKNN(similarity="asymmetric", asymmetric_alpha=1.0, shrink=0.0).fit(ds))
    np.testing.assert_allclose([asym[1, 0], asym[0, 1]], [2 / 3, 2 / 2], rtol=1e-6)


def test_bm25_weighting_and_similarity_match_hand_values():
    ds = dataset_from_rows(TINY)
    item_users = ds.matrix("binary").T.tocsr()
    weights = fit_weighting(item_users, "bm25")
    a, c = math.log(1.6), math.log(8 / 7)  # user df = 2, 2, 3 among N = 3 item "documents"
    np.testing.assert_allclose(weights.idf, [a, a, c])
    assert weights.avg_length == pytest.approx(7 / 3)
    w = apply_weighting(item_users, "bm25", weights, k1=1.2, b=0.75).toarray()
    tf0 = 2.2 / (1 + 1.2 * (0.25 + 0.75 * 3 / (7 / 3)))  # item 0 has 3 users
    tf1 = 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / (7 / 3)))
    np.testing.assert_allclose(w[0], [tf0 * a, tf0 * a, tf0 * c])
    np.testing.assert_allclose(w[1], [tf1 * a, 0, tf1 * c])
    s = dense(ItemKNN(weighting="bm25", shrink=0.0).fit(ds))
    # The per-item tf factor cancels in the cosine: only the idf of the shared users matters.
    np.testing.assert_allclose(s[0, 1], math.sqrt(a * a + c * c) / math.sqrt(2 * a * a + c * c), rtol=1e-6)
    np.testing.assert_allclose(s[1, 2], c * c / (a * a + c * c), rtol=1e-6)


def test_tfidf_weighting_is_value_times_smoothed_idf():
    docs = sp.csr_matrix(np.array([[2.0, 0.0], [1.0, 3.0]]))
    weights = fit_weighting(docs, "tfidf")
    np.testing.assert_allclose(weights.idf, [math.log(3 / 3) + 1, math.log(3 / 2) + 1])
    out = apply_weighting(docs, "tfidf", TermWeights(weights.idf, 1.0)).toarray()
    np.testing.assert_allclose(out, [[2.0, 0.0], [1.0, 3 * (math.log(1.5) + 1)]])


def test_pearson_is_the_correlation_over_all_users():
    # i0 = (1,0,1,0), i1 = (1,1,1,0), i2 = (0,0,0,1): corr(i0, i1) = 0.5 / sqrt(0.75); the rest negative.
    ds = dataset_from_rows([[0, 1], [1], [0, 1], [2]])
    s = dense(ItemKNN(similarity="pearson", shrink=0.0).fit(ds))
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[1, 0] = 0.5 / math.sqrt(0.75)
    np.testing.assert_allclose(s, expected, rtol=1e-6)


def test_adjusted_cosine_centres_each_users_weights():
    # Centred: u0 = (+1, 0, -1), u1 = (+1, +1, -2); so i0 = (1, 1), i1 = (0, 1), i2 = (-1, -2).
    ds = dataset_from_rows([[0, 1, 2], [0, 1, 2]], weights=[[5, 4, 3], [4, 4, 1]])
    s = dense(ItemKNN(similarity="adjusted_cosine", shrink=0.0, values="weight").fit(ds))
    expected = np.zeros((3, 3))
    expected[0, 1] = expected[1, 0] = 1 / math.sqrt(2)
    np.testing.assert_allclose(s, expected, rtol=1e-6)
    with pytest.raises(DataError, match="graded weights"):
        ItemKNN(similarity="adjusted_cosine").fit(ds)


def test_neighbors_keep_the_best_per_scored_item_column():
    s = dense(ItemKNN(neighbors=1, shrink=0.0).fit(dataset_from_rows(TINY)))
    assert ((s > 0).sum(axis=0) == 1).all()
    assert s[0, 1] == pytest.approx(2 / math.sqrt(6)) and s[2, 1] == 0  # column 1: i0 (0.82) beats i2 (0.5)
    assert s[0, 2] == pytest.approx(2 / math.sqrt(6)) and s[1, 2] == 0


def test_normalize_makes_each_history_items_row_sum_to_one():
    s = dense(ItemKNN(normalize=True).fit(planted()))
    np.testing.assert_allclose(s.sum(axis=1), 1.0, rtol=1e-6)


def test_blocked_similarity_equals_a_dense_reference(monkeypatch):
    rng = np.random.default_rng(1)
    rows = [sorted(rng.choice(30, size=rng.integers(2, 10), replace=False).tolist()) for _ in range(40)]
    rows[0] = list(range(30))
    weights = [rng.uniform(0.5, 3.0, size=len(r)).round(3).tolist() for r in rows]
    ds = dataset_from_rows(rows, weights)
    monkeypatch.setattr(similarity_module, "BLOCK_FLOATS", 70)  # 2 items per block
    s = dense(ItemKNN(neighbors=5, shrink=2.0, values="weight").fit(ds))
    x = ds.matrix("weight").toarray().astype(np.float64)
    norms = np.linalg.norm(x, axis=0)
    ref = x.T @ x / (np.outer(norms, norms) + 2.0)
    np.fill_diagonal(ref, 0.0)
    for j in range(30):
        keep = np.argsort(-ref[:, j])[:5]
        ref[np.setdiff1d(np.arange(30), keep), j] = 0.0
    np.testing.assert_allclose(s, ref, rtol=1e-5, atol=1e-7)


def test_explain_contributions_sum_to_the_score():
    ds = planted()
    model = ItemKNN(values="weight").fit(ds)
    history = Histories.from_lists([[0, 1, 3, 6]], ds.n_items, weights=[[1.0, 2.0, 0.5, 1.0]])
    score = model.score(history)[0, 2]
    explanation = model.explain(history, 2, top=10)
    assert explanation.item == 2 and score > 0
    assert explanation.score == pytest.approx(score, rel=1e-5)
    assert sum(c for _, c in explanation.contributions) == pytest.approx(score, rel=1e-5)
    s = dense(model)
    by_item = dict(explanation.contributions)
    assert by_item[1] == pytest.approx(2.0 * s[1, 2], rel=1e-6)
    values = [c for _, c in explanation.contributions]
    assert values == sorted(values, reverse=True)
    assert len(model.explain(history, 2, top=1).contributions) == 1
    with pytest.raises(DataError, match="one history"):
        model.explain(Histories.from_lists([[0], [1]], ds.n_items), 2)


def test_similar_items_come_from_the_similarity_columns():
    model = ItemKNN(shrink=0.0).fit(dataset_from_rows(TINY))
    items, scores = model.similar_items(np.array([1, 2]), k=2)
    assert items.tolist() == [[0, 2], [0, 1]]
    np.testing.assert_allclose(scores[0], [2 / math.sqrt(6), 0.5], rtol=1e-6)
    items, scores = ItemKNN().fit(planted()).similar_items(np.array([0]), k=4)
    assert set(items[0].tolist()) == {1, 2, 3, 4}
    with pytest.raises(DataError):
        model.similar_items(np.array([3]))


def test_save_load_round_trip(tmp_path):
    ds = planted()
    model = ItemKNN(similarity="jaccard", neighbors=4).fit(ds)
    model.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert isinstance(back, ItemKNN) and back.get_params() == model.get_params()
    history = ds.histories()
    for a, b in zip(model.recommend(history, 5), back.recommend(history, 5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_unfitted_model_raises():
    model = ItemKNN()
    with pytest.raises(NotFittedError):
        model.score(Histories.from_lists([[0]], 3))
    with pytest.raises(NotFittedError):
        model.similar_items(np.array([0]))


@pytest.mark.parametrize("params", [
    {"similarity": "euclid"}, {"neighbors": 0}, {"shrink": -1.0}, {"weighting": "bm52"},
    {"bm25_b": 1.5}, {"asymmetric_alpha": 2.0}, {"values": "rating"}, {"neighbors": 2.5},
])
def test_bad_hyper_parameters_raise_config_error_at_fit(params):
    model = ItemKNN(**params)  # the constructor only stores them
    with pytest.raises(ConfigError):
        model.fit(planted())


def test_bm25_rejects_negative_weights():
    ds = dataset_from_rows([[0, 1], [0, 2]], weights=[[1.0, -2.0], [1.0, 1.0]])
    with pytest.raises(DataError, match="non-negative"):
        ItemKNN(weighting="bm25", values="weight").fit(ds)
    assert ItemKNN(values="weight").fit(ds).is_fitted  # without weighting, negative weights are allowed
