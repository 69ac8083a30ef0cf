"""The one top-K routine every model shares: mask, then select the K best per row; and which device ranks.

Models with a GPU path (iALS, EASE) take ``device="cpu"|"cuda"|"auto"``; ``accelerator`` turns that into the
torch device of their torch kernels (recengine.models._torch_kernels), or None for the NumPy/numba path here.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import TYPE_CHECKING

import numba
import numpy as np
import scipy.sparse as sp

from recengine.errors import ConfigError, NotSupportedError

if TYPE_CHECKING:
    import torch

PAD_ITEM = -1
DEVICES = ("auto", "cpu", "cuda")
#: Batches with fewer rows are ranked on the CPU even by a model on a GPU: moving a few users' work to the
#: device costs more than it saves (single requests in the service stay on the tuned CPU path).
DEVICE_MIN_ROWS = 512
#: Without one of these an NVIDIA (or ROCm) driver is absent on Linux, so "auto" need not import torch (~1.5 s).
_GPU_DRIVER_PATHS = ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd")


def accelerator(device: str) -> torch.device | None:
    """The torch device that runs a model's heavy work, or None for the NumPy/numba CPU path.

    "cpu": None (the CPU path is the fast one there); "cuda": the GPU, a ConfigError when torch sees none;
    "auto": the GPU when torch sees one, else None.
    """
    if device not in DEVICES:
        raise ConfigError(f"device must be one of {list(DEVICES)}, got {device!r}")
    if device == "cpu":
        return None
    if "torch" not in sys.modules:
        if importlib.util.find_spec("torch") is None:
            if device == "auto":
                return None
            raise NotSupportedError("device='cuda' needs PyTorch with CUDA: pip install torch (or use device='cpu')")
        if device == "auto" and sys.platform == "linux" and not any(map(os.path.exists, _GPU_DRIVER_PATHS)):
            return None
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    if device == "auto":
        return None
    raise ConfigError("device='cuda' but torch sees no CUDA GPU; use device='auto' or 'cpu'")


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
