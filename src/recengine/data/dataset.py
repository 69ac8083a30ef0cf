"""Dataset: an immutable snapshot of users, items and their chronological interactions."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.artifacts import load_arrays, read_manifest
from recengine.data.histories import Histories
from recengine.data.vocab import Vocabulary
from recengine.errors import DataError

#: Columns of the canonical event frame that Dataset.from_events reads.
EVENT_COLUMNS = ("user", "item", "timestamp", "rating", "weight", "event")
_FORMAT = "recengine-dataset"
_FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class Dataset:
    """Users, items and interactions, with optional item and user features.

    Interactions are stored CSR-shaped by user: user ``u`` owns entries ``indptr[u]:indptr[u+1]``, sorted by
    timestamp (ties keep their input order). ``item_features`` and ``user_features`` are DataFrames indexed by
    external id, in vocabulary order, or None.
    """

    users: Vocabulary
    items: Vocabulary
    indptr: np.ndarray
    item_index: np.ndarray
    weight: np.ndarray
    timestamp: np.ndarray
    rating: np.ndarray | None = None
    event: np.ndarray | None = None
    event_types: tuple[str, ...] = ()
    item_features: pd.DataFrame | None = None
    user_features: pd.DataFrame | None = None
    name: str = "dataset"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # ----------------------------------------------------------------------------------------------- building
    @classmethod
    def from_events(
        cls,
        events: pd.DataFrame,
        item_features: pd.DataFrame | None = None,
        user_features: pd.DataFrame | None = None,
        *,
        users: Vocabulary | None = None,
        items: Vocabulary | None = None,
        name: str = "dataset",
    ) -> Dataset:
        """Build from a canonical event frame: columns user, item, timestamp and optionally rating, weight,
        event. Given vocabularies fix the id spaces (unknown ids are an error); otherwise ids get indices in
        order of first appearance. Item/user features are indexed by external id; rows for ids without events
        are ignored, ids without a feature row get missing values."""
        missing = [c for c in ("user", "item", "timestamp") if c not in events.columns]
        if missing:
            raise DataError(f"event frame lacks required column(s) {missing}; it has {list(events.columns)}")
        unknown = [c for c in events.columns if c not in EVENT_COLUMNS]
        if unknown:
            raise DataError(f"event frame has unknown column(s) {unknown}; allowed: {list(EVENT_COLUMNS)}")
        for column in events.columns:
            if events[column].isna().any():
                row = int(np.flatnonzero(events[column].isna().to_numpy())[0])
                raise DataError(f"event frame: missing {column} in row {row}")
        for column in ("weight", "rating"):
            if column in events.columns:
                values = pd.to_numeric(events[column], errors="coerce").to_numpy(np.float64)
                if not np.isfinite(values).all():
                    row = int(np.flatnonzero(~np.isfinite(values))[0])
                    raise DataError(f"event frame: {column} in row {row} is not a finite number")
        users, u = _encode(events["user"], users)
        items, i = _encode(events["item"], items)
        ts = events["timestamp"].to_numpy()
        if not np.issubdtype(ts.dtype, np.number):
            raise DataError("event frame: timestamp must be numeric (seconds since the epoch or a sequence number)")
        ts = ts.astype(np.int64)
        order = np.lexsort((ts, u))
        counts = np.bincount(u, minlength=len(users))
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        weight = (events["weight"].to_numpy(np.float32) if "weight" in events.columns
                  else np.ones(len(events), dtype=np.float32))
        rating = events["rating"].to_numpy(np.float32)[order] if "rating" in events.columns else None
        event, event_types = None, ()
        if "event" in events.columns:
            cat = pd.Categorical(events["event"].astype(str))
            event, event_types = cat.codes.astype(np.int16)[order], tuple(cat.categories)
        return cls(
            users=users, items=items, indptr=indptr, item_index=i[order].astype(np.int32),
            weight=weight[order], timestamp=ts[order], rating=rating, event=event, event_types=event_types,
            item_features=_align(item_features, items, "item"), user_features=_align(user_features, users, "user"),
            name=name,
        )

    # --------------------------------------------------------------------------------------------- accessors
    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_interactions(self) -> int:
        return len(self.item_index)

    @property
    def user_index(self) -> np.ndarray:
        """The user of every interaction (internal index)."""
        return np.repeat(np.arange(self.n_users, dtype=np.int32), np.diff(self.indptr))

    @property
    def has_ratings(self) -> bool:
        return self.rating is not None

    def histories(self, users: np.ndarray | None = None) -> Histories:
        """Histories of the given users (internal indices; default all), marked as known users."""
        h = Histories(self.indptr, self.item_index, self.n_items, self.weight, self.timestamp, self.rating,
                      users=np.arange(self.n_users, dtype=np.int64))
        return h if users is None else h[np.asarray(users, dtype=np.int64)]

    def matrix(self, values: str = "weight") -> sp.csr_matrix:
        """(n_users, n_items) user-item matrix; see Histories.matrix for values. Cached."""
        if values not in self._cache:
            self._cache[values] = self.histories().matrix(values)
        return self._cache[values]

    def item_popularity(self) -> np.ndarray:
        """Number of distinct users per item."""
        return np.asarray((self.matrix("binary")).sum(axis=0)).ravel().astype(np.int64)

    def category_matrix(self, column: str | None = None) -> sp.csr_matrix | None:
        """(n_items, n_categories) one-hot matrix of a list-valued item feature (default: the first of
        genres, categories, attributes that the data has); None when there is none. For diversity metrics."""
        features = self.item_features
        if features is None:
            return None
        candidates = [column] if column else [c for c in ("genres", "categories", "attributes") if c in features]
        if not candidates or candidates[0] not in features:
            return None
        lists = features[candidates[0]].map(lambda v: list(v) if isinstance(v, list | tuple | np.ndarray) else [])
        rows = np.repeat(np.arange(len(lists)), lists.map(len).to_numpy())
        values = [str(v) for vs in lists for v in vs]
        codes, uniques = pd.factorize(pd.Series(values, dtype=object))
        return sp.csr_matrix((np.ones(len(codes), np.float32), (rows, codes)), shape=(len(lists), len(uniques)))

    def select(self, mask: np.ndarray, name: str | None = None) -> Dataset:
        """A dataset with the interactions where mask is True; vocabularies and features are kept."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n_interactions,):
            raise DataError("select: mask must have one entry per interaction")
        counts = np.bincount(self.user_index[mask], minlength=self.n_users)
        return replace(
            self, indptr=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            item_index=self.item_index[mask], weight=self.weight[mask], timestamp=self.timestamp[mask],
            rating=None if self.rating is None else self.rating[mask],
            event=None if self.event is None else self.event[mask], name=name or self.name, _cache={},
        )

    def to_frame(self) -> pd.DataFrame:
        """The interactions as a canonical event frame with external ids."""
        frame = pd.DataFrame({
            "user": self.users.lookup(self.user_index), "item": self.items.lookup(self.item_index),
            "timestamp": self.timestamp,
        })
        if self.rating is not None:
            frame["rating"] = self.rating
        frame["weight"] = self.weight
        if self.event is not None:
            frame["event"] = np.asarray(self.event_types, dtype=object)[self.event]
        return frame

    def stats(self) -> dict[str, float | int | str]:
        lengths = np.diff(self.indptr)
        return {
            "name": self.name, "users": self.n_users, "items": self.n_items,
            "interactions": self.n_interactions,
            "density": self.n_interactions / max(1, self.n_users * self.n_items),
            "median_history": float(np.median(lengths)) if len(lengths) else 0.0,
            "has_ratings": self.has_ratings,
        }

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}: {self.n_users} users, {self.n_items} items, "
                f"{self.n_interactions} interactions)")

    # ------------------------------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> None:
        """Write to a directory: dataset.json, arrays.npz and features as Parquet. No pickles."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {"users": self.users.ids.astype(str), "items": self.items.ids.astype(str),
                  "indptr": self.indptr, "item_index": self.item_index, "weight": self.weight,
                  "timestamp": self.timestamp}
        if self.rating is not None:
            arrays["rating"] = self.rating
        if self.event is not None:
            arrays["event"] = self.event
        np.savez(path / "arrays.npz", **arrays)
        for kind, frame in (("item", self.item_features), ("user", self.user_features)):
            if frame is not None:
                frame.to_parquet(path / f"{kind}_features.parquet")
        meta = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "name": self.name,
                "event_types": list(self.event_types), "stats": self.stats()}
        (path / "dataset.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Dataset:
        path = Path(path)
        meta = read_manifest(path, "dataset.json", _FORMAT, _FORMAT_VERSION, "a saved dataset")
        arrays = load_arrays(path)

        def features(kind: str) -> pd.DataFrame | None:
            f = path / f"{kind}_features.parquet"
            return pd.read_parquet(f) if f.is_file() else None

        return cls(
            users=Vocabulary(arrays["users"]), items=Vocabulary(arrays["items"]), indptr=arrays["indptr"],
            item_index=arrays["item_index"], weight=arrays["weight"], timestamp=arrays["timestamp"],
            rating=arrays.get("rating"), event=arrays.get("event"), event_types=tuple(meta["event_types"]),
            item_features=features("item"), user_features=features("user"), name=meta["name"],
        )


def _encode(ids: pd.Series, vocab: Vocabulary | None) -> tuple[Vocabulary, np.ndarray]:
    """Internal indices of a column of ids, with a vocabulary in order of first appearance if none is given."""
    if vocab is not None:
        return vocab, vocab.index(ids.to_numpy())
    codes, uniques = pd.factorize(ids)
    names = np.asarray(uniques).astype(str)
    if len(pd.unique(names)) != len(names):  # e.g. 1 and "1" in one column: the same id once written
        codes, uniques = pd.factorize(ids.astype(str))
        names = np.asarray(uniques).astype(str)
    return Vocabulary(names), codes.astype(np.int64)


def _align(features: pd.DataFrame | None, vocab: Vocabulary, kind: str) -> pd.DataFrame | None:
    if features is None:
        return None
    if not features.index.is_unique:
        raise DataError(f"{kind} features: duplicate {kind} id {features.index[features.index.duplicated()][0]!r}")
    frame = features.copy()
    frame.index = frame.index.astype(str)
    frame = frame.reindex(pd.Index(vocab.ids, name=kind))
    return frame
