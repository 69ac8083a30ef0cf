"""Vocabulary: the mapping between external ids (strings) and dense internal indices."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from recengine.errors import DataError


class Vocabulary:
    """An immutable, ordered set of external ids; position = internal index.

    External ids are always strings, so "42" read from a CSV and "42" typed by a person are the same id.
    """

    __slots__ = ("_index",)

    def __init__(self, ids: Iterable[object] = ()):
        index = pd.Index(np.asarray([str(i) for i in ids] if not isinstance(ids, pd.Index | np.ndarray)
                                    else np.asarray(ids).astype(str), dtype=object))
        if not index.is_unique:
            dup = index[index.duplicated()][0]
            raise DataError(f"duplicate id {dup!r} in vocabulary")
        self._index = index

    @classmethod
    def from_values(cls, values: Iterable[object]) -> Vocabulary:
        """Vocabulary of the distinct values, in order of first appearance."""
        return cls(pd.unique(np.asarray(values).astype(str)))

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, external_id: object) -> bool:
        return str(external_id) in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._index.equals(other._index)

    __hash__ = None  # equal by content and mutable-free, but compared, not used as a key

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} ids)"

    @property
    def ids(self) -> np.ndarray:
        """All external ids as an object array of str, in index order."""
        return self._index.to_numpy()

    def index(self, ids: Iterable[object] | object, missing: str = "error") -> np.ndarray | int:
        """Internal indices of external ids.

        missing: "error" raises DataError naming an unknown id; "negative" returns -1 for unknown ids.
        """
        scalar = isinstance(ids, str | int | np.integer)
        keys = np.asarray([ids] if scalar else list(ids) if not isinstance(ids, np.ndarray) else ids)
        codes = self._index.get_indexer(keys.astype(str)) if len(keys) else np.empty(0, dtype=np.int64)
        if missing == "error" and (codes < 0).any():
            unknown = str(keys[codes < 0][0])
            raise DataError(f"unknown id {unknown!r}: it is not in the data the model was trained on")
        codes = codes.astype(np.int64)
        return int(codes[0]) if scalar else codes

    def lookup(self, indices: Iterable[int] | np.ndarray) -> np.ndarray:
        """External ids of internal indices."""
        return self.ids[np.asarray(indices, dtype=np.int64)]

    def extend(self, ids: Iterable[object]) -> Vocabulary:
        """A new vocabulary with the unseen ids appended (existing indices keep their meaning)."""
        new = pd.unique(np.asarray(list(ids)).astype(str))
        fresh = new[self._index.get_indexer(new) < 0]
        return Vocabulary(np.concatenate([self.ids, fresh])) if len(fresh) else self
