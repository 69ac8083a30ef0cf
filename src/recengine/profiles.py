"""User profiles and segments: who a user is, read from their history and the items' categories and tags.

A profile describes, it does not predict: the share of a user's recency-weighted interactions per category, the
tags of what they chose, a taste vector, their activity and how mainstream their items are. Segments group users
by their category shares (or by taste vectors over any item embedding) with k-means, and each segment is named
by the categories it over-represents relative to everyone, so that not every segment is called "Drama".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.artifacts import load_arrays, read_manifest
from recengine.data.dataset import Dataset
from recengine.errors import ConfigError, DataError, UnknownIdError

#: A year-old interaction counts half as much as the user's latest one.
DEFAULT_HALF_LIFE_DAYS = 365.0
#: The list-valued item features that hold categories, in the order Dataset.category_matrix looks for them.
CATEGORY_COLUMNS = ("genres", "categories", "attributes")
#: Mainstreamness counts the user's items among the catalogue's most popular 10%.
POPULAR_FRACTION = 0.1
#: A category can name a segment when it is at least 5% of the segment's mix and 1.1× its share overall; a
#: segment is named by its categories only when one of them reaches 1.25×, else it is a "broad" one.
NAME_MIN_SHARE, NAME_MIN_LIFT, NAME_STANDOUT_LIFT = 0.05, 1.1, 1.25
_DAY = 86_400
_FORMAT = "recengine-segments"
_FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Activity:
    """How much and when a user interacts. Dates are UTC; ratings are None where the data has none."""

    interactions: int
    distinct_items: int
    first_seen: str | None
    last_seen: str | None
    active_days: int
    per_active_day: float
    ratings: int
    mean_rating: float | None
    #: Share of the user's distinct items that are among the catalogue's most popular 10%.
    mainstreamness: float | None


@dataclass(frozen=True, eq=False)
class UserProfile:
    """Who a user is. ``categories`` are (name, share) with shares summing to 1 over all categories; ``tags``
    are (tag, share of the user's weighted interactions whose item carries it)."""

    user: str
    activity: Activity
    category_column: str | None
    categories: list[tuple[str, float]]
    tags: list[tuple[str, float]]
    #: Recency-weighted mean of the item vectors of the history (empty when there are none).
    taste: np.ndarray
    half_life_days: float | None
    segment: int | None = None
    segment_name: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "user": self.user, "activity": asdict(self.activity), "category_column": self.category_column,
            "categories": [{"name": n, "weight": w} for n, w in self.categories],
            "tags": [{"name": n, "weight": w} for n, w in self.tags],
            "taste": [float(v) for v in self.taste], "half_life_days": self.half_life_days,
            "segment": None if self.segment is None else {"id": self.segment, "name": self.segment_name},
            "notes": list(self.notes),
        }


@dataclass(frozen=True, eq=False)
class Segments:
    """Users grouped by taste. Segment 0 is the largest; ``labels_[r]`` is the segment of ``users[r]``, -1 for
    a user with nothing to place them by (no interaction with a categorised item, or no item vector)."""

    users: np.ndarray
    labels_: np.ndarray
    #: (n_segments, d) in the space the users were clustered in: category shares or taste vectors.
    centroids: np.ndarray
    names: list[str]
    sizes: np.ndarray
    categories: np.ndarray
    #: (n_segments, n_categories): the mean category shares of each segment's members.
    mix: np.ndarray
    #: (n_categories,): the mean category shares of all segmented users, the baseline for the lift.
    overall: np.ndarray
    space: str
    half_life_days: float | None

    @property
    def n_segments(self) -> int:
        return len(self.centroids)

    @property
    def lift(self) -> np.ndarray:
        """mix / overall: how much more (> 1) or less a segment goes for each category than everyone."""
        return np.divide(self.mix, self.overall, out=np.zeros_like(self.mix), where=self.overall > 0)

    def top_categories(self, segment: int, n: int = 3) -> list[tuple[str, float, float]]:
        """The segment's n largest categories as (name, share, lift)."""
        order = np.argsort(-self.mix[segment], kind="stable")[:n]
        return [(str(self.categories[c]), float(self.mix[segment, c]), float(self.lift[segment, c]))
                for c in order if self.mix[segment, c] > 0]

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """The nearest segment of each row of (n, d) vectors in the segments' space; -1 for an all-zero row."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
        if vectors.shape[1] != self.centroids.shape[1]:
            raise DataError(f"segments were built on {self.centroids.shape[1]}-dimensional {self.space} vectors "
                            f"and these have {vectors.shape[1]}; give the item_vectors that segment_users had")
        labels = _sq_distances(vectors, self.centroids).argmin(axis=1)
        return np.where(np.abs(vectors).sum(axis=1) > 0, labels, -1)

    def label_of(self, user_id: object) -> int | None:
        """The segment of a segmented user; None for a user who is not among them or could not be placed."""
        row = pd.Index(self.users).get_indexer([str(user_id)])[0]
        return None if row < 0 or self.labels_[row] < 0 else int(self.labels_[row])

    def to_frame(self) -> pd.DataFrame:
        """One row per segment: segment, name, users, share of the segmented users, top categories."""
        placed = max(1, int(self.sizes.sum()))
        return pd.DataFrame({
            "segment": np.arange(self.n_segments), "name": self.names, "users": self.sizes,
            "share": self.sizes / placed,
            "top categories": [", ".join(f"{c} {s:.0%} (×{lift:.1f})" for c, s, lift in self.top_categories(k))
                               for k in range(self.n_segments)],
        })

    def to_dict(self) -> dict:
        return {
            "space": self.space, "half_life_days": self.half_life_days,
            "unplaced_users": int((self.labels_ < 0).sum()),
            "segments": [{"id": k, "name": self.names[k], "users": int(self.sizes[k]),
                          "top_categories": [{"name": c, "share": s, "lift": lift}
                                             for c, s, lift in self.top_categories(k)]}
                         for k in range(self.n_segments)],
        }

    def save(self, path: str | Path) -> None:
        """Write segments.json and arrays.npz to a directory. No pickles."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.savez(path / "arrays.npz", users=self.users.astype(str), labels=self.labels_,
                 centroids=self.centroids, sizes=self.sizes, categories=self.categories.astype(str),
                 mix=self.mix, overall=self.overall)
        meta = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "names": self.names, "space": self.space,
                "half_life_days": self.half_life_days}
        (path / "segments.json").write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> Segments:
        path = Path(path)
        meta = read_manifest(path, "segments.json", _FORMAT, _FORMAT_VERSION, "a segments directory")
        a = load_arrays(path)
        return cls(users=a["users"].astype(object), labels_=a["labels"], centroids=a["centroids"],
                   names=list(meta["names"]), sizes=a["sizes"], categories=a["categories"].astype(object),
                   mix=a["mix"], overall=a["overall"], space=meta["space"], half_life_days=meta["half_life_days"])


# ------------------------------------------------------------------------------------------------- profile
def user_profile(
    dataset: Dataset,
    user_id: object,
    *,
    half_life_days: float | None = DEFAULT_HALF_LIFE_DAYS,
    top: int = 10,
    item_vectors: np.ndarray | sp.spmatrix | None = None,
    segments: Segments | None = None,
) -> UserProfile:
    """The profile of one user of `dataset`.

    Each interaction counts its weight (negative weights count 0) times 2^(-days before the user's latest
    interaction / half_life_days); None or 0 turns recency weighting off. An item with several categories
    splits its weight equally between them. item_vectors (n_items, d) give the taste vector; by default each
    item's category row, normalised to sum 1. segments, when given, place the user in one.
    """
    row = dataset.users.index([str(user_id)], missing="negative")[0]
    if row < 0:
        raise UnknownIdError(f"unknown user {str(user_id)!r}: {dataset.name!r} has {dataset.n_users:,} users and "
                             f"this is not one of them; check the id (ids are case-sensitive strings)")
    start, stop = dataset.indptr[row], dataset.indptr[row + 1]
    weighted = _weighted_matrix(dataset, np.asarray([row]), _checked_half_life(half_life_days))
    total = weighted.sum()
    notes: list[str] = []

    categories = _categories(dataset)
    shares = np.zeros(0)
    top_categories: list[tuple[str, float]] = []
    if categories is None:
        notes.append(f"the data has no item categories (no {' / '.join(CATEGORY_COLUMNS)} list column in the "
                     f"item features), so the profile has no categories")
    else:
        shares = _normalised_rows(np.asarray((weighted @ categories.shares).toarray()))[0]
        if not shares.any():
            notes.append(f"none of this user's items has {categories.column}")
        top_categories = _top(categories.names, shares, top)

    top_tags: list[tuple[str, float]] = []
    features = dataset.item_features
    if features is not None and "tags" in features.columns and total > 0:
        tags, tag_names = _one_hot(features["tags"])
        top_tags = _top(tag_names, np.asarray((weighted @ tags).toarray()).ravel() / total, top)

    vectors = item_vectors if item_vectors is not None else None if categories is None else categories.shares
    taste = np.zeros(0) if vectors is None else _weighted_means(weighted, _checked_vectors(vectors, dataset))[0]

    segment = None
    if segments is not None:
        segment = segments.label_of(user_id)
        if segment is None:  # segments of other data (or the user had nothing to place them by): by vector
            placed = segments.assign(taste if segments.space == "item-vectors" else
                                     _aligned(shares, categories, segments.categories))[0]
            segment = None if placed < 0 else int(placed)
    return UserProfile(
        user=str(user_id), activity=_activity(dataset, start, stop),
        category_column=None if categories is None else categories.column, categories=top_categories,
        tags=top_tags, taste=taste, half_life_days=half_life_days, segment=segment,
        segment_name=None if segment is None or segments is None else segments.names[segment], notes=notes,
    )


def _activity(dataset: Dataset, start: int, stop: int) -> Activity:
    items, times = dataset.item_index[start:stop], dataset.timestamp[start:stop]
    days = len(np.unique(times // _DAY))
    popularity = dataset.item_popularity()
    # The most popular 10% of the catalogue (at least one item); a stable sort keeps ties in id order.
    popular = np.zeros(dataset.n_items, dtype=bool)
    popular[np.argsort(-popularity, kind="stable")[:max(1, int(np.ceil(POPULAR_FRACTION * dataset.n_items)))]] = True
    distinct = np.unique(items)
    ratings = None if dataset.rating is None else dataset.rating[start:stop]
    return Activity(
        interactions=int(stop - start), distinct_items=len(distinct),
        first_seen=_iso_date(times[0]) if len(times) else None, last_seen=_iso_date(times[-1]) if len(times) else None,
        active_days=days, per_active_day=float((stop - start) / days) if days else 0.0,
        ratings=0 if ratings is None else len(ratings),
        mean_rating=float(ratings.mean()) if ratings is not None and len(ratings) else None,
        mainstreamness=float(popular[distinct].mean()) if len(distinct) else None,
    )


def _iso_date(timestamp: int) -> str:
    """The UTC date of seconds since the epoch; the number itself when it is no such time (a sequence number
    far out of range)."""
    try:
        return datetime.fromtimestamp(int(timestamp), tz=UTC).date().isoformat()
    except (ValueError, OverflowError, OSError):
        return str(int(timestamp))


# ------------------------------------------------------------------------------------------------ segments
def segment_users(
    dataset: Dataset,
    n_segments: int = 8,
    *,
    random_state: int = 0,
    item_vectors: np.ndarray | sp.spmatrix | None = None,
    half_life_days: float | None = DEFAULT_HALF_LIFE_DAYS,
    n_init: int = 4,
) -> Segments:
    """k-means over all users at once: on their category shares, or on their taste vectors (the recency-
    weighted mean of `item_vectors`) when those are given. k-means++ starts, seeded by random_state; the best
    of n_init runs (lowest inertia) is kept. Users are weighted as in `user_profile`."""
    if n_segments < 1 or n_init < 1:
        raise ConfigError(f"n_segments and n_init must be >= 1, got {n_segments} and {n_init}")
    categories = _categories(dataset)
    if categories is None and item_vectors is None:
        raise DataError(f"segments need item categories (a {' / '.join(CATEGORY_COLUMNS)} list column in the "
                        f"item features) or item_vectors; {dataset.name!r} has neither")
    weighted = _weighted_matrix(dataset, None, _checked_half_life(half_life_days))
    shares = (np.zeros((dataset.n_users, 0)) if categories is None
              else _normalised_rows(np.asarray((weighted @ categories.shares).toarray())))
    if item_vectors is None:
        space, points = "categories", shares
    else:
        space, points = "item-vectors", _weighted_means(weighted, _checked_vectors(item_vectors, dataset))
    placed = np.flatnonzero(np.abs(points).sum(axis=1) > 0)
    if len(placed) < n_segments:
        raise ConfigError(f"only {len(placed)} user(s) have {space} to group them by; ask for at most "
                          f"{len(placed)} segments")
    rng = np.random.default_rng(random_state)
    centroids, labels = _kmeans(points[placed], n_segments, rng, n_init)
    # Number the segments by size, largest first, so that the numbering does not depend on the start.
    sizes = np.bincount(labels, minlength=n_segments)
    order = np.argsort(-sizes, kind="stable")
    rank = np.empty(n_segments, dtype=np.int64)
    rank[order] = np.arange(n_segments)
    labels, centroids, sizes = rank[labels], centroids[order], sizes[order]
    members = sp.csr_matrix((np.ones(len(placed)), (labels, np.arange(len(placed)))), shape=(n_segments, len(placed)))
    mix = (members @ shares[placed]) / sizes[:, None]
    overall = shares[placed].mean(axis=0)
    names = np.asarray([] if categories is None else categories.names, dtype=object)
    all_labels = np.full(dataset.n_users, -1, dtype=np.int64)
    all_labels[placed] = labels
    return Segments(
        users=dataset.users.ids, labels_=all_labels, centroids=centroids,
        names=_segment_names(mix, overall, names), sizes=sizes, categories=names, mix=mix, overall=overall,
        space=space, half_life_days=half_life_days,
    )


def _segment_names(mix: np.ndarray, overall: np.ndarray, names: np.ndarray) -> list[str]:
    """Each segment's up to 3 over-represented categories, ordered by share × log(lift) (their term in the
    divergence of the segment's mix from the overall one), so a large category with some lift beats a tiny one
    with much; "broad: A + B" (its two largest) when none stands out; "segment k" without categories."""
    lift = np.divide(mix, overall, out=np.zeros_like(mix), where=overall > 0)
    labels = []
    for k in range(len(mix)):  # one pass per segment, a handful of them
        if not len(names):
            labels.append(f"segment {k}")
            continue
        candidates = np.flatnonzero((mix[k] >= NAME_MIN_SHARE) & (lift[k] >= NAME_MIN_LIFT))
        chosen = candidates[np.argsort(-mix[k, candidates] * np.log(lift[k, candidates]), kind="stable")][:3]
        if (lift[k, chosen] >= NAME_STANDOUT_LIFT).any():
            labels.append(" + ".join(names[chosen]))
        else:
            labels.append("broad: " + " + ".join(names[np.argsort(-mix[k], kind="stable")[:2]]))
    # Two segments can stand out on the same categories; their numbers tell them apart.
    return [name if labels.count(name) == 1 else f"{name} ({k})" for k, name in enumerate(labels)]


def _kmeans(points: np.ndarray, k: int, rng: np.random.Generator, n_init: int) -> tuple[np.ndarray, np.ndarray]:
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for _ in range(n_init):
        inertia, centroids, labels = _lloyd(points, _kmeans_plus_plus(points, k, rng))
        if best is None or inertia < best[0]:
            best = (inertia, centroids, labels)
    assert best is not None
    return best[1], best[2]


def _kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k starting centroids, each drawn with probability proportional to its squared distance to the nearest
    one drawn so far (Arthur & Vassilvitskii 2007)."""
    centroids = np.empty((k, points.shape[1]))
    centroids[0] = points[rng.integers(len(points))]
    # Exact differences rather than the expanded form: a point equal to a centroid must get exactly 0.
    nearest = ((points - centroids[0]) ** 2).sum(axis=1)
    for c in range(1, k):
        total = nearest.sum()
        if total <= 0:
            raise ConfigError(f"the users have only {c} distinct profiles; ask for at most {c} segments")
        centroids[c] = points[rng.choice(len(points), p=nearest / total)]
        nearest = np.minimum(nearest, ((points - centroids[c]) ** 2).sum(axis=1))
    return centroids


def _lloyd(points: np.ndarray, centroids: np.ndarray, max_iter: int = 100) -> tuple[float, np.ndarray, np.ndarray]:
    """Lloyd iterations until no point changes segment: (inertia, centroids, labels)."""
    n, k = len(points), len(centroids)
    labels = np.full(n, -1)
    for _ in range(max_iter):
        distances = _sq_distances(points, centroids)
        new = distances.argmin(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        members = sp.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
        centroids = (members @ points) / np.maximum(counts, 1)[:, None]
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            # An emptied segment restarts at the points worst served by the others.
            far = np.argsort(-distances[np.arange(n), labels], kind="stable")[:len(empty)]
            centroids[empty] = points[far]
    return float(distances[np.arange(n), labels].sum()), centroids, labels


def _sq_distances(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    d = (points ** 2).sum(axis=1)[:, None] - 2 * points @ centroids.T + (centroids ** 2).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


# ------------------------------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class _Categories:
    column: str
    names: np.ndarray
    #: (n_items, n_categories); an item's row sums to 1 over its categories, 0 for an item without any.
    shares: sp.csr_matrix


def _categories(dataset: Dataset) -> _Categories | None:
    features = dataset.item_features
    column = next((c for c in CATEGORY_COLUMNS if features is not None and c in features.columns), None)
    if features is None or column is None:
        return None
    one_hot, names = _one_hot(features[column])
    if not len(names):
        return None
    counts = np.asarray(one_hot.sum(axis=1)).ravel()
    scale = np.divide(1.0, counts, out=np.zeros_like(counts, dtype=np.float64), where=counts > 0)
    return _Categories(column, names, sp.csr_matrix(sp.diags(scale) @ one_hot))


def _one_hot(column: pd.Series) -> tuple[sp.csr_matrix, np.ndarray]:
    """(n_items, n_values) 0/1 matrix of a list-valued feature (lists, or arrays after a Parquet round trip),
    with the value names in order of first appearance."""
    lists = column.map(lambda v: [str(x) for x in v] if isinstance(v, list | tuple | np.ndarray) else [])
    rows = np.repeat(np.arange(len(lists)), lists.map(len).to_numpy())
    codes, names = pd.factorize(pd.Series([v for vs in lists for v in vs], dtype=object))
    matrix = sp.csr_matrix((np.ones(len(codes)), (rows, codes)), shape=(len(lists), len(names)))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # a value listed twice for one item counts once
    return matrix, np.asarray(names, dtype=object)


def _weighted_matrix(dataset: Dataset, users: np.ndarray | None, half_life_days: float | None) -> sp.csr_matrix:
    """(users, n_items) sums of interaction weights (negative ones count 0) × 2^(-age / half-life), age in days
    before the user's latest interaction."""
    h = dataset.histories(users)
    weight = np.maximum(h.entry_weights().astype(np.float64), 0.0)
    if half_life_days and len(h.items):
        # Histories are in time order, so a row's last entry is its latest; an empty row repeats nothing.
        latest = np.repeat(h.timestamps[np.maximum(h.indptr[1:] - 1, 0)], h.lengths)
        weight = weight * np.exp2(-(latest - h.timestamps) / _DAY / half_life_days)
    matrix = sp.csr_matrix((weight, (h.row_of_entry, h.items)), shape=(len(h), h.n_items))
    matrix.sum_duplicates()
    return matrix


def _weighted_means(weighted: sp.csr_matrix, vectors: np.ndarray | sp.spmatrix) -> np.ndarray:
    """Each row's weighted mean of the item vectors (zeros for a row without weight)."""
    sums = weighted @ vectors
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    totals = np.asarray(weighted.sum(axis=1)).ravel()
    return np.divide(sums, totals[:, None], out=np.zeros_like(sums, dtype=np.float64), where=totals[:, None] > 0)


def _normalised_rows(matrix: np.ndarray) -> np.ndarray:
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros_like(matrix, dtype=np.float64), where=totals > 0)


def _aligned(shares: np.ndarray, categories: _Categories | None, names: np.ndarray) -> np.ndarray:
    """A user's category shares in the column order of `names` (segments built on other data)."""
    if categories is None:
        return np.zeros(len(names))
    return pd.Series(shares, index=categories.names).reindex(names, fill_value=0.0).to_numpy()


def _top(names: np.ndarray, values: np.ndarray, n: int) -> list[tuple[str, float]]:
    order = np.argsort(-values, kind="stable")[:n]
    return [(str(names[i]), float(values[i])) for i in order if values[i] > 0]


def _checked_half_life(half_life_days: float | None) -> float | None:
    if half_life_days is not None and not half_life_days >= 0:
        raise ConfigError(f"half_life_days must be >= 0 (0 or None: no recency weighting), got {half_life_days}")
    return half_life_days


def _checked_vectors(vectors: np.ndarray | sp.spmatrix, dataset: Dataset) -> np.ndarray | sp.spmatrix:
    if vectors.ndim != 2 or vectors.shape[0] != dataset.n_items:
        raise DataError(f"item_vectors must be (n_items, d) = ({dataset.n_items}, d); got shape {vectors.shape}")
    return vectors if sp.issparse(vectors) else np.asarray(vectors, dtype=np.float64)
