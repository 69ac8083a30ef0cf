"""Shared machinery of the latent-factor models (iALS, BPR, biased MF, SVD++).

* which rows of a Histories batch use learned user factors and which are folded in;
* per-row regularized least-squares solves (Cholesky), used for fold-in and by exact ALS;
* item-item cosine similarity of item factors;
* a prefetch hint for kernels that gather factor rows from memory, and cost-balanced work chunks;
* a small splittable random generator for numba kernels, so that every kernel is seeded and reproducible;
* rating-model helpers: the rating matrix of histories and the ridge fold-in of unknown users.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import scipy.sparse as sp
from llvmlite import binding as llvm_binding
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

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


# ------------------------------------------------------------------------------------------- prefetching
#: How many entries ahead the CG kernels prefetch factor rows; 4 was fastest at 64-256 factors on Zen 4.
PREFETCH_DISTANCE = 4
_PREFETCH = "llvm.prefetch.p0" if llvm_binding.llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"


@intrinsic
def prefetch_row(typingctx, array, row):  # pragma: no cover - compiled
    """Hint the CPU to start loading row `row` of a C-contiguous 2-D array (every 64-byte line of it).

    Gathering factor rows from a matrix larger than the caches is latency-bound; asking for the rows of the
    next few entries while computing with the current one overlaps those memory reads.
    """
    sig = types.void(array, row)

    def codegen(context, builder, signature, args):
        array_type, row_type = signature.args
        arr = context.make_array(array_type)(context, builder, args[0])
        index = context.cast(builder, args[1], row_type, types.intp)
        zero = context.get_constant(types.intp, 0)
        pointer = cgutils.get_item_pointer2(
            context, builder, data=arr.data, shape=cgutils.unpack_tuple(builder, arr.shape),
            strides=cgutils.unpack_tuple(builder, arr.strides), layout=array_type.layout, inds=[index, zero])
        byte_pointer = ir.IntType(8).as_pointer()
        int32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, int32, int32, int32]), _PREFETCH)
        base = builder.bitcast(pointer, byte_pointer)
        row_bytes = builder.extract_value(arr.strides, 0)
        with cgutils.for_range_slice(builder, zero, row_bytes, context.get_constant(types.intp, 64)) as (off, _):
            # read access, high temporal locality, data cache
            builder.call(fn, [builder.gep(base, [off]), ir.Constant(int32, 0), ir.Constant(int32, 3),
                              ir.Constant(int32, 1)])
        return context.get_dummy_value()

    return sig, codegen


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
        out[r] = cholesky_solve(A, b)


@numba.njit(cache=True, nogil=True)
def cholesky_factor(A):  # pragma: no cover - compiled
    """Overwrite the lower triangle of symmetric positive definite A with its Cholesky factor L (A = L L^T)."""
    k = A.shape[0]
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


@numba.njit(cache=True, nogil=True)
def cholesky_solve(A, b):  # pragma: no cover - compiled
    """Solve A x = b for symmetric positive definite A given by its lower triangle (A is overwritten)."""
    k = len(b)
    cholesky_factor(A)
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


# ------------------------------------------------------------------------------------------ rating models
def rating_matrix(histories: Histories) -> sp.csr_matrix:
    """(rows, n_items) CSR of explicit ratings (the latest of a repeated pair), sorted indices."""
    m = histories.matrix("rating")
    m.sort_indices()
    m.indices = m.indices.astype(np.int32)
    m.indptr = m.indptr.astype(np.int64)
    return m


def ridge_fold_in(ratings: sp.csr_matrix, residual: np.ndarray, Q: np.ndarray, regularization: float,
                  bias_regularization: float) -> tuple[np.ndarray, np.ndarray]:
    """User factors and biases (p, b) of rating rows by ridge regression on the item side.

    Row r minimises sum_j (residual_j - b - p.q_j)^2 + n_r (regularization |p|^2 + bias_regularization b^2)
    over its entries j, residual being the rating minus everything the model predicts without the user's own
    terms. The penalty grows with n_r because SGD applies the L2 step once per rating of the user, so this is
    the full-batch objective whose per-rating gradient SGD follows. Rows without ratings get p = 0, b = 0.
    """
    k = Q.shape[1]
    augmented = np.hstack([Q, np.ones((len(Q), 1), dtype=Q.dtype)]).astype(np.float32)
    reg_diag = np.concatenate([np.full(k, regularization), [bias_regularization]]).astype(np.float64)
    out = np.empty((ratings.shape[0], k + 1), dtype=np.float64)
    counts = np.diff(ratings.indptr).astype(np.float64)
    solve_rows(ratings.indptr, ratings.indices, np.ones(ratings.nnz), residual.astype(np.float64), augmented,
               np.zeros((k + 1, k + 1)), counts, reg_diag, out)
    return out[:, :k].astype(np.float32), out[:, k].astype(np.float32)


def random_factors(rng: np.random.Generator, rows: int, factors: int, std: float) -> np.ndarray:
    """Initial factors: float32 normal noise of standard deviation `std` (draws from `rng` in row order)."""
    return (rng.standard_normal((rows, factors)) * std).astype(np.float32)


def rating_range(ratings: sp.csr_matrix) -> tuple[float, float, float]:
    """(mean, min, max) of the stored ratings: the global mean and the range predictions are clipped to."""
    return float(ratings.data.mean()), float(ratings.data.min()), float(ratings.data.max())
