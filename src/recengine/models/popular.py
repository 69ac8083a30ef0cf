"""Most-popular: the same ranking for everyone, optionally decayed so that recent interactions count more."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import DataError
from recengine.models.base import Explanation, Interval, Options, Recommender


class MostPopular(Recommender):
    """Items ranked by their number of distinct users, or by an exponentially time-decayed count.

    half_life_days: weight of an interaction halves every this many days before the newest one; 0 = no decay.
    category_prior: items without interactions (new items) score the mean popularity of the items that share
    each of their categories (Dataset.category_matrix), averaged over those categories — "popular in its
    category" — instead of 0; an item-cold-start baseline. Items with interactions keep their own count.
    tie_break: "index" leaves equal scores in item-index order (top-K's rule); "random" orders them by a seeded
    random permutation, and the scores become ranks (n_items for the most popular item, down to 1). Use it to
    evaluate: item numbering often follows the data (order of first appearance), and many ties — new items all
    at 0, items of one category under the prior — would otherwise be ranked by that numbering.
    """

    name = "popular"
    personalized = False
    parameter_constraints = {"half_life_days": Interval(float, 0), "category_prior": Options((False, True)),
                             "tie_break": Options(("index", "random")), "random_state": Interval(int, 0)}
    search_space = {"half_life_days": ("float", 0.0, 3650.0)}

    def __init__(self, half_life_days: float = 0.0, category_prior: bool = False, tie_break: str = "index",
                 random_state: int = 42):
        self.half_life_days = half_life_days
        self.category_prior = category_prior
        self.tie_break = tie_break
        self.random_state = random_state

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        if self.half_life_days > 0:
            age_days = (dataset.timestamp.max() - dataset.timestamp) / 86400.0
            decay = np.exp2(-age_days / self.half_life_days)
            counts = np.bincount(dataset.item_index, weights=decay, minlength=dataset.n_items)
        else:
            counts = dataset.item_popularity().astype(np.float64)
        if self.category_prior:
            counts = self._with_category_prior(counts, dataset)
        if self.tie_break == "random":
            order = np.lexsort((np.random.default_rng(self.random_state).random(len(counts)), -counts))
            counts = np.empty(len(counts))
            counts[order] = np.arange(len(counts), 0, -1)
        self.item_scores_ = counts.astype(np.float32)
        self.n_items_ = dataset.n_items
        return self

    @staticmethod
    def _with_category_prior(counts: np.ndarray, dataset: Dataset) -> np.ndarray:
        categories = dataset.category_matrix()
        if categories is None:
            raise DataError("category_prior needs item categories (genres, categories or attributes)")
        categories = sp.csr_matrix(categories, dtype=np.float64)
        active = counts > 0
        members = np.asarray(categories[active].sum(axis=0)).ravel()
        category_mean = np.divide(categories[active].T @ counts[active], members, out=np.zeros(len(members)),
                                  where=members > 0)
        per_item = np.asarray(categories.sum(axis=1)).ravel()
        prior = np.divide(categories @ category_mean, per_item, out=np.zeros(len(per_item)), where=per_item > 0)
        return np.where(active, counts, prior)

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
