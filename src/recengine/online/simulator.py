"""A user-behaviour simulator calibrated on real data: the ground truth for bandits, off-policy evaluation, the
feedback loop and reinforcement learning.

Ground truth. `UserSimulator.fit(dataset)` fits implicit ALS on the full data and turns its scores into click
probabilities with a logistic link calibrated on the same data: the observed (user, item) pairs against a uniform
sample of unobserved ones, the intercept corrected for the sampling of negatives and then set so that the mean
probability over all pairs is the data's density. ``appeal(u, i) = sigmoid(intercept + slope * x_u . y_i)`` is
then the model's estimate of the chance the user takes the item at all. Repeated exposure lowers it (satiation):
each of the user's latest ``memory`` shown items that is this item multiplies its appeal by ``1 - satiation``; a
user's memory starts with their latest items in the data.

Clicks. ``click_model="position"``: the item at position j is clicked with probability
``examination[j] * appeal``, independently of the rest of the slate. ``"cascade"``: the user reads from the top
and clicks the first item that appeals (probability ``appeal``), reading no further.

Time. A run is days of sessions; each day ``sessions`` users (drawn without replacement, in proportion to their
activity in the data) each make up to ``session_length`` requests; a session ends early after a slate without a
click with probability ``leave_probability``. The items of the data that appeared last (``new_items``, a share)
are released evenly over days 1 to ``release_days``, the rest are there from day 0; showing an unreleased item is an
error.

Policies are handed in as a ``recommend(users, k)`` callable returning ``(n, k)`` item indices, or those and their
propensities; the simulator never imports the service, so the same run drives a Python model
(`RecommenderPolicy`) or an HTTP client. Every step of all active sessions is one batched call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import ConfigError, DataError, NotFittedError
from recengine.models.base import Interval, Options
from recengine.models.ials import ImplicitALS
from recengine.models.topk import PAD_ITEM, topk
from recengine.online.ope import BanditLog

__all__ = ["Impressions", "RecommendFn", "RecommenderPolicy", "Scorer", "UserSimulator", "exposure_gini",
           "impressions_dataset"]

#: A policy: (user indices, slate size) -> items (n, k), or (items, propensities); -1 pads a short slate.
RecommendFn = Callable[[np.ndarray, int], "np.ndarray | tuple[np.ndarray, np.ndarray]"]
#: Unobserved pairs sampled per observed pair to calibrate the link.
_NEGATIVES_PER_POSITIVE = 4


@dataclass(frozen=True)
class Impressions:
    """What was shown and what happened, one row per shown slot (compact dtypes: a million slates fit)."""

    request: np.ndarray      # int64, one id per slate shown
    day: np.ndarray          # int32
    step: np.ndarray         # int32, the request's step within its session (0-based)
    session: np.ndarray      # int64, one id per session
    user: np.ndarray         # int32
    position: np.ndarray     # int8, 1-based
    item: np.ndarray         # int32
    propensity: np.ndarray   # float32, the policy's own (NaN when it gave none)
    click: np.ndarray        # bool

    def __len__(self) -> int:
        return len(self.item)

    @classmethod
    def concat(cls, parts: list[Impressions]) -> Impressions:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) if parts else
                     np.zeros(0, dtype=np.int64) for f in fields(cls)))

    def to_bandit_log(self) -> BanditLog:
        """The logged-feedback format of recengine.online.ope (round = request, reward = click)."""
        if np.isnan(self.propensity).any():
            raise DataError("the policy gave no propensities, so its log cannot be evaluated off-policy")
        return BanditLog(self.request.astype(np.int64), self.position.astype(np.int64),
                         self.item.astype(str).astype(object), self.click.astype(np.float64),
                         self.propensity.astype(np.float64), np.zeros((len(self), 0)), ())

    def clicks_per_session(self) -> np.ndarray:
        """Clicks of every session in the log, in order of session id."""
        _, codes = np.unique(self.session, return_inverse=True)
        return np.bincount(codes, weights=self.click.astype(np.float64))


class UserSimulator:
    """Simulated users whose tastes come from real data (see the module docstring).

    factors, iterations: the ground-truth iALS model. examination: the chance each position is looked at
    (position model; default 1 / log2(position + 1), the DCG discount) — give at least as many as the largest
    slate. satiation: the appeal lost per recent exposure of the same item; memory: how many recent exposures a
    user remembers. new_items: the share of items (those that appeared last in the data) released one by one over
    days 1 to release_days. seed: every random choice.
    """

    parameter_constraints = {
        "factors": Interval(int, 1, 1024),
        "iterations": Interval(int, 1, 1000),
        "click_model": Options(("position", "cascade")),
        "satiation": Interval(float, 0, 1),
        "memory": Interval(int, 1, 100_000),
        "new_items": Interval(float, 0, 0.99),
        "release_days": Interval(int, 1),
        "seed": Interval(int, 0),
    }

    def __init__(self, *, factors: int = 64, iterations: int = 15, click_model: str = "position",
                 examination: tuple[float, ...] | None = None, satiation: float = 0.3, memory: int = 100,
                 new_items: float = 0.1, release_days: int = 56, seed: int = 0) -> None:
        self.factors = factors
        self.iterations = iterations
        self.click_model = click_model
        self.examination = examination
        self.satiation = satiation
        self.memory = memory
        self.new_items = new_items
        self.release_days = release_days
        self.seed = seed

    # ------------------------------------------------------------------------------------------- fitting
    def fit(self, dataset: Dataset) -> Self:
        """Fit the ground truth on the full dataset, calibrate the link and reset the state (day 0)."""
        for name, constraint in self.parameter_constraints.items():
            constraint.check(name, getattr(self, name))
        if self.examination is not None:
            exam = np.asarray(self.examination, dtype=np.float64)
            if exam.ndim != 1 or not len(exam) or not ((exam > 0) & (exam <= 1)).all():
                raise ConfigError(f"examination must be probabilities in (0, 1], one per position; got "
                                  f"{self.examination!r}")
        truth = ImplicitALS(factors=self.factors, iterations=self.iterations, random_state=self.seed).fit(dataset)
        self.user_factors_ = truth.user_factors_.astype(np.float32)
        self.item_factors_ = truth.item_factors_.astype(np.float32)
        self.n_users_, self.n_items_ = dataset.n_users, dataset.n_items
        self.intercept_, self.slope_ = self._calibrate(dataset)
        activity = np.diff(dataset.indptr).astype(np.float64)
        self.activity_ = activity / activity.sum()
        # Release order: the items that appeared last in the data arrive during the run.
        first_seen = np.full(dataset.n_items, np.iinfo(np.int64).max)
        np.minimum.at(first_seen, dataset.item_index, dataset.timestamp)
        n_new = int(round(self.new_items * dataset.n_items))
        self.new_item_order_ = np.argsort(first_seen, kind="stable")[dataset.n_items - n_new:].astype(np.int32)
        self._initial_memory = self._memory_from(dataset)
        self.reset()
        return self

    def _calibrate(self, dataset: Dataset) -> tuple[float, float]:
        """Logistic regression of "observed" on the ground-truth score: all observed pairs against
        _NEGATIVES_PER_POSITIVE uniformly drawn pairs each, the intercept moved by log(sampling rate) so that it
        describes the full matrix (King & Zeng's prior correction). Newton's method on two parameters."""
        rng = np.random.default_rng(self.seed)
        observed = dataset.matrix("binary").tocsr()
        users_pos, items_pos = observed.nonzero()
        n_neg = _NEGATIVES_PER_POSITIVE * len(users_pos)
        users_neg = rng.integers(0, dataset.n_users, n_neg)
        items_neg = rng.integers(0, dataset.n_items, n_neg)
        label_neg = np.asarray(observed[users_neg, items_neg]).ravel() > 0  # a drawn pair may be observed
        users = np.concatenate([users_pos, users_neg])
        items = np.concatenate([items_pos, items_neg])
        label = np.concatenate([np.ones(len(users_pos)), label_neg.astype(np.float64)])
        # A drawn observed pair counts with its sampling weight, so that positives are not double counted.
        weight = np.concatenate([np.full(len(users_pos), 1.0), np.where(label_neg, 0.0, 1.0)])
        score = self._scores(users, items).astype(np.float64)
        design = np.column_stack([np.ones_like(score), score])
        theta = np.zeros(2)
        for _ in range(50):
            p = 1 / (1 + np.exp(-(design @ theta)))
            gradient = design.T @ (weight * (label - p))
            hessian = (design * (weight * p * (1 - p))[:, None]).T @ design
            step = np.linalg.solve(hessian + 1e-9 * np.eye(2), gradient)
            theta += step
            if np.abs(step).max() < 1e-10:
                break
        # The prior correction is exact only for a well-specified model: finish by moving the intercept until
        # the mean probability over uniformly drawn pairs is the data's density.
        uniform = score[len(users_pos):]
        density = len(users_pos) / (dataset.n_users * dataset.n_items)
        negatives_total = dataset.n_users * dataset.n_items - len(users_pos)
        intercept = theta[0] + np.log(weight[len(users_pos):].sum() / negatives_total)
        for _ in range(50):
            p = 1 / (1 + np.exp(-(intercept + theta[1] * uniform)))
            step = (p.mean() - density) / (p * (1 - p)).mean()
            intercept -= step
            if abs(step) < 1e-10:
                break
        return float(intercept), float(theta[1])

    def _memory_from(self, dataset: Dataset) -> np.ndarray:
        """(n_users, memory) ring buffers of recent exposures, filled with each user's latest data items."""
        memory = np.full((dataset.n_users, self.memory), PAD_ITEM, dtype=np.int32)
        lengths = np.diff(dataset.indptr)
        take = np.minimum(lengths, self.memory)
        rows = np.repeat(np.arange(dataset.n_users), take)
        offset = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)
        memory[rows, offset] = dataset.item_index[np.repeat(dataset.indptr[1:] - take, take) + offset]
        return memory

    def reset(self) -> None:
        """Back to day 0: initial memories, new items unreleased, the random generator re-seeded."""
        self._check_fitted()
        self.memory_ = self._initial_memory.copy()
        self.cursor_ = np.sum(self.memory_ != PAD_ITEM, axis=1).astype(np.int64) % self.memory
        self.released_ = np.ones(self.n_items_, dtype=bool)
        self.released_[self.new_item_order_] = False
        self.day_ = 0
        self._requests = 0
        self._sessions = 0
        self._rng = np.random.default_rng(self.seed)

    def _check_fitted(self) -> None:
        if not hasattr(self, "user_factors_"):
            raise NotFittedError("UserSimulator is not fitted: call fit(dataset) first")

    # ------------------------------------------------------------------------------------------ the truth
    def _scores(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("...f,...f->...", self.user_factors_[users], self.item_factors_[items])

    def appeal(self, users: np.ndarray, items: np.ndarray, *, satiated: bool = True) -> np.ndarray:
        """The chance each user takes each item (users broadcast against items, e.g. (n, 1) and (n, k));
        with satiated, lowered by the user's recent exposures of it. Padding (-1) has appeal 0."""
        self._check_fitted()
        users, items = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        real = items != PAD_ITEM
        safe = np.where(real, items, 0)
        p = 1 / (1 + np.exp(-(self.intercept_ + self.slope_ * self._scores(users, safe))))
        if satiated and self.satiation > 0:
            seen = (self.memory_[users][..., :] == safe[..., None]).sum(axis=-1)
            p = p * (1 - self.satiation) ** seen
        return np.where(real, p, 0.0)

    def examination_probabilities(self, k: int) -> np.ndarray:
        if self.examination is None:
            return 1 / np.log2(np.arange(2, k + 2))
        exam = np.asarray(self.examination, dtype=np.float64)
        if len(exam) < k:
            raise ConfigError(f"examination gives {len(exam)} positions but the slate has {k}")
        return exam[:k]

    def click_probabilities(self, users: np.ndarray, slates: np.ndarray) -> np.ndarray:
        """(n, k) marginal click probability of each slot, given the current satiation."""
        a = self.appeal(np.asarray(users)[:, None], slates)
        if self.click_model == "position":
            return self.examination_probabilities(slates.shape[1]) * a
        reached = np.cumprod(np.hstack([np.ones((len(a), 1)), 1 - a[:, :-1]]), axis=1)
        return reached * a

    def true_scores(self, users: np.ndarray) -> np.ndarray:
        """(n, n_items) unsatiated appeal of every item, unreleased items -inf (for ground-truth rankings)."""
        self._check_fitted()
        logits = self.intercept_ + self.slope_ * (self.user_factors_[users] @ self.item_factors_.T)
        out = 1 / (1 + np.exp(-logits))
        out[:, ~self.released_] = -np.inf
        return out

    def ndcg(self, users: np.ndarray, slates: np.ndarray, exclude: sp.csr_matrix | None = None) -> np.ndarray:
        """Per user, NDCG of the slate with the true (unsatiated) appeal as graded gain, against the ideal
        slate of released items; ``exclude`` (one row per user) removes items from the ideal (e.g. the seen)."""
        scores = self.true_scores(users)
        if exclude is not None:
            rows, cols = exclude.nonzero()
            scores[rows, cols] = -np.inf
        k = slates.shape[1]
        discount = 1 / np.log2(np.arange(2, k + 2))
        _, ideal = topk(scores.astype(np.float32), k)
        gains = np.where(slates != PAD_ITEM, np.take_along_axis(scores, np.maximum(slates, 0), axis=1), 0.0)
        gains = np.maximum(gains, 0.0)  # an unreleased or excluded item gains nothing
        return (gains @ discount) / (np.maximum(ideal, 0.0) @ discount)

    # ---------------------------------------------------------------------------------------------- runs
    def _release(self) -> np.ndarray:
        """Release the new items due by today (spread evenly over days 1..release_days); returns them."""
        due = int(np.ceil(len(self.new_item_order_) * min(self.day_, self.release_days) / self.release_days))
        candidates = self.new_item_order_[:due]
        fresh = candidates[~self.released_[candidates]]
        self.released_[fresh] = True
        return fresh

    def _check_slates(self, result: np.ndarray | tuple[np.ndarray, np.ndarray], n: int,
                      k: int) -> tuple[np.ndarray, np.ndarray]:
        items, propensity = result if isinstance(result, tuple) else (result, None)
        items = np.asarray(items)
        if items.shape != (n, k) or not np.issubdtype(items.dtype, np.integer):
            raise DataError(f"recommend must return ({n}, {k}) integer item indices, got {items.shape} "
                            f"{items.dtype}")
        if ((items < PAD_ITEM) | (items >= self.n_items_)).any():
            raise DataError(f"recommend returned an item outside [0, {self.n_items_}) (and -1 for padding)")
        real = items != PAD_ITEM
        if (real & ~self.released_[np.maximum(items, 0)]).any():
            bad = items[real & ~self.released_[np.maximum(items, 0)]][0]
            raise DataError(f"recommend returned item {bad}, which is not released on day {self.day_}")
        ordered = np.sort(np.where(real, items, -1 - np.arange(k)), axis=1)
        if (ordered[:, 1:] == ordered[:, :-1]).any():
            raise DataError("recommend returned a slate with a repeated item")
        if propensity is None:
            return items, np.full((n, k), np.nan, dtype=np.float32)
        propensity = np.asarray(propensity, dtype=np.float32)
        if propensity.shape != (n, k):
            raise DataError(f"recommend's propensities must be ({n}, {k}), got {propensity.shape}")
        return items, propensity

    def _clicks(self, users: np.ndarray, slates: np.ndarray) -> np.ndarray:
        u = self._rng.random(slates.shape)
        if self.click_model == "position":
            return u < self.click_probabilities(users, slates)
        appeals = u < self.appeal(users[:, None], slates)
        first = np.argmax(appeals, axis=1)
        clicks = np.zeros_like(appeals)
        hit = appeals.any(axis=1)
        clicks[np.flatnonzero(hit), first[hit]] = True
        return clicks

    def _remember(self, users: np.ndarray, slates: np.ndarray) -> None:
        k = slates.shape[1]
        slots = (self.cursor_[users][:, None] + np.arange(k)) % self.memory
        keep = slates != PAD_ITEM
        self.memory_[np.broadcast_to(users[:, None], slots.shape)[keep], slots[keep]] = slates[keep]
        self.cursor_[users] = (self.cursor_[users] + keep.sum(axis=1)) % self.memory

    def run(self, recommend: RecommendFn, *, days: int = 1, sessions: int = 100, session_length: int = 10,
            k: int = 10, leave_probability: float = 0.0,
            on_release: Callable[[np.ndarray], None] | None = None,
            observe: Callable[[Impressions], None] | None = None, keep_log: bool = True) -> Impressions:
        """Simulate `days` more days (continuing from the current state; `reset` starts over).

        on_release(items) is called with the items available at the start (first call of a fresh simulator) and
        with each day's new items; observe(step) after every step with its impressions (to post clicks to a
        service or update a policy). Returns the impressions of all steps (empty with keep_log=False).
        """
        self._check_fitted()
        for name, value, low in (("days", days, 1), ("sessions", sessions, 1), ("session_length", session_length, 1),
                                 ("k", k, 1)):
            Interval(int, low).check(name, value)
        Interval(float, 0, 1).check("leave_probability", leave_probability)
        if sessions > self.n_users_:
            raise ConfigError(f"sessions ({sessions}) is more than the {self.n_users_} users: a user has one "
                              f"session at a time")
        self.examination_probabilities(k)  # a slate longer than the examination fails now, not mid-run
        parts: list[Impressions] = []
        if self.day_ == 0 and on_release is not None:
            on_release(np.flatnonzero(self.released_).astype(np.int32))
        for _ in range(days):
            fresh = self._release()
            if len(fresh) and on_release is not None:
                on_release(fresh)
            users = self._rng.choice(self.n_users_, size=sessions, replace=False, p=self.activity_).astype(np.int32)
            session_ids = self._sessions + np.arange(sessions)
            self._sessions += sessions
            active = np.ones(sessions, dtype=bool)
            for step in range(session_length):
                rows = np.flatnonzero(active)
                if not len(rows):
                    break
                step_users = users[rows]
                slates, propensity = self._check_slates(recommend(step_users, k), len(rows), k)
                clicks = self._clicks(step_users, slates)
                self._remember(step_users, slates)
                shown = slates != PAD_ITEM
                request = self._requests + np.arange(len(rows))
                self._requests += len(rows)
                n_shown = shown.sum(axis=1)
                impressions = Impressions(
                    np.repeat(request, n_shown), np.full(int(n_shown.sum()), self.day_, dtype=np.int32),
                    np.full(int(n_shown.sum()), step, dtype=np.int32), np.repeat(session_ids[rows], n_shown),
                    np.repeat(step_users, n_shown),
                    np.broadcast_to(np.arange(1, k + 1, dtype=np.int8), slates.shape)[shown],
                    slates[shown].astype(np.int32), propensity[shown], clicks[shown])
                if observe is not None:
                    observe(impressions)
                if keep_log:
                    parts.append(impressions)
                if leave_probability > 0:
                    bored = ~clicks.any(axis=1) & (self._rng.random(len(rows)) < leave_probability)
                    active[rows[bored]] = False
            self.day_ += 1
        return Impressions.concat(parts)


def exposure_gini(items: np.ndarray, n_items: int) -> float:
    """Gini coefficient of how often each of n_items items was shown (0: evenly, towards 1: a few items)."""
    counts = np.sort(np.bincount(items, minlength=n_items).astype(np.float64))
    if counts.sum() == 0:
        return 0.0
    ranks = np.arange(1, n_items + 1)
    return float(((2 * ranks - n_items - 1) @ counts) / (n_items * counts.sum()))


def impressions_dataset(base: Dataset, impressions: Impressions) -> Dataset:
    """The base data plus every clicked item as an interaction (timestamps after the base's, in log order),
    over the base's user and item vocabularies: what a model retrained on its own logged clicks learns from."""
    clicked = impressions.click
    base_events = base.to_frame()[["user", "item", "timestamp"]]
    later = int(base.timestamp.max()) + 1 if base.n_interactions else 0
    events = pd.DataFrame({"user": np.asarray(base.users.ids)[impressions.user[clicked]],
                           "item": np.asarray(base.items.ids)[impressions.item[clicked]],
                           "timestamp": later + np.arange(int(clicked.sum()))})
    return Dataset.from_events(pd.concat([base_events, events], ignore_index=True), users=base.users,
                               items=base.items, name=f"{base.name}+clicks")


class Scorer(Protocol):
    """What RecommenderPolicy needs of a model: a Recommender, or anything scoring histories like one."""

    def score(self, histories: Histories) -> np.ndarray: ...


class RecommenderPolicy:
    """A fitted Recommender (any Scorer) as a simulator policy, keeping live histories (its training data plus the
    clicks it observes) and recommending only released items.

    exploration: "greedy" (top-k), "epsilon" (each slot is, with probability epsilon, a uniformly drawn released
    item not yet in the slate — propensity: the probability of that item at that position) or "softmax" (a
    Plackett-Luce ranking over softmax(scores / temperature) — propensity: the chance one softmax draw picks the
    item, what the top-K correction of off-policy REINFORCE needs).
    """

    def __init__(self, model: Scorer, histories: Histories, *, exploration: str = "greedy",
                 epsilon: float = 0.1, temperature: float = 1.0, seed: int = 0) -> None:
        Options(("greedy", "epsilon", "softmax")).check("exploration", exploration)
        Interval(float, 0, 1).check("epsilon", epsilon)
        Interval(float, 0, low_open=True).check("temperature", temperature)
        self.model = model
        self.exploration = exploration
        self.epsilon = epsilon
        self.temperature = temperature
        self._rng = np.random.default_rng(seed)
        self._base = histories
        self._clicks: list[tuple[np.ndarray, np.ndarray]] = []
        self._histories: Histories | None = histories
        self.released = np.zeros(histories.n_items, dtype=bool)

    def release(self, items: np.ndarray) -> None:
        self.released[items] = True

    def observe(self, impressions: Impressions) -> None:
        if impressions.click.any():
            self._clicks.append((impressions.user[impressions.click], impressions.item[impressions.click]))
            self._histories = None

    def histories(self, users: np.ndarray) -> Histories:
        """The live histories of the given users (unknown to the model as such: users -1, folded in)."""
        if self._histories is None:
            users_new = np.concatenate([u for u, _ in self._clicks])
            items_new = np.concatenate([i for _, i in self._clicks])
            base_users = np.repeat(np.arange(len(self._base)), self._base.lengths)
            all_users = np.concatenate([base_users, users_new])
            order = np.argsort(all_users, kind="stable")  # stable: base first, then clicks in log order
            items = np.concatenate([self._base.items, items_new])[order]
            counts = np.bincount(all_users, minlength=len(self._base))
            self._histories = Histories(np.concatenate([[0], np.cumsum(counts)]), items.astype(np.int32),
                                        self._base.n_items, np.ones(len(items), np.float32),
                                        np.arange(len(items), dtype=np.int64))
        return self._histories[users].with_users(None)

    def __call__(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        histories = self.histories(users)
        scores = np.asarray(self.model.score(histories), dtype=np.float64)
        scores[:, ~self.released] = -np.inf
        scores[histories.row_of_entry, histories.items] = -np.inf
        n_available = (scores > -np.inf).sum(axis=1)
        if (n_available < k).any():
            raise DataError(f"a user has only {int(n_available.min())} unseen released items for a slate of {k}")
        if self.exploration == "softmax":
            logits = scores / self.temperature
            logits -= logits.max(axis=1, keepdims=True)
            gumbel = logits - np.log(-np.log(self._rng.random(logits.shape)))
            items, _ = topk(gumbel.astype(np.float32), k)
            probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            return items, np.take_along_axis(probs, items.astype(np.int64), axis=1)
        items, _ = topk(scores.astype(np.float32), k)
        if self.exploration == "greedy":
            return items, np.ones(items.shape)
        return self._epsilon(items, scores > -np.inf, n_available)

    def _epsilon(self, greedy: np.ndarray, allowed: np.ndarray,
                 n_available: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Replace each slot, with probability epsilon, by the item in the same column of a uniformly random
        ordering of the allowed items outside the greedy slate (so slates stay distinct). Each column of that
        ordering is uniform over those n_available - k items, so the propensities are exact: 1 - epsilon for the
        greedy item, epsilon / (n_available - k) for any other."""
        n, k = greedy.shape
        if (n_available <= k).any():
            raise DataError(f"epsilon exploration needs more than k = {k} unseen released items per user")
        noise = np.where(allowed, self._rng.random(allowed.shape), -1.0)
        noise[np.arange(n)[:, None], greedy] = -1.0
        drawn, _ = topk(noise.astype(np.float32), k)
        explore = self._rng.random((n, k)) < self.epsilon
        items = np.where(explore, drawn, greedy)
        return items, np.where(explore, self.epsilon / (n_available[:, None] - k), 1 - self.epsilon)
