"""Evaluation protocols: how a Dataset is cut into what models learn from and what they are judged on.

Every protocol returns a :class:`~recengine.data.split.Split` and records its name and resolved options in
``split.info["options"]``, so results can always say which protocol produced them. Protocols (DESIGN.md,
"Evaluation protocols"):

* ``temporal-user``   newest ``test_fraction`` of each user's interactions are test;
* ``loo``             each user's latest interaction is test (optionally ranked among sampled negatives);
* ``strong``          held-out users; 80% of their history is folded in at scoring time, 20% is the truth;
* ``global-temporal`` one cut time for everyone;
* ``ratings``         random hold-out or k-fold over explicit ratings (or a predefined train/test pair);
* ``cold-items``      the newest items (first seen after one cut time) are ranked among themselves, for users
                      who interact with them after the cut; train is everything before the cut;
* ``cold-users``      held-out users known only by their first ``n_known`` interactions (1, 3, 5, ...).

All randomness comes from ``random_state``; every protocol accepts it (the time-based ones ignore it), so a
caller can pass one seed to whichever protocol it names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numba
import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.split import Split
from recengine.errors import ConfigError, DataError

__all__ = [
    "PROTOCOLS", "cold_items_split", "cold_users_split",
    "global_temporal_split", "leave_one_out_split", "predefined_split", "ratings_split",
    "sampled_candidates", "split", "strong_generalization_split", "temporal_user_split", "validation_split",
]



# ------------------------------------------------------------------------------------------------- helpers
def _check_fraction(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating) or not 0 < value < 1:
        raise ConfigError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def _check_int(name: str, value: int, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _position_in_row(indptr: np.ndarray) -> np.ndarray:
    """0-based position of every entry inside its CSR row (entries are chronological within a user)."""
    lengths = np.diff(indptr)
    return np.arange(indptr[-1], dtype=np.int64) - np.repeat(indptr[:-1], lengths)


def _n_test(lengths: np.ndarray, fraction: float) -> np.ndarray:
    """round(length * fraction), clipped so that every row keeps at least one test and one train entry."""
    return np.clip(np.rint(lengths * fraction).astype(np.int64), 1, np.maximum(lengths - 1, 1))


def _require_interactions(dataset: Dataset, protocol: str) -> None:
    if dataset.n_interactions == 0:
        raise DataError(f"{protocol}: dataset {dataset.name!r} has no interactions to split")


def _finish(
    protocol: str,
    dataset: Dataset,
    test_mask: np.ndarray,
    options: dict[str, Any],
    *,
    drop_cold_users: bool = False,
    drop_unseen_items: bool = True,
    info: dict[str, Any] | None = None,
) -> Split:
    """Build the Split from a per-interaction test mask; optionally drop test events of cold users."""
    info = {"options": options, **(info or {})}
    train = dataset.select(~test_mask, name=f"{dataset.name}:train")
    if drop_cold_users:
        has_train = np.diff(train.indptr) > 0
        cold = test_mask & ~has_train[dataset.user_index]
        info["dropped_cold_user_test_interactions"] = int(cold.sum())
        test_mask = test_mask & ~cold
    test = dataset.select(test_mask, name=f"{dataset.name}:test")
    if test.n_interactions == 0:
        raise DataError(f"{protocol}: no test interactions remain; the dataset is too small or too sparse "
                        "for this protocol (try a larger test fraction or another protocol)")
    result = Split.from_datasets(protocol, train, test, drop_unseen_items=drop_unseen_items, info=info)
    return _record_counts(result)


def _record_counts(result: Split) -> Split:
    result.info.update(train_interactions=result.train.n_interactions,
                       test_interactions=result.test.n_interactions,
                       evaluated_users=result.n_users, truth_entries=int(result.truth.nnz))
    if result.n_users == 0:
        raise DataError(f"{result.protocol}: no user can be evaluated (no test interaction has both a user "
                        "with train history and an item seen in train); use more data or another protocol")
    return result


# ----------------------------------------------------------------------------------------------- protocols
def temporal_user_split(
    dataset: Dataset,
    *,
    test_fraction: float = 0.2,
    min_interactions: int = 5,
    random_state: int | None = 42,
) -> Split:
    """Per user with >= min_interactions interactions, the newest test_fraction (at least one, leaving at
    least one for train) are test; ties in time keep the stored order. Other users stay fully in train.
    Deterministic: random_state is accepted for a uniform signature and ignored."""
    test_fraction = _check_fraction("test_fraction", test_fraction)
    min_interactions = _check_int("min_interactions", min_interactions, 2)
    _require_interactions(dataset, "temporal-user")
    lengths = np.diff(dataset.indptr)
    n_test = np.where(lengths >= min_interactions, _n_test(lengths, test_fraction), 0)
    user = dataset.user_index
    test_mask = _position_in_row(dataset.indptr) >= (lengths - n_test)[user]
    options = {"test_fraction": test_fraction, "min_interactions": min_interactions}
    return _finish("temporal-user", dataset, test_mask, options)


def leave_one_out_split(
    dataset: Dataset,
    *,
    min_interactions: int = 2,
    n_negatives: int | None = None,
    random_state: int | None = 42,
) -> Split:
    """Each user's latest interaction (the last stored on a time tie) is test, for users with >=
    min_interactions. n_negatives=None ranks over all items; an integer (papers use 99 or 100) ranks each
    user's truth among that many sampled unseen negatives (see sampled_candidates)."""
    min_interactions = _check_int("min_interactions", min_interactions, 2)
    if n_negatives is not None:
        n_negatives = _check_int("n_negatives", n_negatives, 1)
    _require_interactions(dataset, "loo")
    lengths = np.diff(dataset.indptr)
    last = dataset.indptr[1:][lengths >= min_interactions] - 1
    test_mask = np.zeros(dataset.n_interactions, dtype=bool)
    test_mask[last] = True
    options = {"min_interactions": min_interactions, "n_negatives": n_negatives, "random_state": random_state}
    result = _finish("loo", dataset, test_mask, options)
    if n_negatives is not None:
        candidates = sampled_candidates(result, n_negatives, random_state=random_state)
        result = replace(result, candidates=candidates)
    return result


def strong_generalization_split(
    dataset: Dataset,
    *,
    n_test_users: int | None = None,
    test_users_fraction: float = 0.1,
    test_fraction: float = 0.2,
    min_interactions: int = 5,
    random_state: int | None = 42,
) -> Split:
    """Strong generalization: n_test_users (default: test_users_fraction of the users with >=
    min_interactions) are held out, chosen at random; all their interactions leave train. Each held-out
    history is split at random: test_fraction (at least one, leaving at least one) becomes the truth,
    the rest the query, which models must fold in (query.users is -1)."""
    test_users_fraction = _check_fraction("test_users_fraction", test_users_fraction)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    min_interactions = _check_int("min_interactions", min_interactions, 2)
    _require_interactions(dataset, "strong")
    rng = np.random.default_rng(random_state)
    lengths = np.diff(dataset.indptr)
    eligible = np.flatnonzero(lengths >= min_interactions)
    if n_test_users is None:
        n_held = max(1, int(round(len(eligible) * test_users_fraction)))
    else:
        n_held = _check_int("n_test_users", n_test_users, 1)
    if n_held >= len(eligible):
        raise DataError(f"strong: {n_held} held-out users requested but only {len(eligible)} users have >= "
                        f"{min_interactions} interactions (some must stay for training); lower n_test_users")
    held = np.sort(rng.choice(eligible, size=n_held, replace=False))
    is_held = np.zeros(dataset.n_users, dtype=bool)
    is_held[held] = True
    user = dataset.user_index
    in_held = is_held[user]
    # Random 80/20 within each held-out history: rank a user's entries by a random key; the lowest are test.
    keys = rng.random(dataset.n_interactions)
    order = np.lexsort((keys, user))
    rank = np.empty(dataset.n_interactions, dtype=np.int64)
    rank[order] = _position_in_row(dataset.indptr)
    n_test = _n_test(lengths, test_fraction)
    test_mask = in_held & (rank < n_test[user])
    query_mask = in_held & ~test_mask

    train = dataset.select(~in_held, name=f"{dataset.name}:train")
    test = dataset.select(test_mask, name=f"{dataset.name}:test")
    # The query must have one row per user that Split.from_datasets will evaluate: users whose truth keeps at
    # least one item seen in train (the same rule from_datasets applies).
    seen = np.bincount(train.item_index, minlength=dataset.n_items) > 0
    evaluated = np.flatnonzero(np.bincount(test.user_index[seen[test.item_index]], minlength=dataset.n_users))
    query = dataset.select(query_mask).histories(evaluated)
    query = query.with_users(np.full(len(query), -1, dtype=np.int64))
    options = {"n_test_users": n_test_users, "test_users_fraction": test_users_fraction,
               "test_fraction": test_fraction, "min_interactions": min_interactions,
               "random_state": random_state}
    result = Split.from_datasets("strong", train, test, query=query,
                                 info={"options": options, "held_out_users": int(n_held)})
    return _record_counts(result)


def global_temporal_split(
    dataset: Dataset,
    *,
    test_fraction: float = 0.2,
    cut: int | float | None = None,
    random_state: int | None = 42,
) -> Split:
    """One cut time for everyone: events strictly after `cut` (default: the 1 - test_fraction quantile of all
    timestamps) are test. Evaluated users are those with train history and test events. Deterministic."""
    _require_interactions(dataset, "global-temporal")
    if cut is None:
        test_fraction = _check_fraction("test_fraction", test_fraction)
        cut = int(np.quantile(dataset.timestamp, 1.0 - test_fraction, method="lower"))
    elif isinstance(cut, bool) or not isinstance(cut, int | float | np.integer | np.floating):
        raise ConfigError(f"cut must be a timestamp (a number), got {cut!r}")
    test_mask = dataset.timestamp > cut
    if not test_mask.any() or test_mask.all():
        which = "no" if not test_mask.any() else "only"
        raise DataError(f"global-temporal: cut {cut} leaves {which} test events (timestamps span "
                        f"{dataset.timestamp.min()}..{dataset.timestamp.max()}); choose another cut")
    options = {"test_fraction": test_fraction, "cut": cut}
    return _finish("global-temporal", dataset, test_mask, options, drop_cold_users=True, info={"cut": cut})


def ratings_split(
    dataset: Dataset,
    *,
    test_fraction: float = 0.1,
    fold: int | None = None,
    n_folds: int = 5,
    drop_unseen_items: bool = True,
    random_state: int | None = 42,
) -> Split:
    """Explicit ratings, split at random: a test_fraction hold-out, or, with `fold` given, fold `fold` of
    n_folds (the folds of one seed partition the data). Test ratings of users or items absent from train are
    dropped by default (drop_unseen_items=False keeps unseen items, as some published RMSE numbers do)."""
    if not dataset.has_ratings:
        raise DataError(f"ratings: dataset {dataset.name!r} has no explicit ratings; use the temporal-user, "
                        "loo, strong or global-temporal protocol for implicit feedback")
    _require_interactions(dataset, "ratings")
    rng = np.random.default_rng(random_state)
    perm = rng.permutation(dataset.n_interactions)
    test_mask = np.zeros(dataset.n_interactions, dtype=bool)
    if fold is None:
        test_fraction = _check_fraction("test_fraction", test_fraction)
        n_test = max(1, int(round(dataset.n_interactions * test_fraction)))
        test_mask[perm[:n_test]] = True
    else:
        n_folds = _check_int("n_folds", n_folds, 2)
        if isinstance(fold, bool) or not isinstance(fold, int | np.integer) or not 0 <= fold < n_folds:
            raise ConfigError(f"fold must be an integer in [0, {n_folds}), got {fold!r}")
        test_mask[perm[np.arange(dataset.n_interactions) % n_folds == fold]] = True
    options = {"test_fraction": test_fraction, "fold": fold, "n_folds": n_folds,
               "drop_unseen_items": drop_unseen_items, "random_state": random_state}
    return _finish("ratings", dataset, test_mask, options, drop_cold_users=True,
                   drop_unseen_items=drop_unseen_items)


def predefined_split(
    train: Dataset,
    test: Dataset,
    *,
    protocol: str = "ratings",
    drop_unseen_items: bool = True,
    drop_cold_users: bool = True,
) -> Split:
    """A Split from a given train/test pair (e.g. GroupLens u1.base / u1.test), which must share user and item
    vocabularies (build both with the same Vocabulary objects)."""
    if train.users != test.users or train.items != test.items:
        raise DataError("predefined split: train and test must share user and item vocabularies; build both "
                        "Datasets with the same `users=` and `items=` Vocabulary")
    info: dict[str, Any] = {"options": {"source": "predefined", "drop_unseen_items": drop_unseen_items,
                                        "drop_cold_users": drop_cold_users}}
    if drop_cold_users:
        has_train = np.diff(train.indptr) > 0
        keep = has_train[test.user_index]
        info["dropped_cold_user_test_interactions"] = int((~keep).sum())
        test = test.select(keep)
    result = Split.from_datasets(protocol, train, test, drop_unseen_items=drop_unseen_items, info=info)
    return _record_counts(result)


def cold_items_split(
    dataset: Dataset,
    *,
    item_fraction: float = 0.1,
    cut: int | float | None = None,
    selection: str = "newest",
    random_state: int | None = 42,
) -> Split:
    """Item cold start. With selection "newest", the cold items are those first seen at or after one cut
    time: by default the first interaction of the newest item_fraction of items (by first-seen time); or an
    explicit `cut` (items first seen after it). Train is every interaction before the cut, so no cold item has
    any. With selection "random" (data without real time, such as sequence files), a random item_fraction of
    the items is cold and train is every interaction with the other items. The truth of each user with train
    history is the cold items they interact with (from the cut on), and every row ranks all cold items
    (candidates): a model can only place them through item features."""
    _require_interactions(dataset, "cold-items")
    if selection not in ("newest", "random"):
        raise ConfigError(f"selection must be 'newest' or 'random', got {selection!r}")
    never = np.iinfo(np.int64).max
    first_seen = np.full(dataset.n_items, never, dtype=np.int64)
    np.minimum.at(first_seen, dataset.item_index, dataset.timestamp)
    occurring = np.flatnonzero(first_seen < never)
    cut_time = None
    if selection == "random":
        item_fraction = _check_fraction("item_fraction", item_fraction)
        n_pick = max(1, int(round(len(occurring) * item_fraction)))
        cold = np.zeros(dataset.n_items, dtype=bool)
        cold[np.random.default_rng(random_state).choice(occurring, size=n_pick, replace=False)] = True
    else:
        if cut is None:
            item_fraction = _check_fraction("item_fraction", item_fraction)
            newest = np.sort(first_seen[occurring])[::-1]
            cut_time = int(newest[max(1, int(round(len(occurring) * item_fraction))) - 1])
        elif isinstance(cut, bool) or not isinstance(cut, int | float | np.integer | np.floating):
            raise ConfigError(f"cut must be a timestamp (a number), got {cut!r}")
        else:
            cut_time = int(np.floor(cut)) + 1
        cold = (first_seen >= cut_time) & (first_seen < never)
    n_cold = int(cold.sum())
    if n_cold == 0 or n_cold == len(occurring):
        raise DataError(f"cold-items: the cut leaves {'no' if n_cold == 0 else 'only'} cold items; choose "
                        "another item_fraction or cut")
    on_cold = cold[dataset.item_index]
    before = ~on_cold if cut_time is None else dataset.timestamp < cut_time
    test_mask = ~before & on_cold
    train = dataset.select(before, name=f"{dataset.name}:train")
    has_train = np.diff(train.indptr) > 0
    test = dataset.select(test_mask & has_train[dataset.user_index], name=f"{dataset.name}:test")
    if test.n_interactions == 0:
        raise DataError("cold-items: no user with history before the cut interacts with a cold item after it")
    options = {"item_fraction": item_fraction, "cut": cut, "selection": selection, "random_state": random_state}
    info = {"options": options, "cold_items": n_cold, **({} if cut_time is None else {"cut": cut_time})}
    result = Split.from_datasets("cold-items", train, test, drop_unseen_items=False, info=info)
    cold_items = np.flatnonzero(cold)
    candidates = sp.csr_matrix(
        (np.ones(result.n_users * n_cold, dtype=np.float32), np.tile(cold_items, result.n_users),
         np.arange(result.n_users + 1, dtype=np.int64) * n_cold), shape=(result.n_users, dataset.n_items))
    return _record_counts(replace(result, candidates=candidates))


def cold_users_split(
    dataset: Dataset,
    *,
    n_known: int = 3,
    test_users_fraction: float = 0.1,
    min_interactions: int = 10,
    random_state: int | None = 42,
) -> Split:
    """User cold start: test_users_fraction of the users with >= min_interactions are held out at random (the
    same users for every n_known, given the seed); all their interactions leave train. Each is known by the
    first n_known interactions in time (the query, folded in at scoring time, users -1); the rest are the truth
    (items of the known part and items unseen in train removed)."""
    n_known = _check_int("n_known", n_known, 1)
    test_users_fraction = _check_fraction("test_users_fraction", test_users_fraction)
    min_interactions = _check_int("min_interactions", min_interactions, 2)
    if min_interactions <= n_known:
        raise ConfigError(f"min_interactions ({min_interactions}) must exceed n_known ({n_known}) so that "
                          "every held-out user has something to predict")
    _require_interactions(dataset, "cold-users")
    lengths = np.diff(dataset.indptr)
    eligible = np.flatnonzero(lengths >= min_interactions)
    n_held = max(1, int(round(len(eligible) * test_users_fraction)))
    if n_held >= len(eligible):
        raise DataError(f"cold-users: {len(eligible)} users have >= {min_interactions} interactions, too few "
                        "to hold some out and train on the rest; lower min_interactions")
    held = np.sort(np.random.default_rng(random_state).choice(eligible, size=n_held, replace=False))
    in_held = np.isin(dataset.user_index, held)
    known_mask = in_held & (_position_in_row(dataset.indptr) < n_known)
    train = dataset.select(~in_held, name=f"{dataset.name}:train")
    known = dataset.select(known_mask)
    seen_in_train = np.bincount(train.item_index, minlength=dataset.n_items) > 0
    known_pairs = known.matrix("binary")
    test_mask = in_held & ~known_mask
    test_mask[test_mask] = np.asarray(known_pairs[dataset.user_index[test_mask],
                                                  dataset.item_index[test_mask]]).ravel() == 0
    dropped_unseen = int((test_mask & ~seen_in_train[dataset.item_index]).sum())
    test = dataset.select(test_mask & seen_in_train[dataset.item_index], name=f"{dataset.name}:test")
    evaluated = np.flatnonzero(np.diff(test.indptr) > 0)
    query = known.histories(evaluated).with_users(np.full(len(evaluated), -1, dtype=np.int64))
    options = {"n_known": n_known, "test_users_fraction": test_users_fraction,
               "min_interactions": min_interactions, "random_state": random_state}
    result = Split.from_datasets("cold-users", train, test, query=query, drop_unseen_items=False,
                                 info={"options": options, "held_out_users": int(n_held),
                                       "dropped_unseen_test_interactions": dropped_unseen})
    return _record_counts(result)


# ------------------------------------------------------------------------------------------------ dispatch
PROTOCOLS: dict[str, Callable[..., Split]] = {
    "temporal-user": temporal_user_split,
    "loo": leave_one_out_split,
    "strong": strong_generalization_split,
    "global-temporal": global_temporal_split,
    "ratings": ratings_split,
    "cold-items": cold_items_split,
    "cold-users": cold_users_split,
}
_ALIASES = {"leave-one-out": "loo", "strong-generalization": "strong"}


def _protocol_function(protocol: str) -> tuple[str, Callable[..., Split]]:
    name = str(protocol).strip().lower().replace("_", "-")
    name = _ALIASES.get(name, name)
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; available: {', '.join(PROTOCOLS)}")
    return name, PROTOCOLS[name]


def split(dataset: Dataset, protocol: str, **options: Any) -> Split:
    """Split `dataset` with the named protocol (temporal-user, loo, strong, global-temporal, ratings); options
    are that protocol's keyword arguments (see its function)."""
    name, function = _protocol_function(protocol)
    valid = [p for p in inspect.signature(function).parameters if p != "dataset"]
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(f"protocol {name!r} has no option(s) {unknown}; valid options: {', '.join(valid)}")
    return function(dataset, **options)


def validation_split(
    split_or_dataset: Split | Dataset,
    protocol: str | None = None,
    **options: Any,
) -> Split:
    """A validation Split carved out of train data with the same protocol, so tuning never sees the test set.

    Given a Split, its train Dataset is split with the Split's own protocol and options (an explicit `cut` or
    k-fold `fold` are replaced by their defaults, which make sense on the older, smaller train data); given
    options override. Given a Dataset, `protocol` is required. The result has info["role"] == "validation".
    """
    if isinstance(split_or_dataset, Split) and split_or_dataset.protocol == "ncf-sampled" and protocol is None:
        # Given-negatives files: mirror them on the training data (latest item against as many sampled
        # negatives, ranked without removing seen items, as the test protocol does).
        base = split_or_dataset
        per_row = np.diff(base.candidates.indptr) if base.candidates is not None else np.array([100])
        n_negatives = int(np.median(per_row)) - 1
        result = replace(leave_one_out_split(base.train, n_negatives=n_negatives, **options), exclude_seen=False)
        result.info["role"] = "validation"
        return result
    if isinstance(split_or_dataset, Split):
        base = split_or_dataset
        dataset = base.train
        protocol = protocol or base.protocol
        inherited = dict(base.info.get("options", {}))
        for key in ("cut", "fold", "source"):
            inherited.pop(key, None)
        _, function = _protocol_function(protocol)
        valid = set(inspect.signature(function).parameters)
        options = {**{k: v for k, v in inherited.items() if k in valid}, **options}
    elif isinstance(split_or_dataset, Dataset):
        if protocol is None:
            raise ConfigError("validation_split: name the protocol when passing a Dataset")
        dataset = split_or_dataset
    else:
        raise ConfigError("validation_split: pass a Split or a Dataset")
    result = split(dataset, protocol, **options)
    result.info["role"] = "validation"
    return result


# ---------------------------------------------------------------------------------------- sampled negatives
def sampled_candidates(split: Split, n_negatives: int = 100, random_state: int | None = 42) -> sp.csr_matrix:
    """Candidates for sampled-negative ranking: each row holds the user's truth items plus n_negatives items
    drawn uniformly without replacement among those neither in the user's query history nor in the truth
    (fewer when fewer exist). A CSR matrix shaped like split.truth, values 1."""
    n_negatives = _check_int("n_negatives", n_negatives, 1)
    rng = np.random.default_rng(random_state)
    truth = sp.csr_matrix(split.truth, dtype=np.float32, copy=True)
    truth.data[:] = 1.0
    history = split.query.matrix("binary")
    excluded = (truth + history).tocsr()
    excluded.sum_duplicates()
    negatives = _sample_negatives(excluded, n_negatives, rng)
    candidates = (truth + negatives).tocsr()
    candidates.sum_duplicates()
    candidates.data[:] = 1.0
    return candidates


def _sample_negatives(excluded: sp.csr_matrix, n: int, rng: np.random.Generator) -> sp.csr_matrix:
    """Per row, min(n, #allowed) distinct columns drawn uniformly among those not stored in `excluded`."""
    excluded = sp.csr_matrix(excluded)
    excluded.sum_duplicates()
    n_rows, n_items = excluded.shape
    want = np.minimum(n, n_items - np.diff(excluded.indptr)).astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(want)]).astype(np.int64)
    out = np.empty(indptr[-1], dtype=np.int64)
    # One seed per row drawn from the caller's generator: results do not depend on the thread schedule.
    seeds = rng.integers(0, 2**31 - 1, size=n_rows, dtype=np.int64)
    n_chunks = max(1, min(n_rows, 64))
    _sample_rows(excluded.indptr.astype(np.int64), excluded.indices.astype(np.int64), n_items, want, indptr,
                 seeds, out, n_chunks)
    return sp.csr_matrix((np.ones(len(out), dtype=np.float32), out, indptr), shape=(n_rows, n_items))


@numba.njit(parallel=True, cache=True, nogil=True)
def _sample_rows(ex_indptr, ex_indices, n_items, want, indptr, seeds, out, n_chunks):  # pragma: no cover
    n_rows = len(want)
    for c in numba.prange(n_chunks):
        # One marker array per chunk of rows, cleared after each row: no per-row O(n_items) allocation.
        mark = np.zeros(n_items, dtype=np.bool_)
        for r in range(c * n_rows // n_chunks, (c + 1) * n_rows // n_chunks):
            w = want[r]
            if w <= 0:
                continue
            np.random.seed(seeds[r])
            lo, hi = ex_indptr[r], ex_indptr[r + 1]
            for j in range(lo, hi):
                mark[ex_indices[j]] = True
            allowed = n_items - (hi - lo)
            start = indptr[r]
            if 2 * (allowed - w) >= n_items:
                # Rejection: every draw succeeds with probability >= 1/2; redraws of chosen items are
                # rejected too, which makes this uniform sampling without replacement.
                count = 0
                while count < w:
                    i = np.random.randint(0, n_items)
                    if not mark[i]:
                        mark[i] = True
                        out[start + count] = i
                        count += 1
                for t in range(w):
                    mark[out[start + t]] = False
            else:
                # Few allowed items: list them and take a partial Fisher-Yates shuffle.
                pool = np.empty(allowed, dtype=np.int64)
                k = 0
                for i in range(n_items):
                    if not mark[i]:
                        pool[k] = i
                        k += 1
                for t in range(w):
                    j = np.random.randint(t, allowed)
                    pool[t], pool[j] = pool[j], pool[t]
                    out[start + t] = pool[t]
            for j in range(lo, hi):
                mark[ex_indices[j]] = False
