"""Shared machinery of the latent-factor models (iALS, BPR, biased MF, SVD++).

* which rows of a Histories batch use learned user factors and which are folded in;
* per-row regularized least-squares solves (Cholesky) and the conjugate-gradient iALS update;
* item-item cosine similarity of item factors;
* a small counter-based random generator for numba kernels, so that every kernel is seeded and reproducible.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np

from recengine.data.histories import Histories
from recengine.errors import ConfigError
from recengine.models.topk import topk

#: Upper bound on the floats of one dense similarity block.
_BLOCK = 1 << 24


# ------------------------------------------------------------------------------------------------ user rows
def user_vectors(
    histories: Histories,
    user_factors: np.ndarray,
    fold_in: Callable[[Histories], np.ndarray],
) -> np.ndarray:
    """One vector per history row: the learned factor of a known user, else fold_in(rows) of the others.

    A row's user is known when ``histories.users`` is given and holds an index in [0, len(user_factors)).
    """
    n, k = len(histories), user_factors.shape[1]
    known = known_rows(histories, len(user_factors))
    out = np.empty((n, k), dtype=np.float32)
    if known.any():
        out[known] = user_factors[histories.users[known]]
    if not known.all():
        rows = np.flatnonzero(~known)
        out[rows] = fold_in(histories[rows])
    return out


def known_rows(histories: Histories, n_users: int) -> np.ndarray:
    """Boolean mask of the rows whose user has learned state (0 <= user < n_users)."""
    if histories.users is None:
        return np.zeros(len(histories), dtype=bool)
    users = np.asarray(histories.users)
    return (users >= 0) & (users < n_users)


# ---------------------------------------------------------------------------------------------- similarity
def similar_items_cosine(item_factors: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k items with the highest cosine between item factors, the item itself excluded."""
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    items = np.asarray(items, dtype=np.int64).ravel()
    n_items = len(item_factors)
    if len(items) and (items.min() < 0 or items.max() >= n_items):
        raise ConfigError(f"item index outside [0, {n_items})")
    norms = np.linalg.norm(item_factors, axis=1)
    unit = (item_factors / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
    out_items = np.empty((len(items), k), dtype=np.int32)
    out_scores = np.empty((len(items), k), dtype=np.float32)
    step = max(1, _BLOCK // max(1, n_items))
    for start in range(0, len(items), step):
        block = items[start:start + step]
        sims = unit[block] @ unit.T
        sims[np.arange(len(block)), block] = -np.inf
        out_items[start:start + step], out_scores[start:start + step] = topk(sims, k)
    return out_items, out_scores


# ------------------------------------------------------------------------------------------- work balance
def balanced_chunks(indptr: np.ndarray, per_row: float, per_entry: float, n_chunks: int) -> np.ndarray:
    """Boundaries of n_chunks contiguous row ranges of about equal cost (per_row + per_entry * nnz each).

    numba's prange hands each thread an equal count of iterations; iterating over cost-balanced chunks
    instead of rows keeps both cores busy when a few rows (popular items) hold most entries.
    """
    n_rows = len(indptr) - 1
    cost = np.cumsum(per_row + per_entry * np.diff(indptr).astype(np.float64))
    if n_rows == 0:
        return np.zeros(1, dtype=np.int64)
    targets = cost[-1] * np.arange(1, n_chunks) / n_chunks
    inner = np.searchsorted(cost, targets, side="left") + 1
    return np.unique(np.concatenate([[0], np.minimum(inner, n_rows), [n_rows]])).astype(np.int64)


# ----------------------------------------------------------------------------------------- exact solves
@numba.njit(parallel=True, cache=True, nogil=True)
def solve_rows(indptr, indices, gram_weight, target, Y, base, reg_rows, reg_diag, out):  # pragma: no cover
    """For every row r, solve (base + reg_rows[r] diag(reg_diag) + sum_j w_j y_j y_j^T) x = sum_j t_j y_j.

    j runs over the row's entries: w = gram_weight[e], t = target[e], y_j = Y[indices[e]]. Float64 Cholesky;
    rows without entries and a zero right-hand side give x = 0.
    """
    k = Y.shape[1]
    for r in numba.prange(len(indptr) - 1):
        A = base.astype(np.float64)
        b = np.zeros(k)
        for a in range(k):
            A[a, a] += reg_rows[r] * reg_diag[a]
        for e in range(indptr[r], indptr[r + 1]):
            y = Y[indices[e]].astype(np.float64)
            w = gram_weight[e]
            t = target[e]
            for a in range(k):
                b[a] += t * y[a]
                wa = w * y[a]
                for c in range(a + 1):
                    A[a, c] += wa * y[c]
        out[r] = _cholesky_solve(A, b)


@numba.njit(cache=True, nogil=True)
def _cholesky_solve(A, b):  # pragma: no cover - compiled
    """Solve A x = b for symmetric positive definite A given by its lower triangle (A is overwritten)."""
    k = len(b)
    for j in range(k):
        s = A[j, j]
        for m in range(j):
            s -= A[j, m] * A[j, m]
        d = np.sqrt(s) if s > 1e-300 else 1e-150
        A[j, j] = d
        for i in range(j + 1, k):
            s = A[i, j]
            for m in range(j):
                s -= A[i, m] * A[j, m]
            A[i, j] = s / d
    x = b.copy()
    for i in range(k):
        s = x[i]
        for m in range(i):
            s -= A[i, m] * x[m]
        x[i] = s / A[i, i]
    for i in range(k - 1, -1, -1):
        s = x[i]
        for m in range(i + 1, k):
            s -= A[m, i] * x[m]
        x[i] = s / A[i, i]
    return x


# --------------------------------------------------------------------------------- implicit ALS updates
@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def als_cg_update(indptr, indices, confidence, Y, YtY, reg, X, steps, chunks):  # pragma: no cover
    """Conjugate-gradient iALS half-step (Takacs et al. 2011; the `implicit` library's update), in place.

    Each row r minimises sum_i c_ri (p_ri - x.y_i)^2 + reg[r] |x|^2 with c = 1 off its entries, c =
    confidence[e] and p = 1 on them. Starting from the current X[r], `steps` CG iterations run on
    (YtY + reg I + Y_r^T (C_r - I) Y_r) x = Y_r^T C_r 1, where YtY is shared by every row, so a row costs
    O(k^2 + nnz_r * k) per step.
    """
    k = Y.shape[1]
    zero = np.float32(0.0)
    for chunk in numba.prange(len(chunks) - 1):
        r_vec = np.empty(k, dtype=np.float32)
        p = np.empty(k, dtype=np.float32)
        Ap = np.empty(k, dtype=np.float32)
        for u in range(chunks[chunk], chunks[chunk + 1]):
            x = X[u]
            lam = reg[u]
            # Residual r = b - A x.
            for a in range(k):
                s = zero
                G = YtY[a]
                for c in range(k):
                    s += G[c] * x[c]
                r_vec[a] = -s - lam * x[a]
            for e in range(indptr[u], indptr[u + 1]):
                y = Y[indices[e]]
                conf = confidence[e]
                d = zero
                for a in range(k):
                    d += y[a] * x[a]
                t = conf - (conf - np.float32(1.0)) * d
                for a in range(k):
                    r_vec[a] += t * y[a]
            rs_old = zero
            for a in range(k):
                p[a] = r_vec[a]
                rs_old += r_vec[a] * r_vec[a]
            if rs_old < 1e-20:
                continue
            for _ in range(steps):
                for a in range(k):
                    s = zero
                    G = YtY[a]
                    for c in range(k):
                        s += G[c] * p[c]
                    Ap[a] = s + lam * p[a]
                for e in range(indptr[u], indptr[u + 1]):
                    y = Y[indices[e]]
                    d = zero
                    for a in range(k):
                        d += y[a] * p[a]
                    t = (confidence[e] - np.float32(1.0)) * d
                    for a in range(k):
                        Ap[a] += t * y[a]
                pAp = zero
                for a in range(k):
                    pAp += p[a] * Ap[a]
                if pAp <= 0:
                    break
                alpha = rs_old / pAp
                rs_new = zero
                for a in range(k):
                    x[a] += alpha * p[a]
                    r_vec[a] -= alpha * Ap[a]
                    rs_new += r_vec[a] * r_vec[a]
                if rs_new < 1e-20:
                    break
                beta = rs_new / rs_old
                for a in range(k):
                    p[a] = r_vec[a] + beta * p[a]
                rs_old = rs_new


@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def als_cholesky_update(indptr, indices, confidence, Y, YtY, reg, X, chunks):  # pragma: no cover
    """Exact iALS half-step (Hu et al. 2008): the same system as als_cg_update, solved by Cholesky."""
    k = Y.shape[1]
    for chunk in numba.prange(len(chunks) - 1):
        A = np.empty((k, k), dtype=np.float64)
        b = np.empty(k, dtype=np.float64)
        for u in range(chunks[chunk], chunks[chunk + 1]):
            for a in range(k):
                b[a] = 0.0
                for c in range(a + 1):
                    A[a, c] = YtY[a, c]
                A[a, a] += reg[u]
            for e in range(indptr[u], indptr[u + 1]):
                y = Y[indices[e]]
                conf = np.float64(confidence[e])
                w = conf - 1.0
                for a in range(k):
                    ya = np.float64(y[a])
                    b[a] += conf * ya
                    wa = w * ya
                    for c in range(a + 1):
                        A[a, c] += wa * y[c]
            x = _cholesky_solve(A, b)
            for a in range(k):
                X[u, a] = x[a]


# -------------------------------------------------------------------------------------- seeded randomness
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@numba.njit(inline="always", cache=True)
def rng_next(state):  # pragma: no cover - compiled
    """splitmix64: (new state, 64 random bits). Tiny, fast and splittable: one stream per shard or row."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return state, z ^ (z >> np.uint64(31))


@numba.njit(inline="always", cache=True)
def rng_below(state, n):  # pragma: no cover - compiled
    """(new state, a uniform integer in [0, n))."""
    state, z = rng_next(state)
    return state, np.int64((z >> np.uint64(11)) % np.uint64(n))


@numba.njit(inline="always", cache=True)
def rng_uniform(state):  # pragma: no cover - compiled
    """(new state, a uniform float in [0, 1))."""
    state, z = rng_next(state)
    return state, np.float64(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


def seeds(random_state: int, n: int, salt: int = 0) -> np.ndarray:
    """n independent uint64 stream seeds derived from a user seed (and a salt, e.g. the epoch)."""
    return np.random.default_rng([int(random_state), int(salt)]).integers(
        0, np.iinfo(np.int64).max, n, dtype=np.int64).astype(np.uint64)


@numba.njit(inline="always", cache=True)
def contains_sorted(values, lo, hi, target):  # pragma: no cover - compiled
    """Whether target occurs in the sorted slice values[lo:hi] (binary search)."""
    while lo < hi:
        mid = (lo + hi) >> 1
        v = values[mid]
        if v == target:
            return True
        if v < target:
            lo = mid + 1
        else:
            hi = mid
    return False



@numba.njit(parallel=True, fastmath=True, cache=True, nogil=True)
def als_cg_update_push(part_indptr, indices, confidence, row_bounds, X, XtX, reg, Y, steps,
                       R, P, AP, rs):  # pragma: no cover - compiled
    """The update of als_cg_update, computed by streaming the fixed side instead of gathering it.

    Solves the rows of Y (n_rows, k) given the fixed factors X (n_other, k), with the matrix stored by rows of
    X: part t of the solved rows (row_bounds[t]:row_bounds[t+1]) owns entries part_indptr[t, u]:part_indptr[t,
    u+1] of fixed row u. All solved rows of a part run their CG in lockstep: each step is one sequential pass
    over X, whose rows are read once per pass and scattered into the (cache-resident) state R, P, AP of the
    solved rows, instead of being gathered from memory once per entry. R, P, AP: (n_rows, k) scratch; rs:
    (n_rows,) scratch holding each row's squared residual norm, or -1 once its CG has stopped.
    """
    n_parts = part_indptr.shape[0]
    n_other = X.shape[0]
    k = X.shape[1]
    zero = np.float32(0.0)
    one = np.float32(1.0)
    for t in numba.prange(n_parts):
        lo_row = row_bounds[t]
        hi_row = row_bounds[t + 1]
        ptr = part_indptr[t]
        R[lo_row:hi_row] = zero
        # Residual r = b - A y: the entry part by one pass, then the shared Gram part per row.
        for u in range(n_other):
            x = X[u]
            for e in range(ptr[u], ptr[u + 1]):
                i = indices[e]
                conf = confidence[e]
                y = Y[i]
                d = zero
                for a in range(k):
                    d += x[a] * y[a]
                coef = conf - (conf - one) * d
                r = R[i]
                for a in range(k):
                    r[a] += coef * x[a]
        for i in range(lo_row, hi_row):
            y = Y[i]
            r = R[i]
            lam = reg[i]
            total = zero
            for a in range(k):
                s = zero
                G = XtX[a]
                for c in range(k):
                    s += G[c] * y[c]
                value = r[a] - s - lam * y[a]
                r[a] = value
                P[i, a] = value
                total += value * value
            rs[i] = total if total >= 1e-20 else np.float32(-1.0)
        for _ in range(steps):
            # A p: the Gram part per row, then the entry part by one pass over X.
            for i in range(lo_row, hi_row):
                if rs[i] < 0:
                    continue
                p = P[i]
                lam = reg[i]
                for a in range(k):
                    s = zero
                    G = XtX[a]
                    for c in range(k):
                        s += G[c] * p[c]
                    AP[i, a] = s + lam * p[a]
            for u in range(n_other):
                x = X[u]
                for e in range(ptr[u], ptr[u + 1]):
                    i = indices[e]
                    if rs[i] < 0:
                        continue
                    p = P[i]
                    d = zero
                    for a in range(k):
                        d += x[a] * p[a]
                    coef = (confidence[e] - one) * d
                    ap = AP[i]
                    for a in range(k):
                        ap[a] += coef * x[a]
            for i in range(lo_row, hi_row):
                rs_old = rs[i]
                if rs_old < 0:
                    continue
                p = P[i]
                ap = AP[i]
                y = Y[i]
                r = R[i]
                pAp = zero
                for a in range(k):
                    pAp += p[a] * ap[a]
                if pAp <= 0:
                    rs[i] = -1.0
                    continue
                alpha = rs_old / pAp
                rs_new = zero
                for a in range(k):
                    y[a] += alpha * p[a]
                    r[a] -= alpha * ap[a]
                    rs_new += r[a] * r[a]
                if rs_new < 1e-20:
                    rs[i] = -1.0
                    continue
                beta = rs_new / rs_old
                for a in range(k):
                    p[a] = r[a] + beta * p[a]
                rs[i] = rs_new


def column_parts(m, n_parts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Split the columns of a CSR matrix (sorted indices) into n_parts ranges of about equal nnz.

    Returns (part_indptr (n_parts, n_rows+1), indices, data, column bounds): part t holds the entries of
    columns bounds[t]:bounds[t+1], stored row by row, at part_indptr[t, r]:part_indptr[t, r+1].
    """
    n_rows, n_cols = m.shape
    per_column = np.bincount(m.indices, minlength=n_cols).astype(np.float64)
    cost = np.cumsum(per_column + 1.0)
    inner = np.searchsorted(cost, cost[-1] * np.arange(1, n_parts) / n_parts, side="left") + 1 \
        if n_cols else np.zeros(n_parts - 1, dtype=np.int64)
    bounds = np.concatenate([[0], np.minimum(inner, n_cols), [n_cols]]).astype(np.int64)
    bounds = np.maximum.accumulate(bounds)
    # Entry e of row r goes to the part of its column; a stable sort by (part, row) keeps columns sorted.
    part_of_entry = np.searchsorted(bounds, m.indices, side="right") - 1
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(m.indptr))
    order = np.lexsort((rows, part_of_entry))
    counts = np.bincount(part_of_entry * n_rows + rows, minlength=n_parts * n_rows).reshape(n_parts, n_rows)
    part_indptr = np.zeros((n_parts, n_rows + 1), dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts.sum(axis=1))[:-1]])
    part_indptr[:, 1:] = np.cumsum(counts, axis=1)
    part_indptr += offsets[:, None]
    return part_indptr, m.indices[order].astype(np.int32), m.data[order], bounds
