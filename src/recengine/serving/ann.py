"""Top-K retrieval over a catalog's item vectors: exact below a size threshold, approximate (HNSW) above it.

A factor model scores an item as ``user · item``, so retrieval is maximum-inner-product search (MIPS). Above
``exact_below`` items the index is a faiss ``IndexHNSWFlat`` with ``METRIC_INNER_PRODUCT``: the graph is searched
with inner products directly. The textbook alternative, appending ``sqrt(max_norm² - |x|²)`` to every item so
that MIPS becomes L2 search, was measured and rejected: with the popularity-like norm spread of real item factors
almost every item lands near one pole of the sphere, the graph's neighbourhoods stop following the data, and
recall@20 was 0.20 at efSearch=128 on 200k synthetic items where inner-product HNSW reached 0.985 (see
docs/benchmarks.md, "ANN retrieval"). Scores returned by HNSW are exact inner products of the candidates (the
index stores the vectors uncompressed); only the candidate set is approximate.

Below the threshold a NumPy matmul and the shared ``recengine.models.topk`` give exact results; that path needs
no faiss, which is an optional dependency (the ``serve`` extra).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np

from recengine.artifacts import read_manifest
from recengine.errors import ArtifactError, DataError, NotSupportedError
from recengine.models.base import Interval
from recengine.models.topk import PAD_ITEM, topk

if TYPE_CHECKING:
    import faiss

_FORMAT = "recengine-item-index"
_FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_VECTORS = "vectors.npy"
_FAISS = "index.faiss"
#: Upper bound on the floats of one exact score block (queries x items), as in Recommender.recommend.
_SCORE_BLOCK = 1 << 25

#: Defaults tuned on the 1M-item benchmark (benchmarks/ann.py): recall@20 >= 0.95 at sub-millisecond latency.
EXACT_BELOW = 50_000
HNSW_M = 32
EF_CONSTRUCTION = 100
EF_SEARCH = 128

Mode = Literal["exact", "hnsw"]


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as error:
        raise NotSupportedError("approximate search needs faiss: pip install 'recengine[serve]' "
                                "(catalogs below exact_below items use exact search and do not)") from error
    return faiss


def _check_vectors(vectors: Any) -> np.ndarray:
    array = np.asarray(vectors)
    if array.ndim != 2 or array.shape[1] < 1:
        raise DataError(f"item vectors must be a 2-D (n_items, dim) array with dim >= 1, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise DataError(f"item vectors must be real numbers, got dtype {array.dtype}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise DataError(f"item vectors must be finite; item {bad} has NaN or infinite entries")
    return array


class ItemIndex:
    """Top-K items by inner product with query vectors; build with ``ItemIndex.build`` or ``ItemIndex.load``."""

    def __init__(self, mode: Mode, n_items: int, dim: int, ef_search: int, *, vectors: np.ndarray | None = None,
                 hnsw: faiss.IndexHNSWFlat | None = None) -> None:
        self.mode: Mode = mode
        self.n_items = n_items
        self.dim = dim
        self.ef_search = ef_search
        self._vectors = vectors
        self._hnsw = hnsw

    # ------------------------------------------------------------------------------------------- building
    @classmethod
    def build(cls, vectors: Any, *, exact_below: int = EXACT_BELOW, m: int = HNSW_M,
              ef_construction: int = EF_CONSTRUCTION, ef_search: int = EF_SEARCH,
              deterministic: bool = False) -> Self:
        """An index over item vectors (n_items, dim): exact when n_items < exact_below, HNSW otherwise.

        m: graph links per node; ef_construction: candidate list size while inserting; ef_search: candidate
        list size while searching (raised to the number of results fetched when that is larger). deterministic:
        insert with one thread, so that the same vectors always give the same graph; faiss inserts in parallel
        and the graph then depends on thread timing. Off by default because a one-thread build of a large
        catalog takes several times longer; a service that builds in the background may still want it, as it
        leaves the other cores to requests.
        """
        Interval(int, 0).check("exact_below", exact_below)
        Interval(int, 2).check("m", m)
        Interval(int, 1).check("ef_construction", ef_construction)
        Interval(int, 1).check("ef_search", ef_search)
        array = _check_vectors(vectors)
        n_items, dim = array.shape
        if n_items < exact_below:
            return cls("exact", n_items, dim, ef_search, vectors=array)
        faiss = _faiss()
        # The level of each node comes from faiss's RNG with a fixed seed, so insertion order is the only
        # source of nondeterminism.
        hnsw = faiss.IndexHNSWFlat(dim, m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = ef_construction
        hnsw.hnsw.efSearch = ef_search
        threads = faiss.omp_get_max_threads()
        if deterministic:
            faiss.omp_set_num_threads(1)
        try:
            hnsw.add(array)
        finally:
            faiss.omp_set_num_threads(threads)
        return cls("hnsw", n_items, dim, ef_search, hnsw=hnsw)

    # ------------------------------------------------------------------------------------------- searching
    def search(self, queries: Any, k: int, exclude: Sequence[Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The k items of highest inner product with each query row, best first: (items int32, scores float32).

        exclude: per query, item indices never to return (e.g. the user's seen items); indices outside the
        catalog are ignored, since they can never be returned anyway (an item newer than the index). Rows
        with fewer than k eligible items are padded with item -1 and score -inf, as recengine.models.topk does.
        """
        Interval(int, 1).check("k", k)
        q = np.asarray(queries)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise DataError(f"queries must be a 2-D (n_queries, {self.dim}) array for this index of {self.dim}-"
                            f"dimensional items, got shape {q.shape}")
        q = np.ascontiguousarray(q, dtype=np.float32)
        if not np.isfinite(q).all():
            raise DataError("queries must be finite; found NaN or infinite entries")
        excluded = self._exclusions(exclude, len(q))
        if self.mode == "exact":
            return self._search_exact(q, k, excluded)
        return self._search_hnsw(q, k, excluded)

    def _exclusions(self, exclude: Sequence[Any] | None, n_queries: int) -> list[np.ndarray] | None:
        if exclude is None:
            return None
        if len(exclude) != n_queries:
            raise DataError(f"exclude must hold one item array per query: {len(exclude)} arrays for "
                            f"{n_queries} queries")
        out = []
        for row in exclude:
            items = np.asarray(row if row is not None else [], dtype=np.int64).ravel()
            out.append(items[(items >= 0) & (items < self.n_items)])
        return out

    def _search_exact(self, q: np.ndarray, k: int, excluded: list[np.ndarray] | None
                      ) -> tuple[np.ndarray, np.ndarray]:
        assert self._vectors is not None
        items = np.empty((len(q), k), dtype=np.int32)
        scores = np.empty((len(q), k), dtype=np.float32)
        step = max(1, _SCORE_BLOCK // max(1, self.n_items))
        for start in range(0, len(q), step):
            block = q[start:start + step] @ self._vectors.T
            if excluded is not None:
                rows = excluded[start:start + step]
                block[np.repeat(np.arange(len(rows)), [len(r) for r in rows]), np.concatenate(rows)] = -np.inf
            items[start:start + step], scores[start:start + step] = topk(block, k)
        return items, scores

    def _search_hnsw(self, q: np.ndarray, k: int, excluded: list[np.ndarray] | None
                     ) -> tuple[np.ndarray, np.ndarray]:
        assert self._hnsw is not None
        faiss = _faiss()
        # Over-fetch by the longest exclusion list, so that k results remain after filtering whenever the
        # catalog holds them; the candidate list must be at least that long for HNSW to find them.
        fetch = min(self.n_items, k + (max((len(r) for r in excluded), default=0) if excluded else 0))
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, fetch)
        distances, labels = self._hnsw.search(q, max(fetch, 1), params=params)
        items = np.full((len(q), k), PAD_ITEM, dtype=np.int32)
        scores = np.full((len(q), k), -np.inf, dtype=np.float32)
        for r in range(len(q)):
            keep = labels[r] >= 0
            if excluded is not None and len(excluded[r]):
                keep &= ~np.isin(labels[r], excluded[r])
            found = np.flatnonzero(keep)[:k]
            items[r, :len(found)] = labels[r, found]
            scores[r, :len(found)] = distances[r, found]
        return items, scores

    # ---------------------------------------------------------------------------------------- persistence
    def save(self, path: str | Path) -> None:
        """Write the index to directory `path`: manifest.json and vectors.npy (exact) or index.faiss (HNSW)."""
        directory = Path(path)
        directory.mkdir(parents=True, exist_ok=True)
        if self.mode == "exact":
            assert self._vectors is not None
            np.save(directory / _VECTORS, self._vectors, allow_pickle=False)
        else:
            _faiss().write_index(self._hnsw, str(directory / _FAISS))
        manifest = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "mode": self.mode,
                    "n_items": self.n_items, "dim": self.dim, "ef_search": self.ef_search}
        # The manifest goes last, so a directory without one is recognisably incomplete.
        (directory / _MANIFEST).write_text(json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """The index saved in directory `path` (ArtifactError when it is missing, corrupt or inconsistent)."""
        directory = Path(path)
        manifest = read_manifest(directory, _MANIFEST, _FORMAT, _FORMAT_VERSION, "a saved item index")
        mode, n_items, dim, ef_search = (manifest.get(key) for key in ("mode", "n_items", "dim", "ef_search"))
        if mode not in ("exact", "hnsw") or not all(isinstance(v, int) for v in (n_items, dim, ef_search)):
            raise ArtifactError(f"{directory / _MANIFEST}: mode, n_items, dim or ef_search missing or invalid")
        if mode == "exact":
            try:
                vectors = np.load(directory / _VECTORS, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise ArtifactError(f"{directory / _VECTORS} is missing or corrupt: {error}") from error
            if vectors.shape != (n_items, dim) or vectors.dtype != np.float32:
                raise ArtifactError(f"{directory / _VECTORS} holds {vectors.dtype} {vectors.shape}, the manifest "
                                    f"says float32 ({n_items}, {dim})")
            return cls("exact", n_items, dim, ef_search, vectors=vectors)
        faiss = _faiss()
        file = directory / _FAISS
        if not file.is_file():
            raise ArtifactError(f"{file} is missing")
        try:
            hnsw = faiss.read_index(str(file))
        except RuntimeError as error:
            raise ArtifactError(f"{file} is corrupt: {error}") from error
        if not isinstance(hnsw, faiss.IndexHNSWFlat) or hnsw.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise ArtifactError(f"{file} is not an inner-product HNSW index")
        if hnsw.ntotal != n_items or hnsw.d != dim:
            raise ArtifactError(f"{file} holds {hnsw.ntotal} items of dimension {hnsw.d}, the manifest says "
                                f"{n_items} of {dim}")
        return cls("hnsw", n_items, dim, ef_search, hnsw=hnsw)
