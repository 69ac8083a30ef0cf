"""ItemIndex: exact search equals the shared top-K, HNSW reaches recall@20 >= 0.95, exclusion, persistence, errors."""

import importlib.util
import sys

import numpy as np
import pytest

from recengine.errors import ArtifactError, ConfigError, DataError, NotSupportedError
from recengine.models.topk import topk
from recengine.serving.ann import ItemIndex

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss-cpu not installed")


def clustered(rng: np.random.Generator, n: int, dim: int, centers: np.ndarray) -> np.ndarray:
    """Vectors around random cluster centres, with a lognormal norm spread like popular and niche items."""
    v = centers[rng.integers(0, len(centers), n)] + 0.7 * rng.standard_normal((n, dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return (v * rng.lognormal(0.0, 0.5, n)[:, None]).astype(np.float32)


@pytest.fixture(scope="module")
def catalog() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((200, 32))
    return clustered(rng, 20_000, 32, centers), clustered(rng, 200, 32, centers)


@pytest.fixture(scope="module")
def hnsw(catalog) -> ItemIndex:
    return ItemIndex.build(catalog[0], exact_below=10_000)


def test_exact_mode_equals_the_shared_topk():
    rng = np.random.default_rng(1)
    vectors, queries = rng.standard_normal((500, 16)), rng.standard_normal((7, 16))
    index = ItemIndex.build(vectors)
    assert index.mode == "exact"
    items, scores = index.search(queries, 10)
    want_items, want_scores = topk(queries.astype(np.float32) @ vectors.astype(np.float32).T, 10)
    np.testing.assert_array_equal(items, want_items)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-6)
    assert items.dtype == np.int32 and scores.dtype == np.float32


@needs_faiss
def test_hnsw_recall_at_20_against_exact(catalog, hnsw):
    vectors, queries = catalog
    assert hnsw.mode == "hnsw"
    exact, _ = ItemIndex.build(vectors, exact_below=len(vectors) + 1).search(queries, 20)
    approx, scores = hnsw.search(queries, 20)
    recall = np.mean([len(np.intersect1d(a, e)) / 20 for a, e in zip(approx, exact, strict=True)])
    assert recall >= 0.95, recall
    # Scores are the exact inner products of the returned items, best first.
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, vectors[approx]), rtol=1e-4, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


@needs_faiss
@pytest.mark.parametrize("mode", ["exact", "hnsw"])
def test_excluded_items_are_never_returned(catalog, hnsw, mode):
    vectors, queries = catalog
    index = hnsw if mode == "hnsw" else ItemIndex.build(vectors)
    top, _ = index.search(queries[:20], 30)
    # Each query excludes its own best 25 items and some random ones (and an index outside the catalog).
    rng = np.random.default_rng(2)
    exclude = [np.concatenate([row[:25], rng.integers(0, len(vectors), 40), [len(vectors) + 3]]) for row in top]
    items, scores = index.search(queries[:20], 20, exclude=exclude)
    for row, banned in zip(items, exclude, strict=True):
        assert not np.isin(row, banned).any()
        assert (row >= 0).all()  # over-fetching left 20 eligible items
    np.testing.assert_array_equal(items[:, :5], top[:, 25:30])  # what follows the excluded best


@needs_faiss
@pytest.mark.parametrize("exact_below", [1_000, 0])
def test_too_few_eligible_items_are_padded(exact_below):
    vectors = np.random.default_rng(3).standard_normal((30, 8)).astype(np.float32)
    index = ItemIndex.build(vectors, exact_below=exact_below)
    query = vectors[:1] * 2
    exclude = [np.arange(25)]
    items, scores = index.search(query, 10, exclude=exclude)
    want, _ = topk(query @ vectors[25:].T, 5)
    np.testing.assert_array_equal(items[0, :5], want[0] + 25)
    np.testing.assert_array_equal(items[0, 5:], -1)
    assert np.isneginf(scores[0, 5:]).all() and np.isfinite(scores[0, :5]).all()


def test_negative_and_too_large_exclusions_are_ignored():
    vectors = np.eye(4, dtype=np.float32)
    index = ItemIndex.build(vectors)
    items, _ = index.search(vectors[3:4], 1, exclude=[np.array([-1, 4, 99])])
    assert items[0, 0] == 3  # -1 did not mask the last item


@needs_faiss
@pytest.mark.parametrize("exact_below", [1_000_000, 0])
def test_save_and_load_give_the_same_results(tmp_path, catalog, exact_below):
    vectors, queries = catalog
    index = ItemIndex.build(vectors[:3_000], exact_below=exact_below)
    index.save(tmp_path / "index")
    loaded = ItemIndex.load(tmp_path / "index")
    assert (loaded.mode, loaded.n_items, loaded.dim) == (index.mode, 3_000, 32)
    for a, b in zip(index.search(queries, 20), loaded.search(queries, 20), strict=True):
        np.testing.assert_array_equal(a, b)


@needs_faiss
def test_deterministic_build_gives_identical_results(catalog):
    vectors, queries = catalog
    a = ItemIndex.build(vectors[:3_000], exact_below=0, deterministic=True).search(queries, 20)
    b = ItemIndex.build(vectors[:3_000], exact_below=0, deterministic=True).search(queries, 20)
    np.testing.assert_array_equal(a[0], b[0])


def test_load_rejects_a_directory_without_an_index(tmp_path):
    with pytest.raises(ArtifactError, match="not a saved item index"):
        ItemIndex.load(tmp_path)


def test_exact_search_works_without_faiss(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # makes `import faiss` raise ImportError
    vectors = np.random.default_rng(4).standard_normal((100, 8))
    assert ItemIndex.build(vectors).search(vectors[:2], 3)[0].shape == (2, 3)
    with pytest.raises(NotSupportedError, match=r"recengine\[serve\]"):
        ItemIndex.build(vectors, exact_below=50)


@pytest.mark.parametrize("call, error, message", [
    (lambda i: i.search(np.ones((2, 5)), 3), DataError, r"\(n_queries, 4\).*got shape \(2, 5\)"),
    (lambda i: i.search(np.ones(4), 3), DataError, r"2-D"),
    (lambda i: i.search(np.ones((1, 4)), 0), ConfigError, "k must be >= 1"),
    (lambda i: i.search(np.ones((1, 4)), 2.5), ConfigError, "k must be int"),
    (lambda i: i.search(np.full((1, 4), np.nan), 2), DataError, "finite"),
    (lambda i: i.search(np.ones((2, 4)), 2, exclude=[[1]]), DataError, "1 arrays for 2 queries"),
])
def test_bad_queries_raise_clear_errors(call, error, message):
    index = ItemIndex.build(np.ones((10, 4)))
    with pytest.raises(error, match=message):
        call(index)


@pytest.mark.parametrize("vectors, params, error, message", [
    (np.ones(4), {}, DataError, r"2-D \(n_items, dim\)"),
    (np.array([[1.0, np.inf]]), {}, DataError, "item 0 has NaN"),
    (np.array([["a"]]), {}, DataError, "real numbers"),
    (np.ones((3, 2)), {"m": 1}, ConfigError, "m must be >= 2"),
    (np.ones((3, 2)), {"exact_below": -1}, ConfigError, "exact_below must be >= 0"),
    (np.ones((3, 2)), {"ef_search": 0}, ConfigError, "ef_search must be >= 1"),
])
def test_bad_vectors_and_parameters_raise_clear_errors(vectors, params, error, message):
    with pytest.raises(error, match=message):
        ItemIndex.build(vectors, **params)
