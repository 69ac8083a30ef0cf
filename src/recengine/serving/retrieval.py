"""The service's top-K for factor models over large catalogues: one user vector searched in an item index.

A factor model scores item j for a history as ``query · item_j``: iALS (user factor · item factor), BPR (the
same with the item bias as one more coordinate, the query's being 1) and any model that exposes
``item_embeddings()`` with ``user_embeddings(histories)`` as its queries (the two-tower model). For such a model
the service asks an ItemIndex (recengine.serving.ann) for the best items instead of scoring the whole catalogue.

Filters are applied to what the index returns, so it is asked for more than k: k plus the excluded items (seen,
deleted, excluded by the request), and with an allow-list (candidates, categories) k scaled by the share of the
catalogue the list keeps. When fewer than the wanted items survive (an approximate search missed some, or the
allowed items all score low), the survivors are not trusted and the allowed items are scored exactly instead;
an allow-list no longer than the search would be is scored exactly from the start, which is cheaper.

Rating models (biased MF, SVD++) are not served this way: their score is clipped to the rating range, so the
top of a list is a tie at the maximum, whose order the inner product does not reproduce.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from recengine.data.histories import Histories
from recengine.models._factors import user_vectors
from recengine.models.base import Recommender
from recengine.models.bpr import BPR
from recengine.models.ials import ImplicitALS
from recengine.models.topk import PAD_ITEM, topk
from recengine.serving.ann import ItemIndex

#: The most items one search fetches; a request that needs more (a long seen list, a very selective filter)
#: is scored exactly. efSearch grows with the fetch, and HNSW at efSearch 2,048 costs about what a
#: 50,000-item matmul does.
MAX_FETCH = 2_048
#: Item vectors per block while their moments are summed.
_MOMENT_BLOCK = 65_536


@dataclass(frozen=True)
class VectorForm:
    """A model's scores as inner products: item vectors (n_items, dim) and the query rows of histories."""

    items: np.ndarray
    queries: Callable[[Histories], np.ndarray]


def vector_form(model: Recommender) -> VectorForm | None:
    """The model's scores as query · item vectors, or None for a model that does not score that way."""
    if isinstance(model, ImplicitALS):
        return VectorForm(model.item_factors_, lambda h: user_vectors(h, model.user_factors_, model.fold_in))
    if isinstance(model, BPR):
        items = np.hstack([model.item_factors_, model.item_biases_[:, None]]).astype(np.float32)
        return VectorForm(items, lambda h: np.hstack(
            [user_vectors(h, model.user_factors_, model.fold_in), np.ones((len(h), 1), dtype=np.float32)]))
    embeddings = getattr(model, "item_embeddings", None)
    if callable(embeddings) and callable(getattr(model, "user_embeddings", None)):
        return VectorForm(np.asarray(embeddings(), dtype=np.float32), model.user_embeddings)
    return None


class VectorRetrieval:
    """A factor model's item index and what a request needs besides it (the moments of its score row)."""

    def __init__(self, form: VectorForm, index: ItemIndex, build_seconds: float):
        self.form = form
        self.index = index
        self.build_seconds = build_seconds
        #: Mean and covariance of the item vectors: a query's score row has mean q·mean and variance q'Cq,
        #: which place new items on its z-scale without scoring the catalogue. Summed in float64 blocks: a
        #: float64 copy of a 1M-item catalogue would add a gigabyte at the peak.
        n_items, dim = form.items.shape
        total, products = np.zeros(dim), np.zeros((dim, dim))
        for start in range(0, n_items, _MOMENT_BLOCK):
            block = form.items[start:start + _MOMENT_BLOCK].astype(np.float64)
            total += block.sum(axis=0)
            products += block.T @ block
        self._mean = total / max(n_items, 1)
        self._covariance = products / max(n_items, 1) - np.outer(self._mean, self._mean)

    @classmethod
    def build(cls, model: Recommender, *, min_items: int, search: str) -> VectorRetrieval | None:
        """An index over the model's item vectors when it has them and at least min_items items, else None.
        search: "hnsw" (approximate) or "exact" (every item, for equal results)."""
        form = vector_form(model)
        if form is None or len(form.items) < min_items:
            return None
        start = time.perf_counter()
        index = ItemIndex.build(form.items, exact_below=len(form.items) + 1 if search == "exact" else 0)
        return cls(form, index, time.perf_counter() - start)

    def info(self) -> dict[str, Any]:
        return {"search": self.index.mode, "items": self.index.n_items, "dim": self.index.dim,
                "ef_search": self.index.ef_search, "build_seconds": round(self.build_seconds, 3)}

    def query(self, history: Histories) -> np.ndarray:
        """The (1, dim) query row of a 1-row history (fold-in when its user has no learned state)."""
        return np.ascontiguousarray(self.form.queries(history), dtype=np.float32)

    def affine(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(offset, scale) of the query's score row over the catalogue, as hybrid.row_affine's zscore gives."""
        q = query[0].astype(np.float64)
        scale = math.sqrt(max(float(q @ self._covariance @ q), 0.0))
        return (np.array([[q @ self._mean]], dtype=np.float32),
                np.array([[scale if scale > 0 else 1.0]], dtype=np.float32))

    def top(self, query: np.ndarray, k: int, excluded: np.ndarray, allowed: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """The best k items for a (1, dim) query, never an excluded one, only allowed ones when given (sorted
        unique item indices; those outside the index are ignored): (items int64, scores float32), best first,
        fewer than k when fewer are eligible."""
        n_items = self.index.n_items
        excluded = excluded[excluded < n_items]
        if allowed is not None:
            allowed = np.setdiff1d(allowed[allowed < n_items], excluded, assume_unique=True)
        eligible = n_items - len(excluded) if allowed is None else len(allowed)
        want = min(k, eligible)
        if want == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        share = 1.0 if allowed is None else len(allowed) / n_items
        fetch = min(n_items, math.ceil(k / share) + len(excluded))
        if fetch > MAX_FETCH or (allowed is not None and len(allowed) <= fetch):
            return self._exact(query, want, excluded, allowed)
        labels, scores = self.index.search(query, fetch)
        labels, scores = labels[0], scores[0]
        keep = labels != PAD_ITEM
        keep &= ~np.isin(labels, excluded) if allowed is None else np.isin(labels, allowed)
        found = np.flatnonzero(keep)[:want]
        if len(found) < want:
            return self._exact(query, want, excluded, allowed)
        return labels[found].astype(np.int64), scores[found]

    def _exact(self, query: np.ndarray, k: int, excluded: np.ndarray, allowed: np.ndarray | None
               ) -> tuple[np.ndarray, np.ndarray]:
        """top by scoring every eligible item (allowed is already without the excluded)."""
        if allowed is None:
            scores = query @ self.form.items.T
            scores[0, excluded] = -np.inf
            items, values = topk(scores, k)
            return items[0].astype(np.int64), values[0]
        items, values = topk(query @ self.form.items[allowed].T, k)
        return allowed[items[0]], values[0]
