"""PyTorch versions of the heavy steps of iALS and EASE and of ranking many users at once, for GPUs.

* iALS half-steps: the rows of one side, grouped by length into padded blocks, solved together by batched
  conjugate gradient (the same steps, stopping rules and warm start as the numba kernel) or batched Cholesky;
* EASE: the Gram matrix by sparse-times-dense column blocks, its Cholesky inverse and the weights B;
* top-K of many rows, block by block, with seen/excluded items masked and candidates kept, returning what
  ``recengine.models.topk.topk`` returns (ties to the lower item index, -1/-inf padding).

The code is device-agnostic: it runs on CUDA and on the CPU, where the tests check it against the NumPy/numba
path (which stays the faster one on CPUs). Inputs and outputs are NumPy/SciPy arrays, so a model's artifact is
the same whichever device trained it. Imported only when a torch path runs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recengine.data.histories import Histories
from recengine.errors import ConfigError
from recengine.models.topk import PAD_ITEM

#: Floats in one block of work (a padded gather of factor rows, dense Gram columns, a block of scores).
_CPU_BLOCK_FLOATS = 1 << 24
_CUDA_BLOCK_FLOATS = 1 << 28
#: A block and its temporaries (about four times its size) stay within this share of the free GPU memory.
_CUDA_FREE_SHARE = 8
#: A block's rows have at most this many times the entries of its shortest row (or of _SHORT_ROW), so that
#: padding to the longest row of the block adds at most a quarter to the work.
_PADDING_RATIO = 1.25
_SHORT_ROW = 8
#: CG stops on a row whose squared residual falls below this (as the numba kernel does).
_CG_TOLERANCE = 1e-20


def block_floats(device: torch.device) -> int:
    """How many floats one block of work may hold on `device`."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(max(1 << 20, min(_CUDA_BLOCK_FLOATS, free // (4 * 4 * _CUDA_FREE_SHARE))))
    return _CPU_BLOCK_FLOATS


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def csr_tensor(m: sp.csr_matrix, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A SciPy CSR matrix (canonical: sorted, no duplicates) as a torch sparse CSR tensor on `device`."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.as_tensor(m.indptr, dtype=torch.int64), torch.as_tensor(m.indices, dtype=torch.int64),
            torch.as_tensor(m.data), size=m.shape, dtype=dtype, device=device, check_invariants=False)


# ------------------------------------------------------------------------------------------------- iALS
@dataclass(frozen=True)
class _RowBlock:
    """Rows of one side with at most `width` entries each, padded to that width (padding weighs 0)."""

    rows: torch.Tensor  # (n,) row indices
    indices: torch.Tensor  # (n, width) the other side's rows of the entries
    confidence: torch.Tensor  # (n, width) c of each entry
    weight: torch.Tensor  # (n, width) c - 1 of each entry


class HalfStep:
    """How the rows of one side are solved given the other side's factors, planned once per fit.

    rows: the confidence matrix of this side (CSR, float32). Rows are sorted by entry count and cut into
    blocks of similar counts (within _PADDING_RATIO), so that padding to the longest row of a block wastes
    little, each holding at most block_floats(device) floats of gathered factors (or of k x k systems).
    """

    def __init__(self, rows: sp.csr_matrix, k: int, device: torch.device):
        lengths = np.diff(rows.indptr)
        order = np.argsort(lengths, kind="stable")
        sorted_lengths = lengths[order]
        budget = max(1, block_floats(device) // k)
        self.blocks: list[_RowBlock] = []
        start = 0
        while start < len(order):
            # A row costs max(entries, k) * k floats; rows are sorted, so the last row of a block is its widest.
            cost = np.arange(1, len(order) - start + 1) * np.maximum(sorted_lengths[start:], k)
            similar = np.searchsorted(sorted_lengths, _PADDING_RATIO * max(sorted_lengths[start], _SHORT_ROW),
                                      side="right")
            stop = max(start + 1, min(start + int(np.searchsorted(cost, budget, side="right")), int(similar)))
            self.blocks.append(_padded_block(rows, order[start:stop], int(sorted_lengths[stop - 1]), device))
            start = stop

    def solve(self, Y: torch.Tensor, reg: torch.Tensor, X: torch.Tensor, steps: int, exact: bool) -> None:
        """Update X (this side's factors) in place given the other side's factors Y."""
        G = Y.T @ Y
        for block in self.blocks:
            gathered = Y[block.indices]  # (n, width, k)
            lam = reg[block.rows]
            if exact:
                X[block.rows] = _cholesky_block(gathered, block, G, lam).to(X.dtype)
            else:
                X[block.rows] = _cg_block(gathered, block, G, lam, X[block.rows], steps)


def _padded_block(rows: sp.csr_matrix, members: np.ndarray, width: int, device: torch.device) -> _RowBlock:
    counts = np.diff(rows.indptr)[members]
    valid = np.arange(width)[None, :] < counts[:, None]
    entries = np.where(valid, rows.indptr[members][:, None] + np.arange(width)[None, :], 0)
    indices = np.where(valid, rows.indices[entries], 0) if rows.nnz else np.zeros(valid.shape, np.int64)
    confidence = np.where(valid, rows.data[entries], 0.0).astype(np.float32) if rows.nnz else \
        np.zeros(valid.shape, np.float32)
    weight = np.where(valid, confidence - 1.0, 0.0).astype(np.float32)
    return _RowBlock(*(torch.as_tensor(a, device=device) for a in (members.astype(np.int64),
                                                                   indices.astype(np.int64), confidence, weight)))


def _system_product(gathered: torch.Tensor, weight: torch.Tensor, G: torch.Tensor, lam: torch.Tensor,
                    v: torch.Tensor) -> torch.Tensor:
    """(G + lam I + Y_u^T (C_u - I) Y_u) v_u for every row u of a block."""
    along = torch.bmm(gathered, v.unsqueeze(2)).squeeze(2)  # y_e . v_u per entry
    return v @ G + lam[:, None] * v + torch.bmm((weight * along).unsqueeze(1), gathered).squeeze(1)


def _cg_block(gathered: torch.Tensor, block: _RowBlock, G: torch.Tensor, lam: torch.Tensor, x: torch.Tensor,
              steps: int) -> torch.Tensor:
    """`steps` conjugate-gradient iterations from x for every row of a block, as the numba kernel runs them:
    a row stops when its residual vanishes or its curvature p.Ap is not positive."""
    target = torch.bmm(block.confidence.unsqueeze(1), gathered).squeeze(1)  # Y_u^T C_u 1
    r = target - _system_product(gathered, block.weight, G, lam, x)
    p = r.clone()
    rs_old = (r * r).sum(1)
    active = rs_old >= _CG_TOLERANCE
    for _ in range(steps):
        Ap = _system_product(gathered, block.weight, G, lam, p)
        pAp = (p * Ap).sum(1)
        active &= pAp > 0
        alpha = torch.where(active, rs_old / torch.where(active, pAp, 1.0), 0.0)
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * Ap
        rs_new = (r * r).sum(1)
        active &= rs_new >= _CG_TOLERANCE
        beta = torch.where(active, rs_new / rs_old, 0.0)
        p = r + beta[:, None] * p
        rs_old = torch.where(active, rs_new, rs_old)
    return x


def _cholesky_block(gathered: torch.Tensor, block: _RowBlock, G: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """The exact solutions of a block's systems, in float64 as the numba kernel solves them."""
    y = gathered.double()
    A = torch.bmm(y.transpose(1, 2) * block.weight.double().unsqueeze(1), y) + G.double()
    A.diagonal(dim1=1, dim2=2).add_(lam.double()[:, None])
    b = torch.bmm(block.confidence.double().unsqueeze(1), y).squeeze(1)
    factor, info = torch.linalg.cholesky_ex(A)
    if bool((info != 0).any()):
        raise ConfigError("an iALS system is not positive definite; increase regularization")
    return torch.cholesky_solve(b.unsqueeze(2), factor).squeeze(2)


def ials_iterations(
    user_items: sp.csr_matrix, item_users: sp.csr_matrix, X: np.ndarray, Y: np.ndarray, user_reg: np.ndarray,
    item_reg: np.ndarray, iterations: int, exact: bool, cg_steps: int, device: torch.device,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Alternate user and item half-steps from X, Y on `device`: (X, Y, seconds per iteration)."""
    k = X.shape[1]
    users, items = HalfStep(user_items, k, device), HalfStep(item_users, k, device)
    X_t, Y_t = torch.as_tensor(X, device=device), torch.as_tensor(Y, device=device)
    user_reg_t, item_reg_t = torch.as_tensor(user_reg, device=device), torch.as_tensor(item_reg, device=device)
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        users.solve(Y_t, user_reg_t, X_t, cg_steps, exact)
        items.solve(X_t, item_reg_t, Y_t, cg_steps, exact)
        _synchronize(device)
        seconds.append(time.perf_counter() - start)
    return X_t.cpu().numpy(), Y_t.cpu().numpy(), seconds


# ------------------------------------------------------------------------------------------------- EASE
def gram(user_items: sp.csr_matrix, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Dense X^T X on `device`: the sparse X^T times dense column blocks of X (no n x n sparse product)."""
    x = sp.csr_matrix(user_items, copy=True)
    x.sum_duplicates()
    xt = x.T.tocsr()
    xt.sort_indices()
    n_users, n_items = x.shape
    xt_tensor = csr_tensor(xt, device, dtype)
    users = torch.as_tensor(xt.indices.astype(np.int64), device=device)
    item_of_entry = torch.as_tensor(np.repeat(np.arange(n_items), np.diff(xt.indptr)), device=device)
    values = xt_tensor.values()
    out = torch.empty((n_items, n_items), dtype=dtype, device=device)
    width = max(1, block_floats(device) // max(1, n_users))
    for lo in range(0, n_items, width):
        hi = min(n_items, lo + width)
        first, last = int(xt.indptr[lo]), int(xt.indptr[hi])
        columns = torch.zeros((n_users, hi - lo), dtype=dtype, device=device)
        columns[users[first:last], item_of_entry[first:last] - lo] = values[first:last]
        out[:, lo:hi] = xt_tensor @ columns
    return out


def ease_weights(user_items: sp.csr_matrix, l2: float, dtype: str, device: torch.device) -> np.ndarray:
    """EASE's B = I - P / diag(P), P = (X^T X + l2 I)^-1 by Cholesky, computed in dtype ("float32" or
    "float64"): float32 NumPy."""
    a = gram(user_items, getattr(torch, dtype), device)
    a.diagonal().add_(l2)
    factor, info = torch.linalg.cholesky_ex(a)
    del a
    if int(info) != 0:
        raise ConfigError(f"the regularised Gram matrix is not positive definite (info {int(info)}); increase l2")
    p = torch.cholesky_inverse(factor)
    del factor
    p /= -p.diagonal().clone()[None, :]  # B_ij = -P_ij / P_jj
    p.fill_diagonal_(0.0)
    return p.to(torch.float32).cpu().numpy()


# ------------------------------------------------------------------------------------------------ top-K
def topk_rows(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What recengine.models.topk.topk returns, for a tensor: (items int64, scores), both (n_rows, k).

    -inf and NaN are never returned (padding: item -1, score -inf); equal scores go to the lower item index,
    also at the k-th place, where torch.topk alone may pick any of them.
    """
    n_rows, n_items = scores.shape
    scores = scores.masked_fill(scores.isnan(), -torch.inf)
    kept = min(k, n_items)
    values, items = torch.topk(scores, kept, dim=1)
    items, order = items.sort(dim=1)
    values, order = values.gather(1, order).sort(dim=1, descending=True, stable=True)
    items = items.gather(1, order)
    if kept:
        kth = values[:, -1:]
        tied = ((scores == kth).sum(1) > (values == kth).sum(1)) & (kth[:, 0] > -torch.inf)
        rows = tied.nonzero()[:, 0]
        if len(rows):  # a tie left out at the k-th place: rank those rows by a full stable sort
            full_values, full_items = scores[rows].sort(dim=1, descending=True, stable=True)
            values[rows], items[rows] = full_values[:, :kept], full_items[:, :kept]
    items = items.masked_fill(values == -torch.inf, PAD_ITEM)
    if kept < k:
        items = torch.cat([items, items.new_full((n_rows, k - kept), PAD_ITEM)], 1)
        values = torch.cat([values, values.new_full((n_rows, k - kept), -torch.inf)], 1)
    return items, values


class _Entries:
    """The stored entries of a CSR matrix on the device, handed out by blocks of rows as (rows, columns)."""

    def __init__(self, m: sp.csr_matrix, device: torch.device):
        self.indptr = m.indptr
        self.device_indptr = torch.as_tensor(m.indptr.astype(np.int64), device=device)
        self.indices = torch.as_tensor(m.indices.astype(np.int64), device=device)

    def block(self, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
        lo, hi = int(self.indptr[start]), int(self.indptr[stop])
        counts = self.device_indptr[start + 1:stop + 1] - self.device_indptr[start:stop]
        rows = torch.repeat_interleave(torch.arange(stop - start, device=counts.device), counts, output_size=hi - lo)
        return rows, self.indices[lo:hi]


def history_entries(histories: Histories) -> sp.csr_matrix:
    """Every history's items as a CSR pattern, sharing the histories' arrays (a repeated item is stored twice,
    which masking does not mind): the seen items, without building and sorting a matrix."""
    data = np.ones(len(histories.items), dtype=np.float32)
    return sp.csr_matrix((data, histories.items, histories.indptr), shape=(len(histories), histories.n_items))


def rank_blocks(
    score_rows: Callable[[int, int], torch.Tensor], n_rows: int, n_items: int, k: int,
    exclusions: list[sp.csr_matrix], candidates: sp.csr_matrix | None, device: torch.device,
    block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of rows [start, stop) scored by score_rows(start, stop) on `device`, block by block.

    The stored entries of every exclusions matrix (seen items, explicit exclusions) are never returned; with
    candidates, only its stored entries are. block_rows: rows per block (None: as many as fit the device).
    """
    step = block_rows or max(1, block_floats(device) // max(1, n_items))
    items = np.full((n_rows, k), PAD_ITEM, dtype=np.int32)
    scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    excluded = [_Entries(m, device) for m in exclusions]
    allowed_entries = None if candidates is None else _Entries(candidates, device)
    for start in range(0, n_rows, step):
        stop = min(n_rows, start + step)
        block = score_rows(start, stop).to(torch.float32)
        for entries in excluded:
            block[entries.block(start, stop)] = -torch.inf
        if allowed_entries is not None:
            allowed = torch.zeros(block.shape, dtype=torch.bool, device=device)
            allowed[allowed_entries.block(start, stop)] = True
            block.masked_fill_(~allowed, -torch.inf)
        top_items, top_scores = topk_rows(block, k)
        items[start:stop] = top_items.cpu().numpy()
        scores[start:stop] = top_scores.cpu().numpy()
    return items, scores


def rank_factors(
    users: np.ndarray, item_factors: np.ndarray, k: int, exclusions: list[sp.csr_matrix],
    candidates: sp.csr_matrix | None, device: torch.device, block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items by the dot products users @ item_factors.T (see rank_blocks)."""
    U = torch.as_tensor(users, dtype=torch.float32, device=device)
    V = torch.as_tensor(item_factors, dtype=torch.float32, device=device)
    return rank_blocks(lambda start, stop: U[start:stop] @ V.T, len(users), len(item_factors), k, exclusions,
                       candidates, device, block_rows)


def rank_item_weights(
    history_matrix: sp.csr_matrix, weights: torch.Tensor, k: int, exclusions: list[sp.csr_matrix],
    candidates: sp.csr_matrix | None, device: torch.device, block_rows: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k items by history_matrix @ weights (dense (n_items, n_items) on `device`; see rank_blocks)."""
    history_matrix = sp.csr_matrix(history_matrix, dtype=np.float32)
    history_matrix.sum_duplicates()

    def score_rows(start: int, stop: int) -> torch.Tensor:
        return csr_tensor(history_matrix[start:stop], device, torch.float32) @ weights

    return rank_blocks(score_rows, history_matrix.shape[0], weights.shape[1], k, exclusions, candidates, device,
                       block_rows)
