"""iALS: implicit-feedback matrix factorization by alternating least squares.

Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets" (ICDM 2008); the conjugate-gradient
update of Takacs, Pilaszy & Tikk (RecSys 2011) as in the `implicit` library; frequency-scaled regularization from
Rendle et al., "Revisiting the Performance of iALS on Item Recommendation Benchmarks" (RecSys 2022).
"""

from __future__ import annotations

import time
from typing import Self

import numba
import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import DataError
from recengine.models._factors import (
    als_cg_update,
    als_cholesky_update,
    balanced_chunks,
    similar_items_cosine,
    solve_rows,
    user_vectors,
)
from recengine.models.base import Explanation, Interval, Options, Recommender

# Chunks per thread for the balanced prange: enough that an unlucky chunk cannot stall a core for long.
_CHUNKS = 64


class ImplicitALS(Recommender):
    """Weighted matrix factorization of the binary preference matrix, with confidence-weighted observations.

    Every (user, item) pair is a squared-error term on preference p (1 if the user interacted, else 0) with
    confidence c = 1 + alpha * w ("linear") or 1 + alpha * log(1 + w / epsilon) ("log"), w being the summed
    interaction weight. The L2 penalty of a user is regularization * W_u ** reg_exponent, W_u = n_items +
    sum(c - 1) being the total weight of the user's loss terms (items alike): reg_exponent 0 is the classic
    constant penalty, 1 the frequency scaling of iALS revisited (then regularization should be ~1e-4..1e-2).

    solver: "cg" (`cg_steps` conjugate-gradient steps per half-iteration, warm-started) or "cholesky" (exact).
    Unknown users are folded in by one exact least-squares solve against the item factors.
    """

    name = "ials"
    parameter_constraints = {
        "factors": Interval(int, 1, 4096),
        "regularization": Interval(float, 0, low_open=False),
        "alpha": Interval(float, 0),
        "confidence": Options(("linear", "log")),
        "epsilon": Interval(float, 0, low_open=True),
        "reg_exponent": Interval(float, 0, 2),
        "iterations": Interval(int, 0, 10_000),
        "solver": Options(("cg", "cholesky")),
        "cg_steps": Interval(int, 1, 100),
        "init_std": Interval(float, 0),
        "random_state": Interval(int, 0),
    }
    search_space = {
        "factors": ("cat", [32, 64, 128, 256]),
        "regularization": ("log", 1e-3, 1e3),
        "alpha": ("log", 0.1, 100.0),
        "confidence": ("cat", ["linear", "log"]),
        "iterations": ("int", 5, 30),
    }

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 10.0,
        alpha: float = 5.0,
        confidence: str = "linear",
        epsilon: float = 1.0,
        reg_exponent: float = 0.0,
        iterations: int = 15,
        solver: str = "cg",
        cg_steps: int = 3,
        init_std: float = 0.01,
        random_state: int = 42,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.confidence = confidence
        self.epsilon = epsilon
        self.reg_exponent = reg_exponent
        self.iterations = iterations
        self.solver = solver
        self.cg_steps = cg_steps
        self.init_std = init_std
        self.random_state = random_state

    # ------------------------------------------------------------------------------------------- fitting
    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        user_items = self._confidence_matrix(dataset.matrix("weight"))
        item_users = user_items.T.tocsr()
        rng = np.random.default_rng(self.random_state)
        k = self.factors
        X = (rng.standard_normal((dataset.n_users, k)) * self.init_std).astype(np.float32)
        Y = (rng.standard_normal((dataset.n_items, k)) * self.init_std).astype(np.float32)
        user_reg = self._row_regularization(user_items, dataset.n_items)
        item_reg = self._row_regularization(item_users, dataset.n_users)
        # Cost model of a row for load balancing: the k^2 Gram product plus k per entry, (steps + 1) times.
        user_chunks = balanced_chunks(user_items.indptr, k, 2.0, _CHUNKS * numba.get_num_threads())
        item_chunks = balanced_chunks(item_users.indptr, k, 2.0, _CHUNKS * numba.get_num_threads())
        self._gram_cache = None
        self._iteration_seconds = []
        for _ in range(self.iterations):
            start = time.perf_counter()
            self._half_step(user_items, Y, user_reg, X, user_chunks)
            self._half_step(item_users, X, item_reg, Y, item_chunks)
            self._iteration_seconds.append(time.perf_counter() - start)
        self.user_factors_ = X
        self.item_factors_ = Y
        self.n_users_ = dataset.n_users
        self.n_items_ = dataset.n_items
        return self

    def _half_step(self, m: sp.csr_matrix, Y: np.ndarray, reg: np.ndarray, X: np.ndarray,
                   chunks: np.ndarray) -> None:
        """Solve every row of X given the fixed factors Y of the other side."""
        YtY = (Y.T.astype(np.float64) @ Y).astype(np.float32)
        if self.solver == "cg":
            als_cg_update(m.indptr, m.indices, m.data, Y, YtY, reg, X, self.cg_steps, chunks)
        else:
            als_cholesky_update(m.indptr, m.indices, m.data, Y, YtY, reg, X, chunks)

    def _confidence_matrix(self, weights: sp.csr_matrix) -> sp.csr_matrix:
        """The same sparsity as weights, with the confidence 1 + alpha * f(w) of each stored pair."""
        m = sp.csr_matrix(weights, dtype=np.float32, copy=True)
        m.sum_duplicates()
        if (m.data < 0).any():
            raise DataError(f"{self.name} needs non-negative interaction weights; found {m.data.min()}")
        w = np.log1p(m.data / self.epsilon) if self.confidence == "log" else m.data
        m.data = (1.0 + self.alpha * w).astype(np.float32)
        m.indices = m.indices.astype(np.int32)
        m.indptr = m.indptr.astype(np.int64)
        return m

    def _row_regularization(self, confidence: sp.csr_matrix, n_other: int) -> np.ndarray:
        """regularization * (n_other + sum(c - 1))^reg_exponent per row."""
        if self.reg_exponent == 0:
            return np.full(confidence.shape[0], self.regularization, dtype=np.float32)
        extra = np.add.reduceat(np.r_[confidence.data - 1.0, 0.0], confidence.indptr[:-1]) \
            if confidence.nnz else np.zeros(confidence.shape[0])
        extra = np.where(np.diff(confidence.indptr) > 0, extra, 0.0)
        return (self.regularization * (n_other + extra) ** self.reg_exponent).astype(np.float32)

    # ------------------------------------------------------------------------------------------- scoring
    def fold_in(self, histories: Histories) -> np.ndarray:
        """User factors of histories by one exact least-squares solve each, item factors fixed."""
        self._check_fitted(histories)
        conf = self._confidence_matrix(histories.matrix("weight"))
        reg = self._row_regularization(conf, self.n_items_)
        Y = self.item_factors_
        out = np.empty((len(histories), Y.shape[1]), dtype=np.float64)
        solve_rows(conf.indptr, conf.indices, (conf.data - 1.0).astype(np.float64), conf.data.astype(np.float64),
                   Y, self._gram(), reg.astype(np.float64), np.ones(Y.shape[1]), out)
        return out.astype(np.float32)

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        users = user_vectors(histories, self.user_factors_, self.fold_in)
        return users @ self.item_factors_.T

    def _gram(self) -> np.ndarray:
        if getattr(self, "_gram_cache", None) is None:
            Y = self.item_factors_.astype(np.float64)
            self._gram_cache = Y.T @ Y
        return self._gram_cache

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        self._check_fitted()
        return similar_items_cosine(self.item_factors_, items, k)

    def explain(self, history: Histories, item: int, top: int = 5) -> Explanation:
        """Hu et al.'s explanation: the folded-in score is linear in the history, score = sum_j s_ij c_j.

        With W = (Y^T Y + reg I + Y_h^T (C_h - I) Y_h)^-1, s_ij = y_i^T W y_j is the similarity of item i to
        history item j as seen by this user and c_j its confidence; the contributions sum to the score.
        """
        self._check_fitted(history)
        if len(history) != 1:
            raise DataError(f"explain takes one history, got {len(history)}")
        if not 0 <= item < self.n_items_:
            raise DataError(f"item {item} is outside [0, {self.n_items_})")
        conf = self._confidence_matrix(history.matrix("weight"))
        reg = float(self._row_regularization(conf, self.n_items_)[0])
        Y = self.item_factors_.astype(np.float64)
        Yh = Y[conf.indices]
        c = conf.data.astype(np.float64)
        A = self._gram() + reg * np.eye(Y.shape[1]) + (Yh.T * (c - 1.0)) @ Yh
        similarity = Yh @ np.linalg.solve(A, Y[item])
        contributions = similarity * c
        order = np.argsort(-contributions, kind="stable")[:top]
        return Explanation(int(item), float(contributions.sum()),
                           [(int(conf.indices[j]), float(contributions[j])) for j in order])
