"""Re-rankers: hand-checked tiny cases, padding, and the subset / no-repeat property."""

import numpy as np
import pytest
import scipy.sparse as sp

from recengine.errors import ConfigError, DataError
from recengine.models.rerank import (
    DPP_JITTER,
    _candidate_kernel,
    _unit_rows,
    calibrate,
    category_cap,
    dpp,
    max_sum,
    mmr,
    novelty_boost,
)

NEG = -np.inf

# Items 0 and 1 are near-duplicates; 2 and 3 point elsewhere.
VECTORS = np.array([[1.0, 0.0, 0.0], [0.99, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
# One-hot categories: items 0, 1, 2 are category 0; item 3 is category 1; item 4 is both.
CATEGORIES = sp.csr_matrix(np.array([[1, 0], [1, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32))


def test_mmr_skips_near_duplicate_at_half_lambda():
    items = np.array([[0, 1, 2, 3]])
    scores = np.array([[1.0, 0.9, 0.5, 0.0]])
    # scaled relevance 1, .9, .5, 0; after item 0: item 1 -> .5*.9 - .5*.995 < 0, item 2 -> .25, item 3 -> 0
    out, out_scores = mmr(items, scores, VECTORS, k=2, lambda_=0.5)
    np.testing.assert_array_equal(out, [[0, 2]])
    np.testing.assert_array_equal(out_scores, [[1.0, 0.5]])  # original relevance scores


def test_mmr_lambda_one_keeps_relevance_order_and_sparse_vectors_agree():
    items = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    out, out_scores = mmr(items, scores, VECTORS, k=3, lambda_=1.0)
    np.testing.assert_array_equal(out, items[:, :3])
    np.testing.assert_array_equal(out_scores, scores[:, :3])
    dense = mmr(items, scores, VECTORS, k=4, lambda_=0.3)
    sparse = mmr(items, scores, sp.csr_matrix(VECTORS), k=4, lambda_=0.3)
    np.testing.assert_array_equal(dense[0], sparse[0])


# Five items on a circle: 1 duplicates 0, 3 is opposite 0, 2 and 4 are at right angles to both.
CIRCLE = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
CIRCLE_SCORES = np.array([[1.0, 0.9, 0.8, 0.6, 0.0]])  # already min-max scaled


def test_max_sum_picks_by_mean_distance_where_mmr_uses_the_closest_item():
    items = np.arange(5)[None, :]
    # Step 1, distances to {0} are 0, 1, 2, 1: .5 * relevance + .5 * distance is .45, .9, 1.3, .5 -> item 3.
    # Step 2, mean distances to {0, 3} are all 1 (item 1 is at 0 from item 0 but 2 from item 3): .95, .9, .5 -> 1.
    out, out_scores = max_sum(items, CIRCLE_SCORES, CIRCLE, k=3, lambda_=0.5, order="greedy")
    np.testing.assert_array_equal(out, [[0, 3, 1]])
    np.testing.assert_array_equal(out_scores, [[1.0, 0.6, 0.9]])
    out, out_scores = max_sum(items, CIRCLE_SCORES, CIRCLE, k=3, lambda_=0.5)  # the same set, by relevance
    np.testing.assert_array_equal(out, [[0, 1, 3]])
    np.testing.assert_array_equal(out_scores, [[1.0, 0.9, 0.6]])
    # MMR at step 2 penalizes item 1's similarity 1 to item 0: .45 - .5, against item 2's .4 - 0 -> item 2.
    out, _ = mmr(items, CIRCLE_SCORES, CIRCLE, k=3, lambda_=0.5, order="greedy")
    np.testing.assert_array_equal(out, [[0, 3, 2]])
    out, _ = mmr(items, CIRCLE_SCORES, CIRCLE, k=3, lambda_=0.5)
    np.testing.assert_array_equal(out, [[0, 2, 3]])


def test_max_sum_lambda_extremes_and_sparse_vectors_agree():
    items = np.array([[3, 0, 4, 1, 2]])  # the input order is not the relevance order
    scores = np.array([[0.6, 1.0, 0.0, 0.9, 0.8]])
    for order in ("relevance", "greedy"):
        out, out_scores = max_sum(items, scores, CIRCLE, k=5, lambda_=0.0, order=order)
        np.testing.assert_array_equal(out, [[0, 1, 2, 3, 4]])
        np.testing.assert_array_equal(out_scores, [[1.0, 0.9, 0.8, 0.6, 0.0]])
    # lambda_ = 1: the most relevant first, then distance alone: 3 (at 2 from item 0), then a three-way tie at
    # mean distance 1 (items 4, 1 and 2) that goes to 4, the first of them in the input.
    out, _ = max_sum(items, scores, CIRCLE, k=3, lambda_=1.0, order="greedy")
    np.testing.assert_array_equal(out, [[0, 3, 4]])
    dense = max_sum(items, scores, CIRCLE, k=4, lambda_=0.4)
    sparse = max_sum(items, scores, sp.csr_matrix(CIRCLE), k=4, lambda_=0.4)
    np.testing.assert_array_equal(dense[0], sparse[0])


def test_relevance_order_sorts_the_greedy_set_by_score_with_stable_ties():
    items = np.array([[0, 2, 3, 1, -1]])
    scores = np.array([[1.0, 0.5, 0.5, 0.9, NEG]])
    # All four valid candidates are picked, in a diversity-driven order that differs from the scores'.
    for rerank, picked in ((mmr, [0, 3, 2, 1]), (dpp, [0, 2, 1, 3])):
        greedy, _ = rerank(items, scores, CIRCLE, k=5, order="greedy")
        np.testing.assert_array_equal(greedy, [[*picked, -1]])
        ranked, ranked_scores = rerank(items, scores, CIRCLE, k=5)
        # By score; the tie between items 2 and 3 (0.5 each) goes to 2, first in the input; padding stays last.
        np.testing.assert_array_equal(ranked, [[0, 1, 2, 3, -1]])
        np.testing.assert_array_equal(ranked_scores, [[1.0, 0.9, 0.5, 0.5, NEG]])


def test_mmr_pads_short_lists():
    items = np.array([[2, 0, -1, -1], [-1, -1, -1, -1]])
    scores = np.array([[2.0, 1.0, NEG, NEG], [NEG, NEG, NEG, NEG]])
    out, out_scores = mmr(items, scores, VECTORS, k=3, lambda_=0.5)
    np.testing.assert_array_equal(out, [[2, 0, -1], [-1, -1, -1]])
    assert out_scores[0, 1] == 1.0 and np.isneginf(out_scores[0, 2]) and np.isneginf(out_scores[1]).all()


def test_dpp_skips_near_duplicate_at_half_theta():
    items = np.array([[0, 1, 2, 3]])
    scores = np.array([[1.0, 0.9, 0.5, 0.0]])
    # After item 0, item 1's conditional variance is ~0.012 (log ~ -4.4): .5*.9 + .5*(-4.4) loses to item 2's
    # .5*.5 + .5*log(1.001), so the near-duplicate waits.
    out, out_scores = dpp(items, scores, VECTORS, k=3, theta=0.5)
    np.testing.assert_array_equal(out, [[0, 2, 3]])
    np.testing.assert_array_equal(out_scores, [[1.0, 0.5, 0.0]])


def _log_det_objective(vectors, relevance, chosen, theta):
    """theta * sum relevance + (1 - theta) * log det S_Y from an explicitly built kernel."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    kernel = unit[chosen] @ unit[chosen].T + DPP_JITTER * np.eye(len(chosen))
    sign, log_det = np.linalg.slogdet(kernel)
    assert sign > 0
    return theta * relevance[chosen].sum() + (1.0 - theta) * log_det


@pytest.mark.parametrize("theta", [0.0, 0.3, 0.7])
def test_dpp_greedy_matches_brute_force_log_det(theta):
    rng = np.random.default_rng(1)
    n, k = 7, 4
    vectors = rng.normal(size=(n, 3))  # 3 dimensions, 4 picks: the jitter must carry the last step
    scores = np.sort(rng.random(n))[::-1]
    relevance = (scores - scores.min()) / (scores.max() - scores.min())
    out, _ = dpp(np.arange(n)[None, :], scores[None, :], vectors, k=k, theta=theta, order="greedy")
    picked = list(out[0])
    assert len(set(picked)) == k
    for step in range(k):  # each greedy pick maximizes the explicitly computed objective of the extended list
        before = picked[:step]
        values = {i: _log_det_objective(vectors, relevance, [*before, i], theta) for i in range(n) if i not in before}
        assert values[picked[step]] == pytest.approx(max(values.values()), abs=1e-9)
        if theta > 0:  # no ties (at theta = 0 every first pick has the same volume): the argmax itself agrees
            assert picked[step] == max(values, key=values.get)


def test_dpp_theta_one_keeps_relevance_order_and_sparse_vectors_agree():
    items = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    out, out_scores = dpp(items, scores, VECTORS, k=4, theta=1.0)
    np.testing.assert_array_equal(out, items)
    np.testing.assert_array_equal(out_scores, scores)
    # Just below 1 (a = theta / (2 (1 - theta)) large) the near-duplicates 0 and 1 still keep relevance order.
    out, _ = dpp(items, scores, VECTORS, k=4, theta=0.99)
    np.testing.assert_array_equal(out, items)
    dense = dpp(items, scores, VECTORS, k=4, theta=0.3)
    sparse = dpp(items, scores, sp.csr_matrix(VECTORS), k=4, theta=0.3)
    np.testing.assert_array_equal(dense[0], sparse[0])


def test_dpp_kernel_is_positive_definite_with_duplicates_and_featureless_items():
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(6, 2))
    vectors[3] = vectors[1]  # a duplicate
    vectors[5] = 0.0  # featureless: similar to nothing but itself
    kernel = _candidate_kernel(_unit_rows(vectors), np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]]))
    np.testing.assert_allclose(kernel, np.transpose(kernel, (0, 2, 1)))
    assert np.linalg.eigvalsh(kernel).min() >= DPP_JITTER - 1e-12
    np.testing.assert_allclose(kernel[0, 5], [0, 0, 0, 0, 0, 1 + DPP_JITTER])
    # The DPP's L = diag(q) S diag(q) with q = exp(a r) stays positive definite.
    q = np.exp(2.0 * rng.random(6))
    assert np.linalg.eigvalsh(q[:, None] * kernel[0] * q[None, :]).min() > 0


def test_dpp_pads_short_lists():
    items = np.array([[2, 0, -1, -1], [-1, -1, -1, -1]])
    scores = np.array([[2.0, 1.0, NEG, NEG], [NEG, NEG, NEG, NEG]])
    out, out_scores = dpp(items, scores, VECTORS, k=3, theta=0.0)
    np.testing.assert_array_equal(out, [[2, 0, -1], [-1, -1, -1]])
    assert out_scores[0, 1] == 1.0 and np.isneginf(out_scores[0, 2]) and np.isneginf(out_scores[1]).all()


def test_category_cap_respects_limit_and_fills_when_it_cannot():
    items = np.array([[0, 1, 4, 2, 3]])
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    out, out_scores = category_cap(items, scores, CATEGORIES, k=3, max_per_category=1)
    # 0 takes category 0; 1, 4 and 2 all need category 0; 3 is category 1; under a cap of 2, 1 fits first
    np.testing.assert_array_equal(out, [[0, 3, 1]])
    np.testing.assert_array_equal(out_scores, [[5.0, 1.0, 4.0]])
    out, _ = category_cap(items, scores, CATEGORIES, k=4, max_per_category=2)
    # 0, 1 fill category 0; 4 is also category 0 -> skipped; 2 skipped; 3 fits; under a cap of 3, 4 fits first
    np.testing.assert_array_equal(out, [[0, 1, 3, 4]])
    counts = CATEGORIES[out[0, :3]].sum(axis=0)
    assert counts.max() <= 2


# Three genres: items 0-3 are genre A, 4-5 genre B, 6 genre C.
GENRES_ABC = sp.csr_matrix(np.eye(3, dtype=np.float32)[[0, 0, 0, 0, 1, 1, 2]])


def test_category_cap_relaxes_the_cap_one_step_at_a_time():
    # Relevance favours genre A: a1 a2 a3 b1 b2.
    items = np.array([[0, 1, 2, 4, 5]])
    scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
    out, out_scores = category_cap(items, scores, GENRES_ABC, k=4, max_per_category=1)
    # Cap 1 takes a1, b1. Filling with the best skipped would add a2, a3 (3 x A + 1 x B); the pass under a
    # cap of 2 adds a2, skips a3 (A is full again) and adds b2: 2 x A + 2 x B, each pass in relevance order.
    np.testing.assert_array_equal(out, [[0, 4, 1, 5]])
    np.testing.assert_array_equal(out_scores, [[5.0, 2.0, 4.0, 1.0]])
    np.testing.assert_array_equal(GENRES_ABC[out[0]].sum(axis=0), [[2, 2, 0]])


def test_category_cap_relaxes_over_several_passes_and_stops_when_full():
    items = np.array([[0, 1, 2, 3, 4, 5, 6], [6, 0, 1, 2, 3, -1, -1]])
    scores = np.array([[7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], [5.0, 4.0, 3.0, 2.0, 1.0, NEG, NEG]])
    out, _ = category_cap(items, scores, GENRES_ABC, k=6, max_per_category=1)
    # Row 0: cap 1 takes a1 b1 c1, cap 2 a2 b2, cap 3 a3; the list is full before a4 (the old fallback gave 4 x A).
    # Row 1: c1 a1 under cap 1, then one A per pass (caps 2, 3, 4) until the five candidates are used up.
    np.testing.assert_array_equal(out, [[0, 4, 6, 1, 5, 2], [6, 0, 1, 2, 3, -1]])
    np.testing.assert_array_equal(GENRES_ABC[out[0]].sum(axis=0), [[3, 2, 1]])


def test_category_cap_large_cap_is_identity_and_padding():
    items = np.array([[0, 1, 2, -1], [3, -1, -1, -1]])
    scores = np.array([[3.0, 2.0, 1.0, NEG], [1.0, NEG, NEG, NEG]])
    out, out_scores = category_cap(items, scores, CATEGORIES, k=3, max_per_category=10)
    np.testing.assert_array_equal(out, [[0, 1, 2], [3, -1, -1]])
    assert np.isneginf(out_scores[1, 1:]).all()


def test_calibrate_lambda_zero_is_input_order():
    items = np.array([[0, 3, 1, 4]])
    scores = np.array([[4.0, 3.0, 2.0, 1.0]])
    out, _ = calibrate(items, scores, CATEGORIES, np.array([[0.0, 1.0]]), k=4, lambda_=0.0)
    np.testing.assert_array_equal(out, items)


def test_calibrate_matches_target_distribution():
    # History half category 0, half category 1; relevance prefers three category-0 items.
    items = np.array([[0, 1, 2, 3]])
    scores = np.array([[4.0, 3.0, 2.0, 1.0]])
    history = np.array([[5.0, 5.0]])  # not normalized: rescaled to (.5, .5)
    out, _ = calibrate(items, scores, CATEGORIES, history, k=2, lambda_=0.9)
    # Step 2 after item 0: adding 1 gives q~=(.995,.005) (KL ~ 2.3), adding 3 gives q~=(.5,.5) (KL 0)
    np.testing.assert_array_equal(out, [[0, 3]])
    # A user with no history has no target: relevance alone decides.
    out, _ = calibrate(items, scores, CATEGORIES, np.zeros((1, 2)), k=2, lambda_=0.9)
    np.testing.assert_array_equal(out, [[0, 1]])


def test_novelty_boost_prefers_rare_items_and_zero_weight_is_identity():
    items = np.array([[0, 1, 2]])
    scores = np.array([[3.0, 2.0, 1.0]])
    popularity = np.array([100.0, 50.0, 1.0])
    out, out_scores = novelty_boost(items, scores, popularity, k=3, weight=0.0)
    np.testing.assert_array_equal(out, items)
    out, out_scores = novelty_boost(items, scores, popularity, k=2, weight=2.0)
    # scaled relevance 1, .5, 0; novelty 0, ~.15, 1 -> totals 1, ~.80, 2
    np.testing.assert_array_equal(out, [[2, 0]])
    np.testing.assert_array_equal(out_scores, [[1.0, 3.0]])


def test_repeated_candidates_count_once():
    items = np.array([[0, 0, 2]])
    scores = np.array([[3.0, 3.0, 1.0]])
    out, _ = novelty_boost(items, scores, np.ones(4), k=3, weight=0.0)
    np.testing.assert_array_equal(out, [[0, 2, -1]])


@pytest.mark.parametrize("method", ["mmr", "max_sum", "dpp", "cap", "calibrate", "novelty"])
def test_output_is_a_subset_without_repeats(method):
    rng = np.random.default_rng(0)
    n_users, n_candidates, n_items, k = 30, 12, 40, 8
    items = np.stack([rng.choice(n_items, n_candidates, replace=False) for _ in range(n_users)])
    scores = -np.sort(-rng.random((n_users, n_candidates)), axis=1)
    cut = rng.integers(0, n_candidates + 1, n_users)  # random padding, some rows empty
    pad = np.arange(n_candidates)[None, :] >= cut[:, None]
    items[pad], scores[pad] = -1, NEG
    categories = sp.csr_matrix((rng.random((n_items, 5)) < 0.3).astype(np.float32))
    run = {
        "mmr": lambda: mmr(items, scores, rng.random((n_items, 4)), k, 0.4),
        "max_sum": lambda: max_sum(items, scores, rng.random((n_items, 4)), k, 0.6, order="greedy"),
        "dpp": lambda: dpp(items, scores, rng.random((n_items, 4)), k, 0.4),
        "cap": lambda: category_cap(items, scores, categories, k, 1),
        "calibrate": lambda: calibrate(items, scores, categories, rng.random((n_users, 5)), k, 0.5),
        "novelty": lambda: novelty_boost(items, scores, rng.integers(0, 50, n_items), k, 0.7),
    }[method]
    out, out_scores = run()
    assert out.shape == out_scores.shape == (n_users, k)
    for u in range(n_users):
        chosen = out[u][out[u] >= 0]
        expected = min(k, cut[u])
        assert len(chosen) == expected and len(set(chosen)) == expected
        assert (out[u, expected:] == -1).all() and np.isneginf(out_scores[u, expected:]).all()
        lookup = dict(zip(items[u], scores[u], strict=True))
        assert all(lookup[i] == s for i, s in zip(chosen, out_scores[u, :expected], strict=True))


def test_bad_inputs_raise():
    items, scores = np.array([[0, 1]]), np.array([[1.0, 0.5]])
    with pytest.raises(ConfigError):
        mmr(items, scores, VECTORS, k=2, lambda_=1.5)
    with pytest.raises(ConfigError):
        dpp(items, scores, VECTORS, k=2, theta=-0.1)
    with pytest.raises(ConfigError):
        max_sum(items, scores, VECTORS, k=2, lambda_=-0.5)
    with pytest.raises(ConfigError, match="order"):
        mmr(items, scores, VECTORS, k=2, order="random")
    with pytest.raises(ConfigError):
        category_cap(items, scores, CATEGORIES, k=0)
    with pytest.raises(DataError):
        novelty_boost(np.array([[0, 9]]), scores, np.ones(4), k=2)
    with pytest.raises(DataError):
        calibrate(items, scores, CATEGORIES, np.ones((2, 2)), k=2)
