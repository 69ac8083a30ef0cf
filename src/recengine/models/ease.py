"""EASE: an item-item linear model with a closed-form solution (Steck 2019)."""

from __future__ import annotations

import contextlib
from typing import Self

import numba
import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack
from threadpoolctl import threadpool_limits

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import ConfigError
from recengine.models._similarity import BLOCK_FLOATS, ItemItemModel
from recengine.models.base import Interval, Options
from recengine.models.topk import DEVICE_MIN_ROWS, DEVICES, accelerator

_TILE = 64
#: Matrices smaller than this are inverted on one BLAS thread.
_MIN_THREADED = 4096


@numba.njit(parallel=True, cache=True)
def _mirror_lower(a):  # pragma: no cover - compiled
    """Copy the lower triangle of a square C-ordered matrix onto its upper triangle, tile by tile."""
    n = a.shape[0]
    n_tiles = (n + _TILE - 1) // _TILE
    for ti in numba.prange(n_tiles):
        # Tile row ti writes only columns [i0, i1) of the upper triangle: no two threads write the same entry.
        i0 = ti * _TILE
        i1 = min(n, i0 + _TILE)
        for tj in range(ti + 1):
            j0 = tj * _TILE
            j1 = min(n, j0 + _TILE)
            for i in range(i0, i1):
                for j in range(j0, min(j1, i)):
                    a[j, i] = a[i, j]


@numba.njit(parallel=True, cache=True)
def _gram_rows(t_indptr, t_indices, t_data, indptr, indices, data, out):  # pragma: no cover - compiled
    """out[i] = sum over the users u of item i of x_ui * x_u (X^T in CSR: t_*, X in CSR: the rest)."""
    for i in numba.prange(out.shape[0]):
        row = out[i]
        for p in range(t_indptr[i], t_indptr[i + 1]):
            u = t_indices[p]
            w = t_data[p]
            for q in range(indptr[u], indptr[u + 1]):
                row[indices[q]] += w * data[q]


def gram(user_items: sp.csr_matrix, dtype: type) -> np.ndarray:
    """Dense X^T X from the sparse X: a sparse product that writes straight into the dense result.

    Each row of the result is owned by one thread, so the product runs in parallel without locks and
    without the intermediate sparse result (which can be as large as the dense one).
    """
    x = sp.csr_matrix(user_items, dtype=dtype)
    x.sum_duplicates()
    xt = x.T.tocsr()
    out = np.zeros((x.shape[1], x.shape[1]), dtype=dtype)
    _gram_rows(xt.indptr, xt.indices, xt.data, x.indptr, x.indices, x.data, out)
    return out


def inverse_spd(a: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite C-ordered matrix, in place (a is overwritten and returned).

    Cholesky factorisation and inversion from the factor (LAPACK potrf + potri): about n^3 flops against
    2 n^3 for a general LU inverse, and no extra n x n buffer.
    """
    potrf, potri = (lapack.spotrf, lapack.spotri) if a.dtype == np.float32 else (lapack.dpotrf, lapack.dpotri)
    # Threaded LAPACK gains little on small matrices but can be 50x slower when the cores are shared with
    # other work (threads spin waiting for each other): small inversions run on one thread.
    limit = threadpool_limits(1, user_api="blas") if a.shape[0] < _MIN_THREADED else contextlib.nullcontext()
    with limit:
        # a is symmetric: its transpose, a Fortran-ordered view, is the same matrix, so LAPACK works in place.
        factor, info = potrf(a.T, lower=0, clean=0, overwrite_a=1)
        if info != 0:
            raise ConfigError(f"the regularised Gram matrix is not positive definite (LAPACK info {info}); "
                              "increase l2")
        inverse, info = potri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise ConfigError(f"the regularised Gram matrix is singular (LAPACK info {info}); increase l2")
    result = inverse.T  # the Fortran upper triangle is the C-ordered lower triangle
    if not np.shares_memory(result, a):
        a[...] = result
    _mirror_lower(a)
    return a


def _prune(dense: np.ndarray, threshold: float) -> sp.csr_matrix:
    """CSR float32 of the entries with |value| >= threshold, built by row blocks (no n x n temporaries)."""
    n_rows, n_cols = dense.shape
    step = max(1, BLOCK_FLOATS // max(1, n_cols))
    rows, cols, vals = [], [], []
    for start in range(0, n_rows, step):
        r, c = np.nonzero(np.abs(dense[start:start + step]) >= threshold)
        vals.append(dense[start + r, c].astype(np.float32))
        rows.append(r + start)
        cols.append(c)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n_rows, n_cols), dtype=np.float32)


class EASE(ItemItemModel):
    """B = argmin ||X - XB||^2 + l2 ||B||^2 subject to diag(B) = 0; score = history_matrix @ B.

    Closed form: P = (X^T X + l2 I)^-1, B = I - P / diag(P) (column j divided by P_jj). dtype: "float32"
    (twice as fast, half the memory) or "float64" for the inversion. prune_threshold > 0 drops weights with
    |B_ij| below it and keeps B sparse (smaller, faster to score; 0 keeps B dense).
    values: "binary" or "weight".

    device: "cpu" (LAPACK and numba), "cuda" (PyTorch on the GPU: Gram, Cholesky inverse and the ranking of
    large batches) or "auto" (the GPU when torch sees one, else the CPU path). B is a NumPy array either way.
    """

    name = "ease"
    _neighbours_along = "column"
    parameter_constraints = {
        "l2": Interval(float, 0, low_open=True),
        "prune_threshold": Interval(float, 0),
        "dtype": Options(("float32", "float64")),
        "values": Options(("binary", "weight")),
        "history_half_life": Interval(float, 0),
        "device": Options(DEVICES),
    }
    search_space = {"l2": ("log", 1.0, 10000.0), "history_half_life": ("cat", [0.0, 2.0, 5.0, 10.0, 20.0, 50.0])}

    # Defaults tuned on temporal validation splits of ml-100k, ml-latest-small and amazon-beauty: l2 picked
    # 507, 323 and 162, and a history half-life of 5 interactions won on all three.
    def __init__(self, l2: float = 300.0, prune_threshold: float = 0.0, dtype: str = "float32",
                 values: str = "binary", history_half_life: float = 5.0, device: str = "auto"):
        self.l2 = l2
        self.prune_threshold = prune_threshold
        self.dtype = dtype
        self.values = values
        self.history_half_life = history_half_life
        self.device = device

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        dtype = np.dtype(self.dtype).type
        user_items = sp.csr_matrix(dataset.matrix(self.values), dtype=dtype)
        device = accelerator(self.device)
        if device is not None:
            from recengine.models import _torch_kernels

            p = _torch_kernels.ease_weights(user_items, self.l2, self.dtype, device)
        else:
            p = gram(user_items, dtype)
            p[np.diag_indices_from(p)] += dtype(self.l2)
            p = inverse_spd(p)
            diag = p.diagonal().copy()
            p /= -diag[None, :]  # B_ij = -P_ij / P_jj, in place
            np.fill_diagonal(p, 0.0)
        self._device_weights = None
        if self.prune_threshold > 0:
            weights = _prune(p, self.prune_threshold)
        else:
            weights = p.astype(np.float32, copy=False)
        self.item_weights_ = weights
        self.n_items_ = dataset.n_items
        return self

    def _recommend_on_device(
        self, histories: Histories, k: int, exclude_seen: bool, exclude: sp.csr_matrix | None,
        candidates: sp.csr_matrix | None,
    ) -> tuple[np.ndarray, np.ndarray] | None:
        device = accelerator(self.device) if len(histories) >= DEVICE_MIN_ROWS else None
        if device is None:
            return None
        import torch

        from recengine.models import _torch_kernels

        cached = getattr(self, "_device_weights", None)
        if cached is None or cached.device.type != device.type:
            # Dense on the device (as B was while fitting); kept for the next batch.
            weights = self.item_weights_
            dense = weights.toarray() if sp.issparse(weights) else weights
            self._device_weights = cached = torch.as_tensor(dense, dtype=torch.float32, device=device)
        seen = _torch_kernels.history_entries(histories) if exclude_seen else None
        exclusions = [m for m in (seen, exclude) if m is not None]
        return _torch_kernels.rank_item_weights(self._history_matrix(histories), cached, k, exclusions, candidates,
                                                device)
