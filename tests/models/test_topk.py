import numpy as np

from recengine.models.topk import PAD_ITEM, topk


def test_topk_orders_breaks_ties_by_index_and_pads():
    scores = np.array([[1, 3, 2, -np.inf], [0, 0, 0, 0]], dtype=np.float32)
    items, best = topk(scores, 5)
    assert items.tolist() == [[1, 2, 0, PAD_ITEM, PAD_ITEM], [0, 1, 2, 3, PAD_ITEM]]
    assert best[0, :3].tolist() == [3, 2, 1] and np.isneginf(best[0, 3:]).all()


def test_topk_matches_a_full_sort():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(50, 300)).astype(np.float32)
    items, best = topk(scores, 20)
    np.testing.assert_array_equal(items, np.argsort(-scores, axis=1, kind="stable")[:, :20])
    np.testing.assert_allclose(best, -np.sort(-scores, axis=1)[:, :20])
