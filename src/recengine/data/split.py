"""Split: what an evaluation protocol hands to evaluation — train data, the histories to score, the truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import DataError


@dataclass(frozen=True, eq=False)
class Split:
    """The outcome of a protocol.

    train: what models fit on. test: the held-out interactions (same vocabularies as train).
    query: one history per evaluated user, scored at evaluation time (for most protocols the user's train
    history; for `strong`, the folded-in part of a held-out user's history, with users = -1).
    test_users: internal user index of each query row. truth: (len(query), n_items) CSR of held-out items per
    row (values: rating if the data has ratings, else 1). candidates: optional CSR restricting the ranking of
    each row (sampled-negative protocols); None = full ranking over all items. exclude_seen: whether the query's
    own items are removed from the ranking (True everywhere except protocols that rank given candidate sets
    as published, where a candidate may be an item the user already has).
    """

    protocol: str
    train: Dataset
    test: Dataset
    query: Histories
    test_users: np.ndarray
    truth: sp.csr_matrix
    candidates: sp.csr_matrix | None = None
    info: dict = field(default_factory=dict)
    exclude_seen: bool = True

    def __post_init__(self) -> None:
        n = len(self.query)
        if self.truth.shape != (n, self.train.n_items) or len(self.test_users) != n:
            raise DataError("split: query, test_users and truth must have one row per evaluated user")
        if self.candidates is not None and self.candidates.shape != self.truth.shape:
            raise DataError("split: candidates must have the shape of truth")

    @classmethod
    def from_datasets(
        cls,
        protocol: str,
        train: Dataset,
        test: Dataset,
        *,
        query: Histories | None = None,
        candidates: sp.csr_matrix | None = None,
        drop_unseen_items: bool = True,
        info: dict | None = None,
        exclude_seen: bool = True,
    ) -> Split:
        """Evaluate every user with at least one test interaction; by default the query is the user's train
        history. With drop_unseen_items, test items that never occur in train are removed (they cannot be
        ranked by a collaborative model) and the count is recorded in info."""
        if train.users != test.users or train.items != test.items:
            raise DataError("split: train and test must share user and item vocabularies")
        info = dict(info or {})
        mask = np.ones(test.n_interactions, dtype=bool)
        if drop_unseen_items:
            seen = np.bincount(train.item_index, minlength=train.n_items) > 0
            mask = seen[test.item_index]
            info["dropped_unseen_test_interactions"] = int((~mask).sum())
        if not mask.all():
            test = test.select(mask)
        if exclude_seen:
            # A test item the user already has in the query can never be ranked when seen items are
            # excluded; counting it would only lower every model's recall alike.
            known = train.matrix("binary") if query is None else None
            if known is not None:
                again = np.asarray(known[test.user_index, test.item_index]).ravel() > 0
                info["dropped_seen_test_interactions"] = int(again.sum())
                if again.any():
                    test = test.select(~again)
        test_users = np.flatnonzero(np.diff(test.indptr) > 0)
        values = test.rating if test.rating is not None else np.ones(test.n_interactions, dtype=np.float32)
        full = sp.csr_matrix((values, test.item_index, test.indptr), shape=(test.n_users, test.n_items))
        # Repeated (user, item) pairs in test count once; keep the latest value.
        full = _latest_per_entry(full)
        truth = full[test_users]
        if query is None:
            query = train.histories(test_users)
        return cls(protocol, train, test, query, test_users.astype(np.int64), truth, candidates, info, exclude_seen)

    @property
    def n_users(self) -> int:
        return len(self.query)


def _latest_per_entry(m: sp.csr_matrix) -> sp.csr_matrix:
    coo = m.tocoo()
    keys = coo.row.astype(np.int64) * m.shape[1] + coo.col
    _, last = np.unique(keys[::-1], return_index=True)
    keep = len(keys) - 1 - last
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=m.shape)
