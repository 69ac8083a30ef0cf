"""UserKNN: user-based collaborative filtering; query histories are compared with every training user."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.models._similarity import (
    BLOCK_FLOATS,
    SIMILARITIES,
    WEIGHTINGS,
    RowStats,
    TermWeights,
    apply_weighting,
    fit_weighting,
    top_n_similarity,
)
from recengine.models.base import Interval, Options, Recommender


class UserKNN(Recommender):
    """Score of a history = sum over its `neighbors` most similar training users of similarity x their row.

    similarity: "cosine", "asymmetric" (asymmetric cosine, asymmetric_alpha on the query side; 0.5 = cosine),
    "jaccard" (Tanimoto on weights) or "pearson" (correlation over all items). weighting: "none", "tfidf" or
    "bm25" of the user x item matrix (users are documents, items terms; idf and mean length are learned on the
    training users and reused for query histories). shrink damps similarities of users with little overlap.
    values: "binary" or "weight". A history marked as a known training user (Histories.users) never counts
    itself as a neighbour; any other history (a new user) is compared with everyone.
    """

    name = "userknn"
    parameter_constraints = {
        "similarity": Options(SIMILARITIES),
        "neighbors": Interval(int, 1),
        "shrink": Interval(float, 0),
        "weighting": Options(WEIGHTINGS),
        "bm25_k1": Interval(float, 0),
        "bm25_b": Interval(float, 0, 1),
        "asymmetric_alpha": Interval(float, 0, 1),
        "values": Options(("binary", "weight")),
    }
    search_space = {
        "similarity": ("cat", ["cosine", "asymmetric", "jaccard", "pearson"]),
        "neighbors": ("int", 5, 1000),
        "shrink": ("float", 0.0, 1000.0),
        "weighting": ("cat", ["none", "tfidf", "bm25"]),
        "asymmetric_alpha": ("float", 0.0, 1.0),
    }

    def __init__(
        self,
        similarity: str = "cosine",
        neighbors: int = 100,
        shrink: float = 50.0,
        weighting: str = "none",
        bm25_k1: float = 1.2,
        bm25_b: float = 0.75,
        asymmetric_alpha: float = 0.5,
        values: str = "binary",
    ):
        self.similarity = similarity
        self.neighbors = neighbors
        self.shrink = shrink
        self.weighting = weighting
        self.bm25_k1 = bm25_k1
        self.bm25_b = bm25_b
        self.asymmetric_alpha = asymmetric_alpha
        self.values = values

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        user_items = sp.csr_matrix(dataset.matrix(self.values), dtype=np.float32, copy=True)
        weights = fit_weighting(user_items, self.weighting)
        weighted = apply_weighting(user_items, self.weighting, weights, self.bm25_k1, self.bm25_b)
        stats = RowStats.of(weighted)
        self.user_items_ = user_items
        self.weighted_item_users_ = sp.csr_matrix(weighted.T, dtype=np.float32)
        self.user_sq_ = stats.sq
        self.user_total_ = stats.total
        self.idf_ = weights.idf
        self.avg_length_ = weights.avg_length
        self.n_items_ = dataset.n_items
        return self

    def nearest_users(self, histories: Histories) -> sp.csr_matrix:
        """(len(histories), n_training_users) CSR of each history's kept neighbours and their similarities."""
        self._check_fitted(histories)
        query = histories.matrix(self.values)
        weighted = apply_weighting(query, self.weighting, TermWeights(self.idf_, self.avg_length_),
                                   self.bm25_k1, self.bm25_b)
        exclude = None
        if histories.users is not None:
            n_train = self.user_items_.shape[0]
            exclude = np.where((histories.users >= 0) & (histories.users < n_train), histories.users, -1)
        return top_n_similarity(weighted, self.weighted_item_users_, RowStats.of(weighted),
                                RowStats(self.user_sq_, self.user_total_), self.similarity, self.neighbors,
                                shrink=float(self.shrink), alpha=float(self.asymmetric_alpha),
                                exclude=exclude)

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        out = np.empty((len(histories), self.n_items_), dtype=np.float32)
        # Each block's dense similarity to all training users is bounded, whatever the number of histories.
        step = max(1, BLOCK_FLOATS // max(1, self.user_items_.shape[0]))
        for start in range(0, len(histories), step):
            stop = min(start + step, len(histories))
            out[start:stop] = (self.nearest_users(histories[start:stop]) @ self.user_items_).toarray()
        return out
