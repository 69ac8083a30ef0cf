"""Random: uniformly random scores, the floor every model must clear (and exploration's simplest policy)."""

from __future__ import annotations

from typing import Self

import numpy as np

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.models.base import Explanation, Interval, Recommender


class RandomScores(Recommender):
    """Scores drawn uniformly from [0, 1), seeded: the same histories in the same order get the same scores."""

    name = "random"
    personalized = False
    parameter_constraints = {"random_state": Interval(int, 0)}

    def __init__(self, random_state: int = 42):
        self.random_state = random_state

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        self.n_items_ = dataset.n_items
        return self

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        rng = np.random.default_rng(self.random_state)
        return rng.random((len(histories), self.n_items_), dtype=np.float32)

    def explain(self, history: Histories, item: int, top: int = 5) -> Explanation:
        """Nothing but chance placed the item: the reason is exploration."""
        self._check_fitted(history)
        item = self._check_item(item)
        return Explanation(item, float(self.score(history)[0, item]), [], reason="explore")
