"""Histories: a batch of users' interactions in chronological order, the input every model scores from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recengine.errors import DataError


@dataclass(frozen=True, eq=False)
class Histories:
    """Ragged, CSR-shaped histories of a batch of users.

    Row r holds ``items[indptr[r]:indptr[r+1]]`` in chronological order, with their weights, and optionally
    timestamps and ratings. ``users`` gives the internal index of each row's user in the training data, or -1
    for a user the model has never seen; models may use learned per-user state for known users and fold in
    the history for the others. Set it only for rows that are exactly that user's training history: a training
    user with fresh events must be passed with -1 (or users None), so that every model scores the new history.
    """

    indptr: np.ndarray
    items: np.ndarray
    n_items: int
    weights: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    ratings: np.ndarray | None = None
    users: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.indptr.ndim != 1 or len(self.indptr) == 0 or self.indptr[-1] != len(self.items):
            raise DataError("histories: indptr does not match the items array")
        if len(self.items) and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise DataError(f"histories: item index outside [0, {self.n_items})")
        for name in ("weights", "timestamps", "ratings"):
            values = getattr(self, name)
            if values is not None and len(values) != len(self.items):
                raise DataError(f"histories: {name} has {len(values)} values for {len(self.items)} items")
        if self.users is not None and len(self.users) != len(self):
            raise DataError("histories: users must have one entry per history")

    @classmethod
    def from_lists(
        cls,
        item_lists: Sequence[Sequence[int]],
        n_items: int,
        weights: Sequence[Sequence[float]] | None = None,
        ratings: Sequence[Sequence[float]] | None = None,
    ) -> Histories:
        """Histories from Python lists of internal item indices (oldest first)."""
        lengths = np.fromiter((len(x) for x in item_lists), dtype=np.int64, count=len(item_lists))
        indptr = np.concatenate([[0], np.cumsum(lengths)])

        def flat(lists: Sequence[Sequence[float]] | None, dtype: type) -> np.ndarray | None:
            if lists is None:
                return None
            return np.concatenate([np.asarray(x, dtype=dtype) for x in lists]) if len(lists) else \
                np.empty(0, dtype=dtype)

        return cls(indptr, flat(item_lists, np.int32), n_items, flat(weights, np.float32), None,
                   flat(ratings, np.float32))

    def __len__(self) -> int:
        return len(self.indptr) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.indptr)

    @property
    def row_of_entry(self) -> np.ndarray:
        """The history row of every stored interaction."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def entry_weights(self) -> np.ndarray:
        return self.weights if self.weights is not None else np.ones(len(self.items), dtype=np.float32)

    def row(self, r: int) -> np.ndarray:
        return self.items[self.indptr[r]:self.indptr[r + 1]]

    def __getitem__(self, rows: slice | np.ndarray | Sequence[int]) -> Histories:
        """The histories of a subset of rows (a slice or an index array), in the given order."""
        if isinstance(rows, slice):
            start, stop, step = rows.indices(len(self))
            if step == 1:
                lo, hi = self.indptr[start], self.indptr[stop] if stop > start else self.indptr[start]
                return Histories(
                    self.indptr[start:max(stop, start) + 1] - lo, self.items[lo:hi], self.n_items,
                    *(None if a is None else a[lo:hi] for a in (self.weights, self.timestamps, self.ratings)),
                    users=None if self.users is None else self.users[start:stop],
                )
            rows = np.arange(start, stop, step)
        rows = np.asarray(rows, dtype=np.int64)
        lengths = self.lengths[rows]
        indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # Gather the entries of the selected rows without a Python loop.
        offsets = np.repeat(self.indptr[rows] - indptr[:-1], lengths) + np.arange(indptr[-1])
        return Histories(
            indptr, self.items[offsets], self.n_items,
            *(None if a is None else a[offsets] for a in (self.weights, self.timestamps, self.ratings)),
            users=None if self.users is None else self.users[rows],
        )

    def recency(self, half_life: float) -> np.ndarray:
        """Per-entry factor 2^(-age / half_life), age = how many interactions came after it in its history."""
        after = np.repeat(self.indptr[1:], self.lengths) - 1 - np.arange(len(self.items))
        return np.exp2(-after / half_life).astype(np.float32)

    def matrix(self, values: str = "weight", half_life: float = 0.0) -> sp.csr_matrix:
        """(len, n_items) sparse matrix. values: "weight" (repeats summed), "binary" or "rating" (latest wins).

        half_life > 0 (weight and binary only) multiplies each entry by `recency(half_life)`, so the latest
        interactions count most: the user's current taste, not the average of all of it.
        """
        rows = self.row_of_entry
        if half_life and values not in ("weight", "binary"):
            raise DataError("recency weighting applies to 'weight' or 'binary' values, not ratings")
        if values == "binary":
            data = np.ones(len(self.items), dtype=np.float32)
        elif values == "weight":
            data = self.entry_weights().astype(np.float32)
        elif values == "rating":
            if self.ratings is None:
                raise DataError("these histories carry no ratings; a rating model needs explicit ratings")
            # Keep the latest rating of a repeated (user, item): drop earlier duplicates before building.
            keys = rows * self.n_items + self.items
            _, last = np.unique(keys[::-1], return_index=True)
            keep = np.sort(len(keys) - 1 - last)
            m = sp.csr_matrix((self.ratings[keep].astype(np.float32), (rows[keep], self.items[keep])),
                              shape=(len(self), self.n_items))
            return m
        else:
            raise DataError(f"unknown matrix values {values!r}: use 'weight', 'binary' or 'rating'")
        if half_life:
            if values == "binary":
                # A repeated item counts once, at its latest position.
                keys = rows * self.n_items + self.items
                _, last = np.unique(keys[::-1], return_index=True)
                data = np.zeros(len(self.items), dtype=np.float32)
                data[len(keys) - 1 - last] = 1.0
            data = data * self.recency(half_life)
        # Already grouped by row: built as CSR directly, not through COO (a serving request's whole history
        # matrix is this one call). Copied: sum_duplicates sorts and compacts the arrays in place.
        m = sp.csr_matrix((data.astype(np.float32, copy=False), self.items, self.indptr),
                          shape=(len(self), self.n_items), copy=True)
        m.sum_duplicates()
        if values == "binary" and not half_life:
            m.data[:] = 1.0
        return m

    def with_users(self, users: np.ndarray | None) -> Histories:
        return Histories(self.indptr, self.items, self.n_items, self.weights, self.timestamps, self.ratings,
                         None if users is None else np.asarray(users, dtype=np.int64))
