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
from threadpoolctl import threadpool_limits

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import DataError
from recengine.models._factors import (
    PREFETCH_DISTANCE,
    balanced_chunks,
    cholesky_solve,
    prefetch_row,
    random_factors,
    similar_items_cosine,
    solve_rows,
    user_vectors,
)
from recengine.models.base import Explanation, Interval, Options, Recommender
from recengine.models.topk import DEVICE_MIN_ROWS, DEVICES, accelerator

#: Work chunks per thread: enough that an unlucky chunk cannot stall a core for long.
_CHUNKS_PER_THREAD = 64
#: Bytes of solver state per thread that should stay in its L2 cache when rows are solved by streaming.
_L2_BYTES = 1 << 20


class ImplicitALS(Recommender):
    """Weighted matrix factorization of the binary preference matrix, with confidence-weighted observations.

    Every (user, item) pair is a squared-error term on preference p (1 if the user interacted, else 0) with
    confidence c = 1 + alpha * w ("linear") or 1 + alpha * log(1 + w / epsilon) ("log"), w being the summed
    interaction weight. The L2 penalty of a user is regularization * W_u ** reg_exponent, W_u = n_items +
    sum(c - 1) being the total weight of the user's loss terms (items alike): reg_exponent 0 is the classic
    constant penalty, 1 the frequency scaling of iALS revisited (then regularization should be ~1e-4..1e-2).

    solver: "cg" (`cg_steps` conjugate-gradient steps per half-iteration, warm-started) or "cholesky" (exact).
    Unknown users are folded in by one exact least-squares solve against the item factors.

    device: "cpu" (the numba kernels), "cuda" (PyTorch on the GPU: the same steps, factors equal to rounding)
    or "auto" (the GPU when torch sees one, else the CPU path). On a GPU, fit and the ranking of large batches
    (evaluation) run there; the factors are NumPy arrays either way, so the artifact serves on any machine.

    Defaults: frequency-scaled regularization, which carries over between data sizes; tuned by NDCG@20 on a
    temporal-user validation split of MovieLens latest-small and checked on MovieLens-100K.
    """

    name = "ials"
    parameter_constraints = {
        "factors": Interval(int, 1, 4096),
        "regularization": Interval(float, 0),
        "alpha": Interval(float, 0),
        "confidence": Options(("linear", "log")),
        "epsilon": Interval(float, 0, low_open=True),
        "reg_exponent": Interval(float, 0, 2),
        "iterations": Interval(int, 0, 10_000),
        "solver": Options(("cg", "cholesky")),
        "cg_steps": Interval(int, 1, 100),
        "init_std": Interval(float, 0),
        "random_state": Interval(int, 0),
        "device": Options(DEVICES),
    }
    search_space = {
        "factors": ("cat", [32, 64, 128, 256]),
        "regularization": ("log", 1e-4, 0.1),
        "alpha": ("log", 0.1, 50.0),
        "confidence": ("cat", ["linear", "log"]),
        "iterations": ("int", 5, 30),
    }

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 2.0,
        confidence: str = "linear",
        epsilon: float = 1.0,
        reg_exponent: float = 1.0,
        iterations: int = 15,
        solver: str = "cg",
        cg_steps: int = 3,
        init_std: float = 0.01,
        random_state: int = 42,
        device: str = "auto",
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
        self.device = device

    # ------------------------------------------------------------------------------------------- fitting
    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        user_items = self._confidence_matrix(dataset.matrix("weight"))
        item_users = _transpose(user_items)
        rng = np.random.default_rng(self.random_state)
        k = self.factors
        X = random_factors(rng, dataset.n_users, k, self.init_std)
        Y = random_factors(rng, dataset.n_items, k, self.init_std)
        user_reg = self._row_regularization(user_items, dataset.n_items)
        item_reg = self._row_regularization(item_users, dataset.n_users)
        exact = self.solver == "cholesky"
        self._gram_cache = None
        device = accelerator(self.device)
        if device is not None:
            from recengine.models import _torch_kernels

            X, Y, self._iteration_seconds = _torch_kernels.ials_iterations(
                user_items, item_users, X, Y, user_reg, item_reg, self.iterations, exact, self.cg_steps, device)
        else:
            self._iteration_seconds = _cpu_iterations(user_items, item_users, X, Y, user_reg, item_reg,
                                                      self.iterations, exact, self.cg_steps)
        self.user_factors_ = X
        self.item_factors_ = Y
        self.n_users_ = dataset.n_users
        self.n_items_ = dataset.n_items
        return self

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
        rows = np.repeat(np.arange(confidence.shape[0]), np.diff(confidence.indptr))
        extra = np.bincount(rows, weights=confidence.data - 1.0, minlength=confidence.shape[0])
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

    def _recommend_on_device(
        self, histories: Histories, k: int, exclude_seen: bool, exclude: sp.csr_matrix | None,
        candidates: sp.csr_matrix | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        device = accelerator(self.device) if len(histories) >= DEVICE_MIN_ROWS else None
        if device is None:
            return None
        from recengine.models import _torch_kernels

        users = user_vectors(histories, self.user_factors_, self.fold_in)
        seen = _torch_kernels.history_entries(histories) if exclude_seen else None
        exclusions = [m for m in (seen, exclude) if m is not None]
        return _torch_kernels.rank_factors(users, self.item_factors_, k, exclusions, candidates, device)

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
        Contributions are listed largest first, at most `top` of them.
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


# ------------------------------------------------------------------------------------------- half steps
def _cpu_iterations(user_items: sp.csr_matrix, item_users: sp.csr_matrix, X: np.ndarray, Y: np.ndarray,
                    user_reg: np.ndarray, item_reg: np.ndarray, iterations: int, exact: bool,
                    cg_steps: int) -> list[float]:
    """Alternate the numba half-steps, updating X and Y in place: seconds per iteration."""
    k = X.shape[1]
    users = HalfStep(user_items, k, None if exact else "auto")
    items = HalfStep(item_users, k, None if exact else "auto")
    seconds = []
    # BLAS threads spin between calls and would compete with numba's: the Gram products run on one.
    with threadpool_limits(1, "blas"):
        for _ in range(iterations):
            start = time.perf_counter()
            users.solve(Y, user_reg, X, cg_steps, exact)
            items.solve(X, item_reg, Y, cg_steps, exact)
            seconds.append(time.perf_counter() - start)
    return seconds


class HalfStep:
    """How the rows of one side are solved given the other side's factors, planned once per fit.

    rows: this side's confidence matrix (CSR, sorted indices). Rows are "pulled" (each gathers the factor rows
    of its entries, in cost-balanced parallel chunks) except, with CG, the rows with at least
    streamed_min_entries entries (popular items), which are solved by streaming the other side's factors
    (_cg_push). "auto" streams the rows whose entries' factors would not stay in L2 between CG steps, at most
    as many as keep their solver state in L2; None streams nothing.
    """

    def __init__(self, rows: sp.csr_matrix, k: int, streamed_min_entries: int | str | None = "auto"):
        self.rows = rows
        n_threads = numba.get_num_threads()
        nnz = np.diff(rows.indptr)
        cap = len(nnz)
        if streamed_min_entries == "auto":
            streamed_min_entries = _L2_BYTES // (4 * k)
            cap = n_threads * _L2_BYTES // (8 * k)
        streamed = np.zeros(0, dtype=np.int64)
        if streamed_min_entries is not None:
            candidates = np.flatnonzero(nnz >= streamed_min_entries)
            streamed = np.sort(candidates[np.argsort(-nnz[candidates], kind="stable")[:cap]])
        pulled = np.ones(len(nnz), dtype=bool)
        pulled[streamed] = False
        self.pull_rows = np.flatnonzero(pulled).astype(np.int64)
        pulled_indptr = np.concatenate([[0], np.cumsum(nnz[self.pull_rows])])
        self.pull_chunks = balanced_chunks(pulled_indptr, k, 2.0, _CHUNKS_PER_THREAD * n_threads)
        self.streamed_rows = streamed
        if len(streamed):
            # The streamed rows' entries, stored by row of the other side, split into per-thread parts.
            by_other = _transpose(rows[streamed])
            self.push_indptr, self.push_indices, self.push_data, self.push_bounds = _column_parts(by_other,
                                                                                               n_threads)
            shape = (len(streamed), k)
            self.scratch = (np.empty(shape, np.float32), np.empty(shape, np.float32),
                            np.empty(shape, np.float32), np.empty(len(streamed), np.float32),
                            np.empty(len(streamed), np.bool_))

    def solve(self, Y: np.ndarray, reg: np.ndarray, X: np.ndarray, steps: int, exact: bool) -> None:
        """Update X (this side's factors) in place given the other side's factors Y."""
        G = Y.T @ Y
        m = self.rows
        if exact:
            _cholesky_rows(m.indptr, m.indices, m.data, Y, G, reg, X, self.pull_rows, self.pull_chunks)
            return
        _cg_pull(m.indptr, m.indices, m.data, Y, G, reg, X, steps, self.pull_rows, self.pull_chunks)
        if len(self.streamed_rows):
            X_sub = X[self.streamed_rows]
            _cg_push(self.push_indptr, self.push_indices, self.push_data, self.push_bounds, Y, G,
                     reg[self.streamed_rows], X_sub, steps, *self.scratch)
            X[self.streamed_rows] = X_sub


def _transpose(m: sp.csr_matrix) -> sp.csr_matrix:
    t = m.T.tocsr()
    t.sort_indices()
    t.indices = t.indices.astype(np.int32)
    t.indptr = t.indptr.astype(np.int64)
    return t


def _column_parts(m: sp.csr_matrix, n_parts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split the columns of a CSR matrix with sorted indices into n_parts ranges of about equal entries.

    Returns (part_indptr (n_parts, n_rows + 1), indices, data, column bounds (n_parts + 1)): part t holds the
    entries of columns bounds[t]:bounds[t + 1], row by row, at part_indptr[t, r]:part_indptr[t, r + 1].
    """
    n_rows, n_cols = m.shape
    cost = np.cumsum(np.bincount(m.indices, minlength=n_cols) + 1.0)
    inner = np.searchsorted(cost, cost[-1] * np.arange(1, n_parts) / n_parts, side="left") + 1
    bounds = np.maximum.accumulate(np.concatenate([[0], np.minimum(inner, n_cols), [n_cols]])).astype(np.int64)
    part = np.searchsorted(bounds, m.indices, side="right") - 1
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(m.indptr))
    order = np.lexsort((rows, part))  # by part, then row; stable, so columns stay sorted within a row
    counts = np.bincount(part * n_rows + rows, minlength=n_parts * n_rows).reshape(n_parts, n_rows)
    part_indptr = np.zeros((n_parts, n_rows + 1), dtype=np.int64)
    part_indptr[:, 1:] = np.cumsum(counts, axis=1)
    part_indptr += np.concatenate([[0], np.cumsum(counts.sum(axis=1))[:-1]])[:, None]
    return part_indptr, m.indices[order].astype(np.int32), m.data[order].astype(np.float32), bounds


# ------------------------------------------------------------------------------------------------ kernels
@numba.njit(inline="always", fastmath=True, cache=True)
def _entry_pass(lo, hi, indices, confidence, Y, v, out, residual):  # pragma: no cover - compiled
    """out += sum_e t_e y_e over entries lo:hi, t = (c - 1)(y.v), or c - (c - 1)(y.v) for the residual.

    Four entries at a time: their dot products share the loads of v and their updates one pass over out,
    which roughly halves the time per entry when the factor rows are in cache.
    """
    k = Y.shape[1]
    one = np.float32(1.0)
    zero = np.float32(0.0)
    e = lo
    while e + 4 <= hi:
        for q in range(e + PREFETCH_DISTANCE, min(e + PREFETCH_DISTANCE + 4, hi)):
            prefetch_row(Y, indices[q])
        y0, y1, y2, y3 = Y[indices[e]], Y[indices[e + 1]], Y[indices[e + 2]], Y[indices[e + 3]]
        d0 = d1 = d2 = d3 = zero
        for a in range(k):
            va = v[a]
            d0 += y0[a] * va
            d1 += y1[a] * va
            d2 += y2[a] * va
            d3 += y3[a] * va
        c0, c1, c2, c3 = confidence[e], confidence[e + 1], confidence[e + 2], confidence[e + 3]
        t0, t1, t2, t3 = (c0 - one) * d0, (c1 - one) * d1, (c2 - one) * d2, (c3 - one) * d3
        if residual:
            t0, t1, t2, t3 = c0 - t0, c1 - t1, c2 - t2, c3 - t3
        for a in range(k):
            out[a] += (t0 * y0[a] + t1 * y1[a]) + (t2 * y2[a] + t3 * y3[a])
        e += 4
    while e < hi:
        y = Y[indices[e]]
        d = zero
        for a in range(k):
            d += y[a] * v[a]
        t = (confidence[e] - one) * d
        if residual:
            t = confidence[e] - t
        for a in range(k):
            out[a] += t * y[a]
        e += 1


@numba.njit(inline="always", fastmath=True, cache=True)
def _gram_product(G, lam, v, out):  # pragma: no cover - compiled
    """out = (G + lam I) v for a symmetric G."""
    k = len(v)
    for a in range(k):
        out[a] = lam * v[a]
    for c in range(k):
        vc = v[c]
        row = G[c]
        for a in range(k):
            out[a] += row[a] * vc


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _cg_pull(indptr, indices, confidence, Y, G, reg, X, steps, rows, chunks):  # pragma: no cover - compiled
    """Conjugate-gradient iALS update (Takacs et al. 2011, as in `implicit`) of X[rows], in place.

    Row u minimises sum_i c_ui (p_ui - x.y_i)^2 + reg[u] |x|^2 with c = 1, p = 0 off its entries and
    c = confidence[e], p = 1 on them: `steps` CG iterations on (G + reg I + Y_u^T (C_u - I) Y_u) x = Y_u^T C_u 1,
    warm-started at X[u], where G = Y^T Y is shared by all rows, so a step costs O(k^2 + nnz_u k). Each row
    gathers its entries' factor rows Y[i] ("pull"). Thread work: rows[chunks[c]:chunks[c + 1]].
    """
    k = Y.shape[1]
    zero = np.float32(0.0)
    for chunk in numba.prange(len(chunks) - 1):
        r = np.empty(k, dtype=np.float32)
        p = np.empty(k, dtype=np.float32)
        Ap = np.empty(k, dtype=np.float32)
        for position in range(chunks[chunk], chunks[chunk + 1]):
            u = rows[position]
            x = X[u]
            lam = reg[u]
            lo, hi = indptr[u], indptr[u + 1]
            _gram_product(G, lam, x, r)
            for a in range(k):
                r[a] = -r[a]
            _entry_pass(lo, hi, indices, confidence, Y, x, r, True)
            rs_old = zero
            for a in range(k):
                p[a] = r[a]
                rs_old += r[a] * r[a]
            if rs_old < 1e-20:
                continue
            for _ in range(steps):
                _gram_product(G, lam, p, Ap)
                _entry_pass(lo, hi, indices, confidence, Y, p, Ap, False)
                pAp = zero
                for a in range(k):
                    pAp += p[a] * Ap[a]
                if pAp <= 0:
                    break
                alpha = rs_old / pAp
                rs_new = zero
                for a in range(k):
                    x[a] += alpha * p[a]
                    r[a] -= alpha * Ap[a]
                    rs_new += r[a] * r[a]
                if rs_new < 1e-20:
                    break
                beta = rs_new / rs_old
                for a in range(k):
                    p[a] = r[a] + beta * p[a]
                rs_old = rs_new


@numba.njit(inline="always", fastmath=True, cache=True)
def _scatter_pass(ptr, indices, confidence, X, V, out, active, residual):  # pragma: no cover - compiled
    """For every fixed row u and each of its entries (u, i): out[i] += t x_u, t as in _entry_pass with y.v
    replaced by x_u.V[i]. Rows i with active[i] False are skipped."""
    k = X.shape[1]
    one = np.float32(1.0)
    for u in range(X.shape[0]):
        lo, hi = ptr[u], ptr[u + 1]
        if lo == hi:
            continue
        x = X[u]
        for e in range(lo, hi):
            i = indices[e]
            if not active[i]:
                continue
            v = V[i]
            d = np.float32(0.0)
            for a in range(k):
                d += x[a] * v[a]
            conf = confidence[e]
            t = (conf - one) * d
            if residual:
                t = conf - t
            o = out[i]
            for a in range(k):
                o[a] += t * x[a]


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _cg_push(part_indptr, indices, confidence, bounds, X, G, reg, Y, steps, R, P, AP, rs, active):
    """The update of _cg_pull for the rows of Y (n_rows, k), computed by streaming the fixed factors X.

    The matrix is stored by fixed row: part t owns solved rows bounds[t]:bounds[t+1] and, of fixed row u, the
    entries part_indptr[t, u]:part_indptr[t, u+1]. The rows of a part run CG in lockstep, each step one
    sequential pass over X whose rows are scattered into the state P, AP of the solved rows. For the few rows
    with very many entries (popular items), whose entries' factors do not stay in cache between the steps of
    a pull, this reads X once per step instead of once per entry and step. R, P, AP (n_rows, k), rs (n_rows,)
    and active (n_rows,) are scratch.
    """
    k = X.shape[1]
    zero = np.float32(0.0)
    for t in numba.prange(part_indptr.shape[0]):
        lo_row, hi_row = bounds[t], bounds[t + 1]
        ptr = part_indptr[t]
        for i in range(lo_row, hi_row):
            active[i] = True
            for a in range(k):
                R[i, a] = zero
        _scatter_pass(ptr, indices, confidence, X, Y, R, active, True)
        for i in range(lo_row, hi_row):
            _gram_product(G, reg[i], Y[i], AP[i])
            total = zero
            for a in range(k):
                value = R[i, a] - AP[i, a]
                R[i, a] = value
                P[i, a] = value
                total += value * value
            rs[i] = total
            active[i] = total >= 1e-20
        for _ in range(steps):
            for i in range(lo_row, hi_row):
                if active[i]:
                    _gram_product(G, reg[i], P[i], AP[i])
            _scatter_pass(ptr, indices, confidence, X, P, AP, active, False)
            for i in range(lo_row, hi_row):
                if not active[i]:
                    continue
                p, ap, y, r = P[i], AP[i], Y[i], R[i]
                pAp = zero
                for a in range(k):
                    pAp += p[a] * ap[a]
                if pAp <= 0:
                    active[i] = False
                    continue
                alpha = rs[i] / pAp
                rs_new = zero
                for a in range(k):
                    y[a] += alpha * p[a]
                    r[a] -= alpha * ap[a]
                    rs_new += r[a] * r[a]
                if rs_new < 1e-20:
                    active[i] = False
                    continue
                beta = rs_new / rs[i]
                for a in range(k):
                    p[a] = r[a] + beta * p[a]
                rs[i] = rs_new


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def _cholesky_rows(indptr, indices, confidence, Y, G, reg, X, rows, chunks):  # pragma: no cover - compiled
    """Exact iALS update (Hu et al. 2008) of X[rows]: the system of _cg_pull, solved by Cholesky."""
    k = Y.shape[1]
    for chunk in numba.prange(len(chunks) - 1):
        A = np.empty((k, k), dtype=np.float64)
        b = np.empty(k, dtype=np.float64)
        for position in range(chunks[chunk], chunks[chunk + 1]):
            u = rows[position]
            for a in range(k):
                b[a] = 0.0
                for c in range(a + 1):
                    A[a, c] = G[a, c]
                A[a, a] += reg[u]
            hi = indptr[u + 1]
            for e in range(indptr[u], hi):
                if e + PREFETCH_DISTANCE < hi:
                    prefetch_row(Y, indices[e + PREFETCH_DISTANCE])
                y = Y[indices[e]]
                conf = np.float64(confidence[e])
                w = conf - 1.0
                for a in range(k):
                    ya = np.float64(y[a])
                    b[a] += conf * ya
                    wa = w * ya
                    for c in range(a + 1):
                        A[a, c] += wa * y[c]
            x = cholesky_solve(A, b)
            for a in range(k):
                X[u, a] = x[a]
