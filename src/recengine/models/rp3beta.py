"""RP3beta: three-step random walks item -> user -> item, re-weighted by item popularity."""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.errors import DataError
from recengine.models._similarity import (
    BLOCK_FLOATS,
    ItemItemModel,
    assemble,
    normalize_rows,
    top_n_positive,
)
from recengine.models.base import Interval, Options


class RP3beta(ItemItemModel):
    """W = (P_iu^alpha @ P_ui^alpha) / popularity^beta, top `neighbors` per row; score = history_matrix @ W.

    P_ui is the user x item matrix with rows scaled to sum to 1 (a user's step to an item), P_iu the same for
    the item x user matrix; alpha is applied to their entries element-wise, and column j of W is divided by
    the number of users of item j to the power beta, which lifts long-tail items (Paudel et al. 2016;
    Dacrema et al. 2019). alpha = 1, beta = 0 is P3 (Cooper et al. 2014). normalize scales each row of the
    pruned W to sum to 1. values: "binary" or "weight" interactions.
    """

    name = "rp3beta"
    _neighbours_along = "row"
    parameter_constraints = {
        "alpha": Interval(float, 0, low_open=True),
        "beta": Interval(float, 0, 1),
        "neighbors": Interval(int, 1),
        "normalize": Options((False, True)),
        "values": Options(("binary", "weight")),
        "history_half_life": Interval(float, 0),
    }
    search_space = {
        "alpha": ("float", 0.1, 2.0),
        "beta": ("float", 0.0, 1.0),
        "neighbors": ("int", 5, 1000),
        "normalize": ("cat", [False, True]),
        "history_half_life": ("cat", [0.0, 2.0, 5.0, 10.0, 20.0, 50.0]),
    }

    def __init__(
        self,
        alpha: float = 0.5,
        beta: float = 0.5,
        neighbors: int = 100,
        normalize: bool = True,
        values: str = "binary",
    history_half_life: float = 0.0,
):
        self.alpha = alpha
        self.beta = beta
        self.neighbors = neighbors
        self.normalize = normalize
        self.values = values
        self.history_half_life = history_half_life

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        user_items = sp.csr_matrix(dataset.matrix(self.values), dtype=np.float64)
        if user_items.nnz and user_items.data.min() < 0:
            raise DataError("rp3beta walks with probabilities proportional to the weights, which must be "
                            "non-negative; use values='binary'")
        p_ui = normalize_rows(user_items)
        p_iu = normalize_rows(user_items.T.tocsr())
        if self.alpha != 1:
            p_ui.data **= self.alpha
            p_iu.data **= self.alpha
        popularity = np.diff(user_items.tocsc().indptr).astype(np.float64)
        discount = np.divide(1.0, popularity ** self.beta, out=np.zeros_like(popularity),
                             where=popularity > 0)
        n_items = dataset.n_items
        step = max(1, BLOCK_FLOATS // max(1, n_items))
        rows_out, cols_out, vals_out = [], [], []
        for start in range(0, n_items, step):
            stop = min(start + step, n_items)
            block = (p_iu[start:stop] @ p_ui).toarray()
            block *= discount[None, :]
            block[np.arange(stop - start), np.arange(start, stop)] = 0.0  # no self-loops
            rows, cols, vals = top_n_positive(block, self.neighbors)
            rows_out.append(rows + start)
            cols_out.append(cols)
            vals_out.append(vals)
        weights = assemble(rows_out, cols_out, vals_out, (n_items, n_items))
        if self.normalize:
            weights = normalize_rows(weights)
        weights.sort_indices()
        self.item_weights_ = weights
        self.n_items_ = n_items
        return self
