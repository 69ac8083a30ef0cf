"""Synthetic implicit-feedback data shaped like MovieLens-20M, for timing factor models at scale.

ML-20M has 138,493 users, 26,744 items and 20M ratings with a heavy popularity skew; the default here is the
shape the iALS timing target is quoted on (138k users, 20k items, 10M interactions). Item popularity follows a
Zipf-like law, user activity a log-normal law (at least `min_per_user` items each), and every user leans
towards one of `n_clusters` item groups, so that there is low-rank structure to learn.
"""

from __future__ import annotations

import numpy as np

from recengine.data.dataset import Dataset
from recengine.data.vocab import Vocabulary


def ml20m_like(
    n_users: int = 138_000,
    n_items: int = 20_000,
    n_interactions: int = 10_000_000,
    seed: int = 42,
    *,
    n_clusters: int = 20,
    zipf_exponent: float = 1.0,
    min_per_user: int = 5,
) -> Dataset:
    """A Dataset of distinct (user, item) pairs with unit weights and increasing timestamps per user.

    The result has exactly n_users users and n_items items in the vocabularies and n_interactions
    interactions (fewer only if n_interactions exceeds what the per-user caps allow).
    """
    rng = np.random.default_rng(seed)
    # Skewed item popularity: item ranks are shuffled so that popularity is not tied to the item index.
    popularity = 1.0 / (np.arange(n_items) + 10.0) ** zipf_exponent
    popularity = popularity[rng.permutation(n_items)]
    cluster_of_item = rng.integers(0, n_clusters, n_items)
    # Per-user activity: log-normal, rescaled to the target total, capped at a quarter of the catalogue.
    activity = rng.lognormal(0.0, 1.2, n_users)
    cap = max(min_per_user, n_items // 4)
    counts = np.clip(np.round(activity / activity.sum() * n_interactions), min_per_user, cap).astype(np.int64)
    counts = _match_total(counts, min(n_interactions, cap * n_users), min_per_user, cap)
    taste = rng.integers(0, n_clusters, n_users)

    # Sample with replacement, drop duplicate pairs, top up until every user has their count.
    # Half of a user's draws come from their cluster, half from the global popularity.
    global_cdf = np.cumsum(popularity) / popularity.sum()
    order = np.argsort(cluster_of_item, kind="stable")
    cluster_start = np.searchsorted(cluster_of_item[order], np.arange(n_clusters + 1))
    cluster_cdf = np.cumsum(popularity[order])
    have = np.zeros(n_users, dtype=np.int64)
    keys = np.empty(0, dtype=np.int64)
    for round_ in range(1000):
        need = counts - have
        if need.sum() == 0:
            break
        users = np.repeat(np.arange(n_users, dtype=np.int64), need + need // 2 + 1)
        # After a few skewed rounds, heavy users have taken most popular items: top up uniformly.
        skewed = round_ < 3
        from_cluster = (rng.random(len(users)) < 0.5) & skewed
        items = (np.searchsorted(global_cdf, rng.random(len(users)) * global_cdf[-1]) if skewed
                 else rng.integers(0, n_items, len(users)))
        c = taste[users[from_cluster]]
        lo = np.where(cluster_start[c] > 0, cluster_cdf[np.maximum(cluster_start[c] - 1, 0)], 0.0)
        hi = cluster_cdf[np.maximum(cluster_start[c + 1] - 1, 0)]
        pos = np.searchsorted(cluster_cdf, lo + rng.random(len(c)) * (hi - lo), side="right")
        items[from_cluster] = order[np.clip(pos, cluster_start[c], np.maximum(cluster_start[c + 1] - 1, 0))]
        items = np.minimum(items, n_items - 1)
        fresh = _sorted_unique(users * n_items + items)
        fresh = fresh[~_isin_sorted(fresh, keys)]
        # Keep at most `need` new pairs per user, chosen at random.
        fresh = fresh[rng.permutation(len(fresh))]
        fresh_users = fresh // n_items
        rank = _rank_within(fresh_users)
        fresh = fresh[rank < need[fresh_users]]
        keys = np.sort(np.concatenate([keys, fresh]))
        have = np.bincount(keys // n_items, minlength=n_users)
    user_index = keys // n_items
    item_index = (keys % n_items).astype(np.int32)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(user_index, minlength=n_users))]).astype(np.int64)
    # Chronological order inside a user is the sampling order: a random permutation within each user.
    shuffle = np.lexsort((rng.random(len(keys)), user_index))
    item_index = item_index[shuffle]
    timestamp = (np.arange(len(keys), dtype=np.int64) - np.repeat(indptr[:-1], np.diff(indptr))) + 1_000_000_000
    return Dataset(
        users=Vocabulary(np.arange(n_users).astype(str)), items=Vocabulary(np.arange(n_items).astype(str)),
        indptr=indptr, item_index=item_index, weight=np.ones(len(keys), dtype=np.float32),
        timestamp=timestamp, name=f"ml20m-like-{n_users}x{n_items}-{len(keys)}",
    )


def _match_total(counts: np.ndarray, total: int, low: int, high: int) -> np.ndarray:
    """Adjust counts (within [low, high]) so that they sum to total, touching the largest ones first."""
    counts = counts.copy()
    for _ in range(100):
        diff = total - int(counts.sum())
        if diff == 0:
            break
        room = (high - counts) if diff > 0 else (counts - low)
        eligible = np.flatnonzero(room > 0)
        if not len(eligible):
            break
        share = np.minimum(room[eligible], int(np.ceil(abs(diff) / len(eligible))))
        share = np.minimum(share, abs(diff) - np.concatenate([[0], np.cumsum(share)[:-1]]).clip(max=abs(diff)))
        counts[eligible] += np.sign(diff) * np.maximum(share, 0)
    return counts


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    # np.unique hashes in NumPy >= 2.3, which is far slower than a sort for 10M int64 keys.
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def _isin_sorted(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """Whether each value occurs in the sorted array sorted_keys."""
    if not len(sorted_keys):
        return np.zeros(len(values), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[pos] == values


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0-based rank of each element among the earlier elements with the same group value."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    starts = np.flatnonzero(np.r_[True, sorted_groups[1:] != sorted_groups[:-1]])
    run = np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))
    rank = np.empty(len(groups), dtype=np.int64)
    rank[order] = run
    return rank
