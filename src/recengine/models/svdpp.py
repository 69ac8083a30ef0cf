"""SVD++: biased matrix factorization with implicit feedback from which items a user rated.

Koren, "Factorization Meets the Neighborhood: a Multifaceted Collaborative Filtering Model" (KDD 2008):
r_ui ~ mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_{j in N(u)} y_j), N(u) = the items in u's history.
"""

from __future__ import annotations

from typing import Self

import numba
import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.models._factors import (
    known_rows,
    random_factors,
    rating_matrix,
    rating_range,
    ridge_fold_in,
    similar_items_cosine,
)
from recengine.models.base import Interval, Recommender


class SVDpp(Recommender):
    """Predicts ratings mu + b_u + b_i + q_i . (p_u + z_u), z_u = |N(u)|^-1/2 sum_{j in N(u)} y_j, clipped to
    the training rating range.

    SGD as in Koren (2008) and Surprise, visiting users in random order and each user's ratings in random
    order. Every rating updates y_j of all of N(u); that update is applied once per user, exactly, through
    a running z_u and a decayed gradient sum, so an epoch costs O(nnz * k) rather than O(sum |N(u)|^2 * k).
    The learning rates are multiplied by lr_decay after every epoch. Scoring computes z from the given history,
    so new items in a known user's history count at once; unknown users get p_u and b_u by ridge regression.

    Defaults were tuned on a random 10% of MovieLens-100K u1.base (RMSE 0.897 there, 0.904 on u1.test).
    """

    name = "svdpp"
    feedback = "ratings"
    parameter_constraints = {
        "factors": Interval(int, 0, 4096),
        "epochs": Interval(int, 0, 100_000),
        "learning_rate": Interval(float, 0, low_open=True),
        "regularization": Interval(float, 0),
        "implicit_learning_rate": Interval(float, 0, low_open=True),
        "implicit_regularization": Interval(float, 0),
        "bias_learning_rate": Interval(float, 0, low_open=True),
        "bias_regularization": Interval(float, 0),
        "lr_decay": Interval(float, 0, 1, low_open=True),
        "init_std": Interval(float, 0),
        "random_state": Interval(int, 0),
    }
    search_space = {
        "factors": ("cat", [50, 100, 200, 300, 500]),
        "init_std": ("log", 1e-3, 0.1),
        "learning_rate": ("log", 3e-3, 0.03),
        "regularization": ("log", 3e-3, 0.3),
        "implicit_learning_rate": ("log", 1e-3, 0.03),
        "implicit_regularization": ("log", 1e-3, 0.3),
        "bias_learning_rate": ("log", 1e-3, 0.03),
        "bias_regularization": ("log", 1e-3, 0.3),
        "lr_decay": ("float", 0.85, 1.0),
    }

    def __init__(
        self,
        factors: int = 300,
        epochs: int = 60,
        learning_rate: float = 0.011,
        regularization: float = 0.025,
        implicit_learning_rate: float = 0.02,
        implicit_regularization: float = 0.006,
        bias_learning_rate: float = 0.005,
        bias_regularization: float = 0.003,
        lr_decay: float = 0.933,
        init_std: float = 0.015,
        random_state: int = 42,
    ):
        self.factors = factors
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.implicit_learning_rate = implicit_learning_rate
        self.implicit_regularization = implicit_regularization
        self.bias_learning_rate = bias_learning_rate
        self.bias_regularization = bias_regularization
        self.lr_decay = lr_decay
        self.init_std = init_std
        self.random_state = random_state

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        ratings = rating_matrix(dataset.histories())
        users = np.repeat(np.arange(dataset.n_users, dtype=np.int64), np.diff(ratings.indptr))
        rng = np.random.default_rng(self.random_state)
        k = self.factors
        self.global_mean_, self.rating_min_, self.rating_max_ = rating_range(ratings)
        P = random_factors(rng, dataset.n_users, k, self.init_std)
        Q = random_factors(rng, dataset.n_items, k, self.init_std)
        Yi = random_factors(rng, dataset.n_items, k, self.init_std)
        bu = np.zeros(dataset.n_users, dtype=np.float32)
        bi = np.zeros(dataset.n_items, dtype=np.float32)
        rates = np.array([self.learning_rate, self.implicit_learning_rate, self.bias_learning_rate])
        regs = np.array([self.regularization, self.implicit_regularization, self.bias_regularization],
                        dtype=np.float32)
        for _ in range(self.epochs):
            # Users in random order; inside each user's CSR slice, that user's ratings in random order.
            user_order = rng.permutation(dataset.n_users)
            entry_order = np.lexsort((rng.random(ratings.nnz), users))
            _sgd_epoch(user_order, entry_order, ratings.indptr, ratings.indices, ratings.data,
                       np.float32(self.global_mean_), P, Q, Yi, bu, bi, rates.astype(np.float32), regs)
            rates *= self.lr_decay
        P[np.diff(ratings.indptr) == 0] = 0.0
        unrated = np.bincount(ratings.indices, minlength=dataset.n_items) == 0
        Q[unrated] = 0.0
        Yi[unrated] = 0.0
        self.user_factors_, self.item_factors_, self.implicit_factors_ = P, Q, Yi
        self.user_biases_, self.item_biases_ = bu, bi
        self.n_users_ = dataset.n_users
        self.n_items_ = dataset.n_items
        return self

    def implicit_part(self, histories: Histories) -> np.ndarray:
        """z = |N|^-1/2 sum_{j in N} y_j per history, N = its distinct items."""
        self._check_fitted(histories)
        seen = histories.matrix("binary")
        norm = 1.0 / np.sqrt(np.maximum(np.diff(seen.indptr), 1))
        return np.asarray(sp.diags(norm.astype(np.float32)) @ seen @ self.implicit_factors_, dtype=np.float32)

    def fold_in(self, histories: Histories, z: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(p_u, b_u) of rating histories by ridge regression, item side and implicit part fixed."""
        self._check_fitted(histories)
        z = self.implicit_part(histories) if z is None else z
        ratings = rating_matrix(histories)
        rows = np.repeat(np.arange(len(histories)), np.diff(ratings.indptr))
        Q = self.item_factors_
        implicit = np.einsum("ek,ek->e", Q[ratings.indices], z[rows])
        residual = ratings.data - self.global_mean_ - self.item_biases_[ratings.indices] - implicit
        return ridge_fold_in(ratings, residual, Q, self.regularization, self.bias_regularization)

    def score(self, histories: Histories) -> np.ndarray:
        """Predicted ratings of every item, clipped to the training rating range."""
        self._check_fitted(histories)
        z = self.implicit_part(histories)
        known = known_rows(histories, self.n_users_)
        P = np.empty_like(z)
        b = np.empty(len(histories), dtype=np.float32)
        if known.any():
            P[known] = self.user_factors_[histories.users[known]]
            b[known] = self.user_biases_[histories.users[known]]
        if not known.all():
            rows = np.flatnonzero(~known)
            P[rows], b[rows] = self.fold_in(histories[rows], z[rows])
        scores = (P + z) @ self.item_factors_.T
        scores += (self.global_mean_ + b)[:, None] + self.item_biases_
        return np.clip(scores, self.rating_min_, self.rating_max_, out=scores)

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        return similar_items_cosine(self.item_factors_, items, k)


@numba.njit(fastmath=True, cache=True, nogil=True)
def _sgd_epoch(user_order, entry_order, indptr, items, ratings, mu, P, Q, Yi, bu, bi, rates, regs):
    """One SVD++ SGD epoch. rates/regs: (factors, implicit factors, biases).

    Per rating of u, Koren's step is y_j <- D y_j + lr_y err q_i / sqrt|N(u)| for every j in N(u), with
    D = 1 - lr_y reg_y. Over u's ratings this composes to y_j <- D^n y_j + g with g the decayed sum of the
    steps, and z_u = sum y_j / sqrt|N(u)| follows z <- D z + lr_y err q_i exactly; so z and g are tracked per
    rating and y is written once per user.
    """
    k = P.shape[1]
    lr, lr_y, lr_b = rates[0], rates[1], rates[2]
    reg, reg_y, reg_b = regs[0], regs[1], regs[2]
    decay = np.float32(1.0) - lr_y * reg_y
    z = np.empty(k, dtype=np.float32)
    g = np.empty(k, dtype=np.float32)
    for u in user_order:
        lo, hi = indptr[u], indptr[u + 1]
        if lo == hi:
            continue
        scale = np.float32(1.0 / np.sqrt(hi - lo))
        for a in range(k):
            z[a] = 0.0
            g[a] = 0.0
        for e in range(lo, hi):
            y = Yi[items[e]]
            for a in range(k):
                z[a] += y[a]
        for a in range(k):
            z[a] *= scale
        total_decay = np.float32(1.0)
        pu = P[u]
        for position in range(lo, hi):
            e = entry_order[position]
            i = items[e]
            qi = Q[i]
            pred = mu + bu[u] + bi[i]
            for a in range(k):
                pred += qi[a] * (pu[a] + z[a])
            err = ratings[e] - pred
            bu[u] += lr_b * (err - reg_b * bu[u])
            bi[i] += lr_b * (err - reg_b * bi[i])
            for a in range(k):
                p_a = pu[a]
                q_a = qi[a]
                pu[a] += lr * (err * q_a - reg * p_a)
                qi[a] += lr * (err * (p_a + z[a]) - reg * q_a)
                g[a] = decay * g[a] + lr_y * err * q_a * scale
                z[a] = decay * z[a] + lr_y * err * q_a
            total_decay *= decay
        for e in range(lo, hi):
            y = Yi[items[e]]
            for a in range(k):
                y[a] = total_decay * y[a] + g[a]
