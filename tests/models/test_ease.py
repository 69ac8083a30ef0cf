import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import ConfigError, NotFittedError
from recengine.models import Recommender
from recengine.models.ease import EASE, gram, inverse_spd


def dataset_from_rows(rows: list[list[int]]) -> Dataset:
    """User u interacted with rows[u] (item "k" has internal index k)."""
    n_items = max(max(r) for r in rows if r) + 1
    events = [(f"u{u}", f"{i}", t) for u, items in enumerate(rows) for t, i in enumerate(items)]
    return Dataset.from_events(pd.DataFrame(events, columns=["user", "item", "timestamp"]),
                               items=Vocabulary(range(n_items)))


def planted() -> Dataset:
    """Items 0-4 form cluster A (6 users), items 5-9 cluster B (12 users, so B is more popular)."""
    rows = [[0, 1, 2], [1, 2, 3], [2, 3, 4], [0, 3, 4], [0, 1, 4], [1, 3, 4]]
    rows += [[5 + (u + k) % 5 for k in range(3)] for u in range(12)]
    return dataset_from_rows(rows)


def random_rows(seed: int, n_users: int = 60, n_items: int = 25) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    rows = [sorted(rng.choice(n_items, size=rng.integers(2, 10), replace=False).tolist())
            for _ in range(n_users)]
    return rows + [list(range(n_items))]


def reference_b(ds: Dataset, l2: float) -> np.ndarray:
    x = ds.matrix("binary").toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + l2 * np.eye(ds.n_items))
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


def test_weights_match_a_direct_inverse():
    ds = dataset_from_rows(random_rows(0))
    expected = reference_b(ds, 7.0)
    b64 = EASE(l2=7.0, dtype="float64").fit(ds).item_weights_
    np.testing.assert_allclose(b64, expected, rtol=1e-5, atol=1e-7)
    b32 = EASE(l2=7.0, dtype="float32").fit(ds).item_weights_
    assert b32.dtype == np.float32
    np.testing.assert_allclose(b32, expected, rtol=1e-3, atol=1e-5)
    assert np.all(np.diag(b32) == 0)


def test_inverse_spd_is_symmetric_and_exact_across_tiles():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(150, 40))  # 150 items: tiles of 64 with a ragged last one
    g = a @ a.T + 3.0 * np.eye(150)
    expected = np.linalg.inv(g)
    got = inverse_spd(np.ascontiguousarray(g.copy()))
    np.testing.assert_allclose(got, expected, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(got, got.T)
    with pytest.raises(ConfigError, match="increase l2"):
        inverse_spd(np.ascontiguousarray(-np.eye(3)))


def test_gram_matches_the_dense_product():
    x = sp.random(40, 30, density=0.2, random_state=1, format="csr", dtype=np.float64)
    np.testing.assert_allclose(gram(x, np.float64), (x.T @ x).toarray())


@pytest.mark.parametrize("params", [{}, {"l2": 20.0, "dtype": "float64"}, {"prune_threshold": 1e-3}])
def test_planted_clusters_rank_own_cluster_first(params):
    ds = planted()
    model = EASE(**params).fit(ds)
    history = Histories.from_lists([[0, 1]], ds.n_items)
    items, _ = model.recommend(history, 3)
    assert set(items[0].tolist()) == {2, 3, 4}
    scores = model.score(history)[0]
    assert scores[[2, 3, 4]].min() > scores[5:].max()


def test_scores_are_history_times_b():
    ds = dataset_from_rows(random_rows(4))
    history = Histories.from_lists([[1, 3, 4], [0]], ds.n_items)
    for half_life in (0.0, 5.0):  # 0: every history item counts 1; 5: the older ones count less
        model = EASE(l2=5.0, dtype="float64", history_half_life=half_life).fit(ds)
        expected = history.matrix("binary", half_life=half_life).toarray() @ reference_b(ds, 5.0)
        np.testing.assert_allclose(model.score(history), expected, rtol=1e-4, atol=1e-6)


def test_explain_contributions_sum_to_the_score():
    ds = dataset_from_rows(random_rows(7))
    model = EASE(l2=3.0).fit(ds)
    history = Histories.from_lists([[2, 5, 9, 11, 17]], ds.n_items)
    score = model.score(history)[0, 4]
    explanation = model.explain(history, 4, top=10)
    assert explanation.score == pytest.approx(score, rel=1e-4, abs=1e-6)
    assert sum(c for _, c in explanation.contributions) == pytest.approx(score, rel=1e-4, abs=1e-6)
    # Item 9 has two interactions after it: with the default half-life of 5 it weighs 2^(-2/5).
    weight = 2 ** (-2 / model.history_half_life)
    assert dict(explanation.contributions)[9] == pytest.approx(weight * float(model.item_weights_[9, 4]), rel=1e-5)
    assert any(c < 0 for _, c in explanation.contributions)  # EASE weights may be negative


def test_prune_threshold_keeps_only_large_weights_sparse():
    ds = dataset_from_rows(random_rows(0))
    full = EASE(l2=7.0).fit(ds).item_weights_
    pruned = EASE(l2=7.0, prune_threshold=0.02).fit(ds).item_weights_
    assert sp.issparse(pruned)
    kept = np.abs(full) >= 0.02
    assert 0 < pruned.nnz == kept.sum() < full.size
    np.testing.assert_array_equal(pruned.toarray(), np.where(kept, full, 0.0))


def test_similar_items_come_from_b_columns():
    model = EASE(l2=7.0).fit(dataset_from_rows(random_rows(0)))
    items, scores = model.similar_items(np.array([3]), k=4)
    column = model.item_weights_[:, 3].copy()
    column[3] = -np.inf
    assert items[0].tolist() == np.argsort(-column, kind="stable")[:4].tolist()
    np.testing.assert_allclose(scores[0], np.sort(column)[::-1][:4])


@pytest.mark.parametrize("params", [{}, {"prune_threshold": 0.01}])
def test_save_load_round_trip(tmp_path, params):
    ds = planted()
    model = EASE(l2=2.0, **params).fit(ds)
    model.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert isinstance(back, EASE) and back.l2 == 2.0
    history = ds.histories()
    for a, b in zip(model.recommend(history, 5), back.recommend(history, 5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_unfitted_model_raises():
    with pytest.raises(NotFittedError):
        EASE().score(Histories.from_lists([[0]], 3))


@pytest.mark.parametrize("params", [{"l2": 0.0}, {"l2": -5.0}, {"dtype": "float16"},
                                    {"prune_threshold": -1.0}, {"values": "rating"}, {"l2": "300"}])
def test_bad_hyper_parameters_raise_config_error_at_fit(params):
    with pytest.raises(ConfigError):
        EASE(**params).fit(planted())
