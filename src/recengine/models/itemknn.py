"""ItemKNN: item-based collaborative filtering with a sparse top-N item-item similarity matrix."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.errors import DataError
from recengine.models._similarity import (
    SIMILARITIES,
    WEIGHTINGS,
    ItemItemModel,
    RowStats,
    apply_weighting,
    centre_rows,
    fit_weighting,
    normalize_rows,
    top_n_similarity,
)
from recengine.models.base import Interval, Options


class ItemKNN(ItemItemModel):
    """Score = history_matrix @ S, with S[i, j] the similarity of history item i to item j, pruned to the
    `neighbors` most similar items i of every item j (Sarwar et al. 2001; Deshpande & Karypis 2004).

    similarity: "cosine", "asymmetric" (asymmetric cosine with asymmetric_alpha, Aiolli 2013; 0.5 = cosine),
    "jaccard" (Tanimoto on weights), "pearson" (correlation of item columns over all users) or
    "adjusted_cosine" (cosine after subtracting each user's mean weight; needs graded weights).
    weighting: "none", "tfidf" or "bm25" (bm25_k1, bm25_b) applied to the item x user matrix before the
    similarity (items are the documents, users the terms). shrink: added to every denominator, damping
    similarities supported by few users. normalize: scale each history item's row of S to sum to 1.
    values: "binary" or "weight" — which interaction values both fitting and scoring read.
    """

    name = "itemknn"
    _neighbours_along = "column"
    parameter_constraints = {
        "similarity": Options((*SIMILARITIES, "adjusted_cosine")),
        "neighbors": Interval(int, 1),
        "shrink": Interval(float, 0),
        "weighting": Options(WEIGHTINGS),
        "bm25_k1": Interval(float, 0),
        "bm25_b": Interval(float, 0, 1),
        "asymmetric_alpha": Interval(float, 0, 1),
        "normalize": Options((False, True)),
        "values": Options(("binary", "weight")),
        "history_half_life": Interval(float, 0),
    }
    search_space = {
        "similarity": ("cat", ["cosine", "asymmetric", "jaccard", "pearson"]),
        "neighbors": ("int", 5, 1000),
        "shrink": ("float", 0.0, 1000.0),
        "weighting": ("cat", ["none", "tfidf", "bm25"]),
        "asymmetric_alpha": ("float", 0.0, 1.0),
        "normalize": ("cat", [False, True]),
        "history_half_life": ("cat", [0.0, 2.0, 5.0, 10.0, 20.0, 50.0]),
    }

    def __init__(
        self,
        similarity: str = "cosine",
        neighbors: int = 200,
        shrink: float = 10.0,
        weighting: str = "none",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        asymmetric_alpha: float = 0.5,
        normalize: bool = False,
        values: str = "binary",
    history_half_life: float = 0.0,
):
        self.similarity = similarity
        self.neighbors = neighbors
        self.shrink = shrink
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.asymmetric_alpha = asymmetric_alpha
        self.normalize = normalize
        self.values = values
        self.history_half_life = history_half_life

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        item_users = dataset.matrix(self.values).T.tocsr()
        weights = fit_weighting(item_users, self.weighting)
        item_users = apply_weighting(item_users, self.weighting, weights, self.bm25_k1, self.bm25_b)
        kind = self.similarity
        if kind == "adjusted_cosine":
            # Centre each user's weights on their mean: users become columns of item_users.
            item_users = centre_rows(item_users.T.tocsr()).T.tocsr()
            if item_users.nnz == 0:
                raise DataError("adjusted_cosine needs graded weights (values='weight', varying weights): "
                                "every user's weights are equal here; use 'cosine' or 'pearson'")
            kind = "cosine"
        stats = RowStats.of(item_users)
        user_items = item_users.T.tocsr()
        # Rows of the result are the scored items, columns their neighbours: S is its transpose.
        nearest = top_n_similarity(item_users, user_items, stats, stats, kind, self.neighbors,
                                   shrink=float(self.shrink), alpha=float(self.asymmetric_alpha),
                                   exclude=np.arange(dataset.n_items))
        similarity = nearest.T.tocsr()
        if self.normalize:
            similarity = normalize_rows(similarity)
        similarity.sort_indices()
        self.item_weights_ = sp.csr_matrix(similarity, dtype=np.float32)
        self.n_items_ = dataset.n_items
        return self
