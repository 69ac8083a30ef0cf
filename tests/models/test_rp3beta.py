import math

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import ConfigError, DataError, NotFittedError
from recengine.models import Recommender
from recengine.models.rp3beta import RP3beta


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


# Users u0 = {0, 1}, u1 = {0, 2}, u2 = {0, 1, 2}; item popularity (3, 2, 2).
# P3 (alpha = 1, beta = 0): W[0, 1] = W[0, 2] = 1/3 * 1/2 + 1/3 * 1/3 = 5/18; W[1, 0] = W[2, 0] = 1/2 * 1/2 +
# 1/2 * 1/3 = 5/12; W[1, 2] = W[2, 1] = 1/2 * 1/3 = 1/6.
TINY = [[0, 1], [0, 2], [0, 1, 2]]
P3 = np.array([[0, 5 / 18, 5 / 18], [5 / 12, 0, 1 / 6], [5 / 12, 1 / 6, 0]])


def test_random_walk_weights_match_hand_values():
    ds = dataset_from_rows(TINY)
    w = RP3beta(alpha=1.0, beta=0.0, normalize=False).fit(ds).item_weights_.toarray()
    np.testing.assert_allclose(w, P3, rtol=1e-6)
    discounted = RP3beta(alpha=1.0, beta=0.5, normalize=False).fit(ds).item_weights_.toarray()
    np.testing.assert_allclose(discounted, P3 / np.sqrt([3, 2, 2])[None, :], rtol=1e-6)
    # alpha = 2 squares every transition probability: W[1, 0] = 1/4 * 1/4 + 1/4 * 1/9.
    squared = RP3beta(alpha=2.0, beta=0.0, normalize=False).fit(ds).item_weights_.toarray()
    assert squared[1, 0] == pytest.approx(1 / 16 + 1 / 36, rel=1e-6)
    normalized = RP3beta(alpha=1.0, beta=0.0, normalize=True).fit(ds).item_weights_.toarray()
    np.testing.assert_allclose(normalized[1], [5 / 7, 0, 2 / 7], rtol=1e-6)


def test_neighbors_keep_the_best_per_row():
    model = RP3beta(alpha=1.0, beta=0.0, neighbors=1, normalize=False).fit(dataset_from_rows(TINY))
    w = model.item_weights_.toarray()
    assert ((w > 0).sum(axis=1) == 1).all()
    np.testing.assert_allclose(w[1:, 0], [5 / 12, 5 / 12], rtol=1e-6)


@pytest.mark.parametrize("params", [{}, {"alpha": 0.5, "beta": 0.8}, {"normalize": False}, {"neighbors": 3}])
def test_planted_clusters_rank_own_cluster_first(params):
    ds = planted()
    model = RP3beta(**params).fit(ds)
    history = Histories.from_lists([[0, 1]], ds.n_items)
    items, _ = model.recommend(history, 3)
    assert set(items[0].tolist()) == {2, 3, 4}
    scores = model.score(history)[0]
    assert scores[[2, 3, 4]].min() > scores[5:].max()


def test_blocking_changes_nothing(monkeypatch):
    rng = np.random.default_rng(5)
    ds = dataset_from_rows([sorted(rng.choice(20, size=rng.integers(2, 8), replace=False).tolist())
                            for _ in range(30)] + [list(range(20))])
    expected = RP3beta(neighbors=6).fit(ds).item_weights_.toarray()
    monkeypatch.setattr("recengine.models.rp3beta.BLOCK_FLOATS", 45)  # 2 items per block
    np.testing.assert_allclose(RP3beta(neighbors=6).fit(ds).item_weights_.toarray(), expected)


def test_explain_contributions_sum_to_the_score():
    ds = planted()
    model = RP3beta().fit(ds)
    history = Histories.from_lists([[0, 1, 3, 7]], ds.n_items)
    score = model.score(history)[0, 4]
    explanation = model.explain(history, 4, top=10)
    assert score > 0 and explanation.score == pytest.approx(score, rel=1e-5)
    assert sum(c for _, c in explanation.contributions) == pytest.approx(score, rel=1e-5)
    assert {i for i, _ in explanation.contributions} <= {0, 1, 3}  # item 7 (cluster B) adds nothing to 4


def test_similar_items_come_from_the_rows():
    model = RP3beta(alpha=1.0, beta=0.0, normalize=False).fit(dataset_from_rows(TINY))
    items, scores = model.similar_items(np.array([1]), k=3)
    assert items.tolist() == [[0, 2, -1]]
    np.testing.assert_allclose(scores[0, :2], [5 / 12, 1 / 6], rtol=1e-6)
    assert math.isinf(scores[0, 2])
    with pytest.raises(DataError):
        model.similar_items(np.array([-1]))


def test_save_load_round_trip(tmp_path):
    ds = planted()
    model = RP3beta(alpha=0.7).fit(ds)
    model.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert isinstance(back, RP3beta) and back.alpha == 0.7
    history = ds.histories()
    for a, b in zip(model.recommend(history, 5), back.recommend(history, 5), strict=True):
        np.testing.assert_array_equal(a, b)


def test_unfitted_model_raises():
    with pytest.raises(NotFittedError):
        RP3beta().recommend(Histories.from_lists([[0]], 3))
    with pytest.raises(NotFittedError):
        RP3beta().explain(Histories.from_lists([[0]], 3), 1)


@pytest.mark.parametrize("params", [{"alpha": 0.0}, {"beta": -0.1}, {"beta": 1.5}, {"neighbors": 0},
                                    {"normalize": "yes"}, {"values": "binary "}])
def test_bad_hyper_parameters_raise_config_error_at_fit(params):
    with pytest.raises(ConfigError):
        RP3beta(**params).fit(planted())


def test_negative_weights_are_rejected():
    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"], "timestamp": [1, 2, 3],
                          "weight": [1.0, -1.0, 2.0]})
    with pytest.raises(DataError, match="non-negative"):
        RP3beta(values="weight").fit(Dataset.from_events(frame))
