import numpy as np
import pytest
import scipy.sparse as sp

from recengine.errors import ConfigError, DataError
from recengine.evaluation import metrics as M

L3 = 1 / np.log2(3)  # discount at rank 2
L5 = 1 / np.log2(5)  # discount at rank 4


def truth_of(rows: list[list[int]], n_items: int = 8) -> sp.csr_matrix:
    r = np.repeat(np.arange(len(rows)), [len(x) for x in rows])
    c = np.concatenate([np.asarray(x, dtype=int) for x in rows]) if rows else np.empty(0, int)
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), n_items))


# Row 0 ranks 2, 0, 5 (then padding) with relevant {0, 5, 7}: hits at ranks 2 and 3.
# Row 1 ranks 1, 3, 4, 6 with relevant {6}: a hit at rank 4.
# Row 2 has no relevant item: every accuracy metric is NaN for it.
ITEMS = np.array([[2, 0, 5, -1], [1, 3, 4, 6], [0, 1, 2, 3]])
TRUTH = truth_of([[0, 5, 7], [6], []])


@pytest.mark.parametrize("function, k, expected", [
    (M.recall_at_k, 4, [2 / 3, 1.0]),
    (M.recall_at_k, 2, [1 / 2, 0.0]),
    (M.precision_at_k, 4, [2 / 4, 1 / 4]),
    (M.precision_at_k, 2, [1 / 2, 0.0]),
    (M.ndcg_at_k, 4, [(L3 + 0.5) / (1 + L3 + 0.5), L5]),
    (M.ndcg_at_k, 2, [L3 / (1 + L3), 0.0]),
    (M.map_at_k, 4, [(1 / 2 + 2 / 3) / 3, 1 / 4]),
    (M.map_at_k, 2, [(1 / 2) / 2, 0.0]),
    (M.hit_rate_at_k, 4, [1.0, 1.0]),
    (M.hit_rate_at_k, 2, [1.0, 0.0]),
    (M.mrr_at_k, 4, [1 / 2, 1 / 4]),
    (M.mrr_at_k, 1, [0.0, 0.0]),
])
def test_ranking_metrics_by_hand(function, k, expected):
    values = function(ITEMS, TRUTH, k)
    np.testing.assert_allclose(values[:2], expected)
    assert np.isnan(values[2])


def test_hit_matrix_ignores_padding_and_other_rows():
    # Padding -1 in row 1 would alias the last item of row 0 if keys were not masked.
    items = np.array([[0, -1], [-1, -1]])
    truth = truth_of([[0, 3], [3]], n_items=4)
    assert M.hit_matrix(items, truth).tolist() == [[True, False], [False, False]]


def reference(items: np.ndarray, truth: sp.csr_matrix, k: int) -> dict[str, list[float]]:
    """A slow, per-user implementation of the definitions, to check the vectorized one."""
    out: dict[str, list[float]] = {m: [] for m in M.RANKING_METRICS}
    for row, ranked in enumerate(items):
        relevant = set(truth[row].indices)
        top = [i for i in ranked[:k]]
        hits = [i >= 0 and i in relevant for i in top]
        capped = min(k, len(relevant))
        out["recall"].append(sum(hits) / capped)
        out["precision"].append(sum(hits) / k)
        dcg = sum(1 / np.log2(r + 2) for r, h in enumerate(hits) if h)
        out["ndcg"].append(dcg / sum(1 / np.log2(r + 2) for r in range(capped)))
        precisions = [sum(hits[:r + 1]) / (r + 1) for r, h in enumerate(hits) if h]
        out["map"].append(sum(precisions) / capped)
        out["hr"].append(float(any(hits)))
        out["mrr"].append(1 / (hits.index(True) + 1) if any(hits) else 0.0)
    return out


def test_vectorized_metrics_match_a_per_user_reference():
    rng = np.random.default_rng(0)
    n_users, n_items, k = 60, 40, 15
    items = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    items[rng.random((n_users, k)) < 0.1] = -1  # some padding
    truth = sp.random(n_users, n_items, density=0.15, random_state=1, format="lil")
    truth[np.arange(n_users), rng.integers(0, n_items, n_users)] = 1.0  # everyone has a relevant item
    truth = truth.tocsr()
    got = M.ranking_metrics(items, truth, ks=(5, k))
    for cutoff in (5, k):
        expected = reference(items, truth, cutoff)
        for name in M.RANKING_METRICS:
            np.testing.assert_allclose(got[f"{name}@{cutoff}"], expected[name], err_msg=f"{name}@{cutoff}")


def test_ranking_metrics_validate_inputs():
    with pytest.raises(ConfigError, match="k must be in"):
        M.recall_at_k(ITEMS, TRUTH, 5)
    with pytest.raises(ConfigError, match="unknown ranking metric"):
        M.ranking_metrics(ITEMS, TRUTH, metrics=("auc",))
    with pytest.raises(DataError, match="rows"):
        M.recall_at_k(ITEMS, truth_of([[1]]))
    with pytest.raises(DataError, match="integer"):
        M.recall_at_k(ITEMS.astype(float), TRUTH)


def test_coverage_and_gini_by_hand():
    assert M.catalog_coverage(ITEMS[:2], 8) == 7 / 8  # {0, 1, 2, 3, 4, 5, 6}
    # Counts [2, 2, 0, 0]: sorted [0, 0, 2, 2] -> sum((2i - n - 1) x_i) / (n sum x) = (1*2 + 3*2) / (4*4).
    assert M.gini_index(np.array([[0, 1], [0, 1]]), 4) == pytest.approx(0.5)
    assert M.gini_index(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)


def test_novelty_and_average_popularity_by_hand():
    popularity = np.array([4, 2, 1, 0])
    items = np.array([[0, 1], [2, 3], [-1, -1]])
    # -log2(4/4) = 0 and -log2(2/4) = 1; -log2(1/4) = 2 and the unseen item counts as seen once: 2.
    np.testing.assert_allclose(M.novelty(items, popularity, n_users=4)[:2], [0.5, 2.0])
    np.testing.assert_allclose(M.average_popularity(items, popularity)[:2], [3.0, 0.5])
    assert np.isnan(M.novelty(items, popularity, 4)[2])
    assert np.isnan(M.average_popularity(items, popularity)[2])


def test_intra_list_diversity_by_hand():
    features = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    items = np.array([[0, 1, 2], [0, -1, -1], [0, 3, -1], [2, 2, -1]])
    got = M.intra_list_diversity(items, features)
    # Pairs: (0,1) cosine 0; (0,2) and (1,2) cosine 1/sqrt(2).
    assert got[0] == pytest.approx((1 + 2 * (1 - 1 / np.sqrt(2))) / 3)
    assert np.isnan(got[1])                     # a single item has no pairs
    assert got[2] == pytest.approx(1.0)         # a featureless item is unlike everything
    assert got[3] == pytest.approx(0.0)         # identical vectors
    np.testing.assert_allclose(M.intra_list_diversity(items, sp.csr_matrix(features)), got)


def test_rmse_and_mae_by_hand():
    predicted, actual = np.array([3.0, 4.0, 5.0]), np.array([2.0, 4.0, 7.0])
    assert M.rmse(predicted, actual) == pytest.approx(np.sqrt(5 / 3))
    assert M.mae(predicted, actual) == pytest.approx(1.0)
    p = sp.csr_matrix(([3.0, 4.0, 5.0], ([0, 0, 1], [0, 2, 1])), shape=(2, 3))
    a = sp.csr_matrix(([2.0, 4.0, 7.0], ([0, 0, 1], [0, 2, 1])), shape=(2, 3))
    assert M.rmse(p, a) == pytest.approx(np.sqrt(5 / 3))
    with pytest.raises(DataError, match="same stored entries"):
        M.rmse(p, sp.csr_matrix(([2.0], ([0], [1])), shape=(2, 3)))
