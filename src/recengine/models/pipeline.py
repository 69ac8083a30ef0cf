"""A two-stage pipeline: a retrieval model proposes candidates, a ranker orders them.

Both stages are registered models named like the hybrids' components (``"ease"`` or ``{"name": "deepfm",
"params": {...}}``), fitted on the same data. For each history the retrieval's top ``n_candidates`` items outside
the history are the candidates; the ranker scores only those (``Recommender.predict``: a CTR ranker runs its
network on just these pairs) and its scores order them. Every other item keeps the retrieval's order but sits
below the lowest candidate, so a top-k list never holds a non-candidate while a candidate is left.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import DataError
from recengine.models._components import (
    ComponentSpec,
    any_component,
    composite_state,
    fitted_components,
    new_components,
    parse_specs,
)
from recengine.models.base import Explanation, Interval, Recommender
from recengine.models.topk import PAD_ITEM, mask_entries, topk

#: The stages when none are given: EASE retrieves, DeepFM ranks.
DEFAULT_STAGES = ("ease", "deepfm")


class _EitherStage:
    """A flag (requires_item_features) that holds when it holds for either stage: read on the class, for the
    default stages (what the contract suite asks); on an instance, for that instance's."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = name

    def __get__(self, instance: Pipeline | None, owner: type) -> bool:
        stages = DEFAULT_STAGES if instance is None else (instance.retrieval, instance.ranker)
        return any_component(parse_specs(owner.name, list(stages), ()), self.attribute)


class Pipeline(Recommender):
    """retrieval: the first stage (default "ease"); ranker: the second (default "deepfm"); n_candidates: how
    many items the retrieval proposes per history. score gives the ranker's scores of the candidates and, below
    them, the retrieval's order of the rest (see the module docstring). explain asks the ranker about a
    candidate and the retrieval about any other item; similar_items is the retrieval's."""

    name = "pipeline"
    parameter_constraints = {"n_candidates": Interval(int, 1)}
    search_space = {"n_candidates": ("int", 20, 500)}

    def __init__(self, retrieval: ComponentSpec = DEFAULT_STAGES[0], ranker: ComponentSpec = DEFAULT_STAGES[1],
                 n_candidates: int = 100):
        self.retrieval = retrieval
        self.ranker = ranker
        self.n_candidates = n_candidates

    requires_item_features = _EitherStage()

    def _specs(self) -> list[tuple[str, dict[str, Any]]]:
        return parse_specs(self.name, [self.retrieval, self.ranker], ())

    def _validate_params(self) -> None:
        super()._validate_params()
        self._specs()

    def _stages(self) -> tuple[Recommender, Recommender]:
        retrieval, ranker = fitted_components(self, self._specs())
        return retrieval, ranker

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        self.components_ = [stage.fit(dataset) for stage in new_components(self._specs())]
        self.n_items_ = dataset.n_items
        return self

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return composite_state(self, ("n_items_",), self._stages())

    def candidates(self, histories: Histories, retrieval_scores: np.ndarray | None = None) -> sp.csr_matrix:
        """Binary CSR (len(histories), n_items): each history's top n_candidates unseen items by the retrieval."""
        self._check_fitted(histories)
        retrieval, _ = self._stages()
        scores = np.array(retrieval.score(histories) if retrieval_scores is None else retrieval_scores,
                          dtype=np.float32, copy=True)
        mask_entries(scores, histories.matrix("binary"))
        items, _ = topk(scores, min(self.n_candidates, self.n_items_))
        keep = items != PAD_ITEM
        rows = np.nonzero(keep)[0]
        pool = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, items[keep])),
                             shape=(len(histories), self.n_items_))
        pool.sort_indices()
        return pool

    def score(self, histories: Histories) -> np.ndarray:
        """The ranker's scores of the candidates; every other item in the retrieval's order below the lowest."""
        self._check_fitted(histories)
        retrieval, ranker = self._stages()
        out = np.asarray(retrieval.score(histories), dtype=np.float32).copy()
        pool = self.candidates(histories, out)
        ranked = ranker.predict(histories, pool)
        rows = np.repeat(np.arange(len(histories)), np.diff(pool.indptr))
        is_candidate = np.zeros(out.shape, dtype=bool)
        is_candidate[rows, pool.indices] = True
        lowest = np.full(len(histories), np.inf, dtype=np.float32)
        np.minimum.at(lowest, rows, ranked.data)
        highest_other = np.where(is_candidate, -np.inf, out).max(axis=1)
        # Shift each row's non-candidates so that the best of them lands 1 below the worst candidate.
        gap = np.where(np.isfinite(lowest) & np.isfinite(highest_other), highest_other - lowest + 1.0, 0.0)
        out -= np.where(is_candidate, 0.0, gap[:, None]).astype(np.float32)
        out[rows, pool.indices] = ranked.data
        return out

    def explain(self, history: Histories, item: int, top: int = 5) -> Explanation:
        """The ranker's explanation of a candidate (its score is the ranker's), the retrieval's of any other
        item; details name the stage."""
        self._check_fitted(history)
        if len(history) != 1:
            raise DataError(f"explain takes one history, got {len(history)}")
        item = self._check_item(item)
        retrieval, ranker = self._stages()
        is_candidate = bool(self.candidates(history)[0, item])
        stage, model = ("ranker", ranker) if is_candidate else ("retrieval", retrieval)
        explanation = model.explain(history, item, top)
        score = float(self.score(history)[0, item])
        return Explanation(item, score, explanation.contributions, explanation.reason,
                           {**explanation.details, "stage": stage, "component": self._specs()[int(is_candidate)][0]})

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The retrieval model's item similarity."""
        self._check_fitted()
        return self._stages()[0].similar_items(items, k)
