"""Most-popular: the same ranking for everyone, optionally decayed so that recent interactions count more."""

from __future__ import annotations

from typing import Self

import numpy as np

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.models.base import Explanation, Interval, Recommender


class MostPopular(Recommender):
    """Items ranked by their number of distinct users, or by an exponentially time-decayed count.

    half_life_days: weight of an interaction halves every this many days before the newest one; 0 = no decay.
    """

    name = "popular"
    personalized = False
    parameter_constraints = {"half_life_days": Interval(float, 0)}
    search_space = {"half_life_days": ("float", 0.0, 3650.0)}

    def __init__(self, half_life_days: float = 0.0):
        self.half_life_days = half_life_days

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        if self.half_life_days > 0:
            age_days = (dataset.timestamp.max() - dataset.timestamp) / 86400.0
            decay = np.exp2(-age_days / self.half_life_days)
            counts = np.bincount(dataset.item_index, weights=decay, minlength=dataset.n_items)
        else:
            counts = dataset.item_popularity().astype(np.float64)
        self.item_scores_ = counts.astype(np.float32)
        self.n_items_ = dataset.n_items
        return self

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        return np.broadcast_to(self.item_scores_, (len(histories), self.n_items_))

    def explain(self, history: Histories, item: int, top: int = 5) -> Explanation:
        """Popularity needs no history: the reason is the item's rank (1 = most popular) among all items."""
        self._check_fitted(history)
        item = self._check_item(item)
        scores = self.item_scores_
        rank = int((scores > scores[item]).sum()) + 1
        return Explanation(item, float(scores[item]), [], reason="popular",
                           details={"rank": rank, "half_life_days": self.half_life_days})
