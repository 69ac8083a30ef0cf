"""Hybrid recommenders: component models combined by fixed weights, by history length, or by a learned blend.

Components are named like the rating blend's (``["ease", {"name": "itemknn", "params": {...}}]``) and may mix
collaborative and content models; a hybrid needs item features when one of its components does.

Raw scores of different models live on unrelated scales (an EASE score, an iALS dot product, a cosine sum), so
the weighted and stacked hybrids first normalize every component's scores per history row with an affine map
(z-score by default: subtract the row's mean over all items, divide by its standard deviation). Being affine,
the blended score of a row stays a weighted sum of raw component scores plus a row constant; that keeps
rankings of a single component intact under a blend that gives the others weight 0, and lets ``explain`` carry
a component's contributions over, scaled by the component's effective weight.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.data.splits import validation_split
from recengine.errors import ConfigError, DataError, NotSupportedError
from recengine.models._components import (
    ComponentSpec,
    any_component,
    composite_state,
    fitted_components,
    new_components,
    parse_specs,
)
from recengine.models.base import Explanation, Interval, Options, Recommender
from recengine.models.topk import PAD_ITEM, mask_entries, topk

NORMALIZATIONS = ("zscore", "minmax")
#: How many nearest items each component contributes to a blended similar-items list.
SIMILAR_POOL = 200
#: Floats of one dense block of component scores while the stacked blend builds its training rows.
_BLOCK_FLOATS = 1 << 24


def row_affine(scores: np.ndarray, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-row (offset, scale), each (n_rows, 1) float32, with normalized = (scores - offset) / scale.

    zscore: mean and standard deviation of the row; minmax: minimum and range. A constant row (e.g. an empty
    history) gets scale 1, so that it normalizes to zeros and leaves the ranking to the other components.
    Statistics are accumulated in float64: a float32 mean of a constant row need not equal its value.
    """
    if normalization == "zscore":
        offset = scores.mean(axis=1, dtype=np.float64, keepdims=True)
        scale = scores.std(axis=1, dtype=np.float64, keepdims=True)
    elif normalization == "minmax":
        offset = scores.min(axis=1, keepdims=True).astype(np.float64)
        scale = scores.max(axis=1, keepdims=True).astype(np.float64) - offset
    else:
        raise ConfigError(f"unknown normalization {normalization!r}; use one of {list(NORMALIZATIONS)}")
    scale[scale <= 0] = 1.0
    return offset.astype(np.float32), scale.astype(np.float32)


def normalize(scores: np.ndarray, normalization: str) -> np.ndarray:
    """Scores normalized per row (a new float32 array)."""
    scores = np.asarray(scores, dtype=np.float32)
    offset, scale = row_affine(scores, normalization)
    return (scores - offset) / scale


class _Hybrid(Recommender):
    """Shared parts: component specs, fitted components, persistence, item similarity and explanations.

    Subclasses set ``default_models`` and list their own learned attributes in ``_learned``.
    """

    default_models: ClassVar[tuple[ComponentSpec, ...]] = ()
    _learned: ClassVar[tuple[str, ...]] = ("n_items_",)
    models: list[ComponentSpec] | None

    class _AnyComponent:
        """A flag that holds when it holds for any component: read on the class, for the default components
        (what the contract suite asks); on an instance, for that instance's."""

        def __set_name__(self, owner: type[_Hybrid], name: str) -> None:
            self.attribute = name

        def __get__(self, instance: _Hybrid | None, owner: type[_Hybrid]) -> bool:
            entries = owner.default_models if instance is None else instance.models
            return any_component(parse_specs(owner.name, entries, owner.default_models), self.attribute)

    #: A hybrid needs item features when a component does, and personalizes when a component does.
    requires_item_features = _AnyComponent()
    personalized = _AnyComponent()  # type: ignore[assignment]

    def _specs(self) -> list[tuple[str, dict[str, Any]]]:
        return parse_specs(self.name, self.models, self.default_models)

    def _validate_params(self) -> None:
        super()._validate_params()
        self._specs()

    def _components(self) -> list[Recommender]:
        return fitted_components(self, self._specs())

    def _fit_components(self, dataset: Dataset) -> None:
        self.components_ = [component.fit(dataset) for component in new_components(self._specs())]
        self.n_items_ = dataset.n_items

    def _state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return composite_state(self, self._learned, self._components())

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The first component's that defines item similarity (the components' scales are not comparable)."""
        self._check_fitted()
        for component in self._components():
            try:
                return component.similar_items(items, k)
            except NotSupportedError:
                continue
        raise NotSupportedError(f"{self.name}: none of its components ({', '.join(n for n, _ in self._specs())}) "
                                "defines item similarity; add one such as itemknn, ease or content")

    def _explain_blend(self, history: Histories, item: int, top: int, weights: np.ndarray,
                       normalization: str, score: float) -> Explanation:
        """The explanation of the component with a positive weight that adds most to a row's blend
        sum_m weights[m] * norm_m (a component's own explain: exact for linear models, by ablation otherwise).

        Its contributions are rescaled by weight / scale (the normalization's divisor), the amount each unit of
        its raw score adds to the blend; reason and details are the component's, details also name it.
        """
        if len(history) != 1:
            raise DataError(f"explain takes one history, got {len(history)}")
        item = self._check_item(item)
        specs = self._specs()
        shares = np.full(len(specs), -np.inf)
        scales = np.ones(len(specs))
        for m, component in enumerate(self._components()):
            if weights[m] > 0:
                raw = np.asarray(component.score(history), dtype=np.float32)
                offset, scale = row_affine(raw, normalization)
                shares[m] = weights[m] * (raw[0, item] - offset[0, 0]) / scale[0, 0]
                scales[m] = weights[m] / scale[0, 0]
        if not np.isfinite(shares).any():
            raise NotSupportedError(f"{self.name}: no component has a positive weight for this history, so none "
                                    "drives its scores")
        m = int(np.argmax(shares))
        explanation = self._components()[m].explain(history, item, top)
        contributions = [(j, float(c * scales[m])) for j, c in explanation.contributions]
        return Explanation(item, score, contributions, explanation.reason,
                           {**explanation.details, "component": specs[m][0]})


# ------------------------------------------------------------------------------------------------- weighted
class WeightedHybrid(_Hybrid):
    """score = sum_m weights[m] * normalize(score_m), normalized per history row (see the module docstring).

    models: the components (None = ["ease", "itemknn"]: a global linear model and a local neighbourhood model,
    whose errors differ). weights: one non-negative float per component, not all 0 (None = equal weights);
    only their ratios matter. normalization: "zscore" (default) or "minmax"; min-max lets the single highest
    score of a row set its scale, z-scores the whole row. On a MovieLens-100K temporal-user validation split
    (NDCG@20): ease 0.2545, itemknn 0.1980, their z-score blend 0.2575, their min-max blend 0.2493.
    Components with weight 0 are fitted but never scored. To tune the weights, search over them with
    fixed_params, or let the stacked hybrid learn them.
    """

    name = "weighted"
    default_models = ("ease", "itemknn")
    parameter_constraints = {"normalization": Options(NORMALIZATIONS)}
    search_space = {"normalization": ("cat", list(NORMALIZATIONS))}

    def __init__(
        self,
        models: list[ComponentSpec] | None = None,
        weights: list[float] | None = None,
        normalization: str = "zscore",
    ):
        self.models = models
        self.weights = weights
        self.normalization = normalization

    def _weights(self) -> np.ndarray:
        n = len(self._specs())
        if self.weights is None:
            return np.full(n, 1.0 / n)
        if not isinstance(self.weights, list | tuple) or len(self.weights) != n:
            raise ConfigError(f"weighted: weights must be a list of {n} numbers, one per component, got "
                              f"{self.weights!r}")
        for w in self.weights:
            Interval(float, 0).check("each weight", w)
        weights = np.asarray(self.weights, dtype=np.float64)
        if not np.isfinite(weights).all() or weights.sum() <= 0:
            raise ConfigError(f"weighted: weights must be finite and not all 0, got {self.weights!r}")
        return weights

    def _validate_params(self) -> None:
        super()._validate_params()
        self._weights()

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        self._fit_components(dataset)
        return self

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        out = np.zeros((len(histories), self.n_items_), dtype=np.float32)
        for weight, component in zip(self._weights(), self._components(), strict=True):
            if weight > 0:
                out += np.float32(weight) * normalize(component.score(histories), self.normalization)
        return out

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Similarities blended like scores: each component with a weight that defines item similarity gives
        its SIMILAR_POOL nearest items per item, z-scored over that list; an item outside a component's list
        counts as that list's lowest. E.g. content and collaborative similarity together."""
        self._check_fitted()
        items = np.atleast_1d(np.asarray(items, dtype=np.int64))
        pool = min(self.n_items_ - 1, max(SIMILAR_POOL, k))
        rows, columns, values, used = [], [], [], []
        for weight, component in zip(self._weights(), self._components(), strict=True):
            if weight <= 0:
                continue
            try:
                neighbours, similarity = component.similar_items(items, pool)
            except NotSupportedError:
                continue
            valid = (neighbours != PAD_ITEM) & np.isfinite(similarity)
            z = normalize(np.where(valid, similarity, 0.0), "zscore")
            low = np.where(valid, z, np.inf).min(axis=1, keepdims=True)
            # Shifted so that the list's lowest is 0, the value every item outside the list gets.
            rows.append(np.nonzero(valid)[0])
            columns.append(neighbours[valid])
            values.append(weight * (z - low)[valid])
            used.append(component.name)
        if not used:
            raise NotSupportedError(f"{self.name}: none of its components defines item similarity; add one such "
                                    "as itemknn, ease or content")
        rows, columns = np.concatenate(rows), np.concatenate(columns)
        dense = np.full((len(items), self.n_items_), -np.inf, dtype=np.float32)
        dense[rows, columns] = 0.0
        np.add.at(dense, (rows, columns), np.concatenate(values).astype(np.float32))
        dense[np.arange(len(items)), items] = -np.inf
        return topk(dense, k)

    def explain(self, history: Histories, item: int, top: int = 5) -> Explanation:
        """The explanation of the component adding most to this item's blended score (see _explain_blend)."""
        self._check_fitted(history)
        score = float(self.score(history)[0, self._check_item(item)])
        return self._explain_blend(history, item, top, self._weights(), self.normalization, score)


# ------------------------------------------------------------------------------------------------ switching
class SwitchingHybrid(_Hybrid):
    """Each history is scored by one component, chosen by its length (number of interactions).

    models[i] serves the histories with min_history[i-1] <= length < min_history[i]: with two models and
    min_history=5, histories shorter than 5 get models[0] and the others models[1]. min_history is an int for
    two models or an increasing list of len(models) - 1 ints for a chain (e.g. ["popular", "itemknn", "ease"]
    with [1, 5]: empty histories get the most popular items). Scores are the serving component's own; they
    compare within a row, which is all ranking needs, and explain delegates to that component exactly.

    Defaults: ["popular", "ease"] with min_history 1: the most popular items for an empty history, where every
    item-item model scores all items 0, and EASE for the rest. Switching later is for benchmarks to decide (on
    a MovieLens-100K temporal-user validation split, itemknn for histories under 20 lowered NDCG@20 from 0.2545
    to 0.2440); min_history is in the search space.
    """

    name = "switching"
    default_models = ("popular", "ease")
    search_space = {"min_history": ("int", 1, 50)}

    def __init__(self, models: list[ComponentSpec] | None = None, min_history: int | list[int] = 1):
        self.models = models
        self.min_history = min_history

    def _thresholds(self) -> np.ndarray:
        n = len(self._specs())
        thresholds = [self.min_history] if isinstance(self.min_history, int | np.integer) and \
            not isinstance(self.min_history, bool) else self.min_history
        usage = (f"min_history must be an int (for two models) or an increasing list of {n - 1} ints >= 1 (one "
                 f"per switch between the {n} models), got {self.min_history!r}")
        if not isinstance(thresholds, list | tuple) or len(thresholds) != n - 1:
            raise ConfigError(f"switching: {usage}")
        for t in thresholds:
            Interval(int, 1).check("each min_history", t)
        thresholds = np.asarray(thresholds, dtype=np.int64)
        if (np.diff(thresholds) <= 0).any():
            raise ConfigError(f"switching: {usage}")
        return thresholds

    def _validate_params(self) -> None:
        super()._validate_params()
        if len(self._specs()) < 2:
            raise ConfigError("switching: give at least two models (one per history-length range)")
        self._thresholds()

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        self._fit_components(dataset)
        return self

    def serving(self, histories: Histories) -> np.ndarray:
        """The index of the component that scores each history."""
        return np.searchsorted(self._thresholds(), histories.lengths, side="right")

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        which = self.serving(histories)
        out = np.empty((len(histories), self.n_items_), dtype=np.float32)
        for m, component in enumerate(self._components()):
            rows = np.flatnonzero(which == m)
            if rows.size:
                out[rows] = component.score(histories[rows])
        return out

    def explain(self, history: Histories, item: int, top: int = 5) -> Explanation:
        """The serving component's explanation (its score is the hybrid's)."""
        self._check_fitted(history)
        if len(history) != 1:
            raise DataError(f"explain takes one history, got {len(history)}")
        m = int(self.serving(history)[0])
        explanation = self._components()[m].explain(history, item, top)
        return Explanation(explanation.item, explanation.score, explanation.contributions, explanation.reason,
                           {**explanation.details, "component": self._specs()[m][0]})


# ------------------------------------------------------------------------------------------------- stacking
def log_popularity(dataset: Dataset) -> np.ndarray:
    """log of each item's (smoothed) share of the interactions: comparable between data of different sizes,
    so that a weight learned on the validation part applies to the whole data."""
    counts = np.bincount(dataset.item_index, minlength=dataset.n_items).astype(np.float64)
    return np.log((counts + 1.0) / (counts.sum() + dataset.n_items)).astype(np.float32)


def feature_names(specs: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    """Names of the columns `feature_columns` yields, in order."""
    names = []
    for m, (name, _) in enumerate(specs):
        names += [f"{m}:{name}", f"{m}:{name} x log-length"]
    return names + ["log-length", "log-popularity", "log-popularity x log-length"]


def feature_columns(raw: Sequence[np.ndarray], lengths: np.ndarray, log_length_mean: float,
                    popularity: np.ndarray) -> Iterator[np.ndarray]:
    """The blend's features, each broadcastable to (n_rows, n_items) float32: per component its z-scored
    score and that times the centred log history length (so the weight of a model can change with history
    length), then the centred log history length, the item's log popularity and their product."""
    ell = (np.log1p(lengths) - log_length_mean).astype(np.float32)[:, None]
    for scores in raw:
        z = normalize(scores, "zscore")
        yield z
        yield z * ell
    popularity = popularity[None, :]
    yield ell
    yield popularity
    yield popularity * ell


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """L2-regularized logistic regression by L-BFGS: (coefficients, intercept) on the raw features.

    Features are standardized for the fit (one penalty fits all scales, and L-BFGS converges in a few dozen
    steps); the intercept is not penalised. A column constant up to rounding (e.g. history length when every
    validation history is as long) carries no information: an infinite scale zeroes it and its coefficient.
    """
    mean = X.mean(axis=0)
    std = X.std(axis=0)
    std[std <= 1e-6 * (1.0 + np.abs(mean))] = np.inf
    Z = np.column_stack([np.ones(len(X)), (X - mean) / std])
    penalty = np.full(Z.shape[1], float(l2))
    penalty[0] = 0.0

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        t = Z @ w
        value = np.logaddexp(0.0, t).sum() - y @ t + 0.5 * penalty @ (w * w)
        gradient = Z.T @ (0.5 * (1.0 + np.tanh(0.5 * t)) - y) + penalty * w
        return float(value), gradient

    w = minimize(loss, np.zeros(Z.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 500}).x
    coef = w[1:] / std
    return coef, float(w[0] - coef @ mean)


class StackingHybrid(_Hybrid):
    """A logistic regression over the components' normalized scores, fitted on a validation split.

    fit carves a temporal-user validation split out of the data it is given (each user's newest
    validation_fraction of interactions, users with at least 2): held-out items are what the user did next,
    as at serving time, and every user with two interactions takes part, so short histories — where the best
    mix of models differs most — are represented (a global-temporal cut would keep only users active after
    the cut, mostly long histories). It fits the components on the validation train part and, for every
    validation user, takes the union of each component's top-`candidates` unseen items; every
    (user, candidate) pair gets the features of `feature_columns` and the label "is held out". The L2
    logistic regression of the labels on the features is the blend; then every component is refitted on all
    the data. fit therefore costs about twice the components' fits.

    score: the blend's logit for each history's candidates (the union of the components' top-`candidates`
    unseen items, as in training); every other item keeps the blend's order but sits below the lowest
    candidate, a finite floor. models: None = ["ease", "itemknn"]. regularization: the L2 penalty on
    standardized features. candidate_recall_ is the share of held-out validation items inside the candidate
    pools (the blend cannot rank the others). MovieLens-100K temporal-user validation split, NDCG@20: 0.2605
    with the defaults, against 0.2545 for ease and 0.2575 for the equal-weight blend.
    """

    name = "stacking"
    default_models = ("ease", "itemknn")
    _learned = ("coef_", "intercept_", "feature_names_", "log_length_mean_", "log_popularity_",
                "candidate_recall_", "n_items_")
    parameter_constraints = {
        "candidates": Interval(int, 1),
        "validation_fraction": Interval(float, 0, 0.9, low_open=True),
        "regularization": Interval(float, 0),
    }
    search_space = {
        "candidates": ("int", 20, 500),
        "validation_fraction": ("float", 0.1, 0.4),
        "regularization": ("log", 1e-3, 100.0),
    }

    def __init__(
        self,
        models: list[ComponentSpec] | None = None,
        candidates: int = 100,
        validation_fraction: float = 0.2,
        regularization: float = 1.0,
    ):
        self.models = models
        self.candidates = candidates
        self.validation_fraction = validation_fraction
        self.regularization = regularization

    def _candidate_pool(self, raw: Sequence[np.ndarray], histories: Histories) -> sp.csr_matrix:
        """Binary CSR: per row, the union of every component's top-`candidates` items outside the history."""
        seen = histories.matrix("binary")
        n_items = histories.n_items
        rows, cols = [], []
        for scores in raw:
            masked = np.array(scores, dtype=np.float32, copy=True)
            mask_entries(masked, seen)
            items, _ = topk(masked, min(self.candidates, n_items))
            keep = items != PAD_ITEM
            rows.append(np.nonzero(keep)[0])
            cols.append(items[keep])
        rows_, cols_ = np.concatenate(rows), np.concatenate(cols)
        pool = sp.csr_matrix((np.ones(len(rows_), dtype=np.float32), (rows_, cols_)),
                             shape=(len(histories), n_items))
        pool.sum_duplicates()
        pool.data[:] = 1.0
        return pool

    def _training_rows(self, components: list[Recommender], query: Histories, truth: sp.csr_matrix,
                       popularity: np.ndarray, log_length_mean: float) -> tuple[np.ndarray, np.ndarray, int]:
        """Features and labels of every (validation user, candidate) pair, and how many held-out items the
        candidate pools hold; in blocks of users, so that dense scores stay bounded."""
        X, y, found = [], [], 0
        step = max(1, _BLOCK_FLOATS // max(1, query.n_items * len(components)))
        for start in range(0, len(query), step):
            block = slice(start, min(start + step, len(query)))
            batch = query[block]
            raw = [np.asarray(component.score(batch), dtype=np.float32) for component in components]
            pool = self._candidate_pool(raw, batch)
            rows, cols = np.repeat(np.arange(len(batch)), np.diff(pool.indptr)), pool.indices
            X.append(np.column_stack([np.broadcast_to(column, pool.shape)[rows, cols] for column in
                                      feature_columns(raw, batch.lengths, log_length_mean, popularity)]))
            labels = np.asarray(truth[block][rows, cols]).ravel() != 0
            y.append(labels)
            found += int(labels.sum())
        return np.concatenate(X).astype(np.float64), np.concatenate(y).astype(np.float64), found

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        validation = validation_split(dataset, "temporal-user", test_fraction=self.validation_fraction,
                                      min_interactions=2)
        components = [component.fit(validation.train) for component in new_components(self._specs())]
        log_length_mean = float(np.log1p(validation.query.lengths).mean())
        X, y, found = self._training_rows(components, validation.query, validation.truth,
                                          log_popularity(validation.train), log_length_mean)
        if found == 0:
            raise DataError(f"stacking: none of the {validation.truth.nnz} held-out validation items is among the "
                            f"components' top-{self.candidates} candidates, so there is nothing to learn; raise "
                            "`candidates` or fit on more data")
        self.coef_, self.intercept_ = fit_logistic(X, y, self.regularization)
        self.feature_names_ = feature_names(self._specs())
        self.log_length_mean_ = log_length_mean
        self.candidate_recall_ = found / int(validation.truth.nnz)
        self._fit_components(dataset)
        self.log_popularity_ = log_popularity(dataset)
        return self

    def _logits(self, raw: Sequence[np.ndarray], histories: Histories) -> np.ndarray:
        out = np.full((len(histories), self.n_items_), self.intercept_, dtype=np.float32)
        for c, column in zip(self.coef_, feature_columns(raw, histories.lengths, self.log_length_mean_,
                                                         self.log_popularity_), strict=True):
            out += np.float32(c) * column
        return out

    def score(self, histories: Histories) -> np.ndarray:
        """Logits of the candidates; other items keep their order below the lowest candidate (finite)."""
        self._check_fitted(histories)
        raw = [np.asarray(component.score(histories), dtype=np.float32) for component in self._components()]
        out = self._logits(raw, histories)
        pool = self._candidate_pool(raw, histories).toarray() > 0
        has_pool = pool.any(axis=1)
        lowest = np.where(pool, out, np.inf).min(axis=1)
        highest_other = np.where(pool, -np.inf, out).max(axis=1)
        # Shift each row's non-candidates so that the best of them lands 1 below the worst candidate.
        gap = np.where(has_pool & np.isfinite(highest_other), highest_other - lowest + 1.0, 0.0)
        out -= np.where(pool, 0.0, gap[:, None]).astype(np.float32)
        return out

    def component_weights(self, history_length: int) -> np.ndarray:
        """Each component's weight on its z-scored score for a history of the given length."""
        ell = np.log1p(history_length) - self.log_length_mean_
        return self.coef_[0:2 * len(self._specs()):2] + ell * self.coef_[1:2 * len(self._specs()):2]

    def explain(self, history: Histories, item: int, top: int = 5) -> Explanation:
        """The explanation of the component adding most to this item's logit (see _explain_blend)."""
        self._check_fitted(history)
        score = float(self.score(history)[0, self._check_item(item)])
        weights = self.component_weights(int(history.lengths[0]))
        return self._explain_blend(history, item, top, weights, "zscore", score)
