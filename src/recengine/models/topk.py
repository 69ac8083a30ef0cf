"""The one top-K routine every model shares: mask, then select the K best per row."""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

PAD_ITEM = -1


def mask_entries(scores: np.ndarray, matrix: sp.csr_matrix) -> None:
    """Set scores[r, j] = -inf for every stored entry (r, j) of a CSR matrix with the same row count."""
    if matrix.nnz:
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        scores[rows, matrix.indices] = -np.inf


def keep_only(scores: np.ndarray, candidates: sp.csr_matrix) -> None:
    """Set every score outside the candidate entries of each row to -inf."""
    allowed = np.full(scores.shape, -np.inf, dtype=scores.dtype)
    if candidates.nnz:
        rows = np.repeat(np.arange(candidates.shape[0]), np.diff(candidates.indptr))
        allowed[rows, candidates.indices] = 0.0
    scores += allowed


@numba.njit(parallel=True, cache=True, nogil=True)
def _topk_rows(scores, k, items, best):  # pragma: no cover - compiled
    n_rows, n_cols = scores.shape
    for r in numba.prange(n_rows):
        row = scores[r]
        size = 0
        for j in range(n_cols):
            s = row[j]
            if s == -np.inf or s != s:  # masked or NaN: never returned
                continue
            if size == k and s <= best[r, k - 1]:
                continue  # not better than the current k-th (ties keep the lower index)
            pos = size if size < k else k - 1
            while pos > 0 and best[r, pos - 1] < s:
                if pos < k:
                    best[r, pos] = best[r, pos - 1]
                    items[r, pos] = items[r, pos - 1]
                pos -= 1
            best[r, pos] = s
            items[r, pos] = j
            if size < k:
                size += 1


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k highest scores per row, best first: (items int32, scores float32), both (n_rows, k).

    Entries scored -inf (masked) or NaN are never returned; rows with fewer than k eligible items are padded
    with item PAD_ITEM (-1) and score -inf. Ties go to the lower item index, so results are deterministic.
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    items = np.full((scores.shape[0], k), PAD_ITEM, dtype=np.int32)
    best = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    if k > 0 and scores.shape[1] > 0:
        _topk_rows(scores, k, items, best)
    return items, best
