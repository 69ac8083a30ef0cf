from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Vocabulary
from recengine.data.splits import (
    leave_one_out_split,
    predefined_split,
    sampled_candidates,
    split,
    validation_split,
)
from recengine.errors import ConfigError, DataError


def frame(rows: list[tuple[str, int, int]], ratings: bool = False) -> pd.DataFrame:
    """An event frame from (user, item number, timestamp) rows; item k is named "i<k>"."""
    df = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    df["item"] = "i" + df["item"].astype(str)
    if ratings:
        df["rating"] = (np.arange(len(df)) % 5 + 1).astype(float)
    return df


def tiny() -> Dataset:
    rows = (
        [("u1", i, i + 1) for i in range(10)]                       # 10 events -> 2 test: i8, i9
        + [("u2", i, i + 1) for i in range(5)]                      # 5 events -> 1 test: i4
        + [("u3", i, 1) for i in (8, 9, 0, 1)]                      # 4 events -> all train
        + [("u4", i, t) for i, t in zip(range(6), [1, 2, 3, 3, 3, 3], strict=True)]  # tie: i5 stored last
        + [("u5", i, t + 1) for t, i in enumerate([0, 1, 2, 3, 10])]  # test item i10 only seen here
    )
    items = Vocabulary([f"i{k}" for k in range(11)])
    return Dataset.from_events(frame(rows), items=items)


def random_dataset(seed: int = 0, n_users: int = 40, n_items: int = 30, n: int = 600,
                   ratings: bool = False) -> Dataset:
    rng = np.random.default_rng(seed)
    rows = list(zip(rng.integers(0, n_users, n).astype(str), rng.integers(0, n_items, n),
                    rng.integers(0, 20, n), strict=True))  # few distinct timestamps: many ties
    return Dataset.from_events(frame(rows, ratings=ratings))


def user_items(ds: Dataset, user: str) -> list[str]:
    return list(ds.items.lookup(ds.histories().row(ds.users.index(user))))


# ------------------------------------------------------------------------------------------ temporal-user
def test_temporal_user_counts_on_hand_built_data():
    ds = tiny()
    s = split(ds, "temporal-user")
    assert user_items(s.test, "u1") == ["i8", "i9"]
    assert user_items(s.test, "u2") == ["i4"]
    assert user_items(s.test, "u3") == []             # fewer than 5 interactions: train only
    assert user_items(s.test, "u4") == ["i5"]         # ties in time: the stored (input) order decides
    assert user_items(s.test, "u5") == []             # its test item i10 never occurs in train: dropped
    assert user_items(s.train, "u5") == ["i0", "i1", "i2", "i3"]
    assert s.info["dropped_unseen_test_interactions"] == 1
    assert list(ds.users.lookup(s.test_users)) == ["u1", "u2", "u4"]
    assert s.train.n_interactions == 8 + 4 + 4 + 5 + 4 and s.test.n_interactions == 4
    truth = s.truth.toarray()
    assert truth.sum() == 4 and truth[0, ds.items.index("i9")] == 1
    # The query of each evaluated user is that user's train history.
    assert list(ds.items.lookup(s.query.row(0))) == [f"i{k}" for k in range(8)]
    assert s.query.users.tolist() == s.test_users.tolist()


def test_temporal_user_never_leaks_the_future():
    ds = random_dataset()
    s = split(ds, "temporal-user", test_fraction=0.3, min_interactions=3)
    assert s.n_users > 10
    for u in s.test_users:
        train_ts = s.train.timestamp[s.train.indptr[u]:s.train.indptr[u + 1]]
        test_ts = s.test.timestamp[s.test.indptr[u]:s.test.indptr[u + 1]]
        assert len(train_ts) >= 1 and test_ts.min() >= train_ts.max()
    # Users below the threshold keep everything in train.
    short = np.flatnonzero(np.diff(ds.indptr) < 3)
    assert (np.diff(s.train.indptr)[short] == np.diff(ds.indptr)[short]).all()


# ------------------------------------------------------------------------------------------------ loo
def test_loo_holds_out_the_latest_interaction():
    ds = tiny()
    s = split(ds, "loo")
    assert user_items(s.test, "u1") == ["i9"] and user_items(s.test, "u4") == ["i5"]
    assert user_items(s.test, "u3") == ["i1"]         # all four at the same time: the last stored
    assert s.n_users == 4 and s.truth.nnz == 4        # u5's i10 is unseen in train
    assert s.candidates is None


def test_loo_sampled_negatives_are_unseen_distinct_and_seeded():
    ds = random_dataset(1, n_items=60)
    s = leave_one_out_split(ds, n_negatives=20, random_state=3)
    c = s.candidates
    assert c.shape == s.truth.shape
    history = s.query.matrix("binary")
    assert c.multiply(s.truth).nnz == s.truth.nnz                # truth is always a candidate
    negatives = c - c.multiply(s.truth)
    negatives.eliminate_zeros()
    assert negatives.multiply(history).nnz == 0                  # no negative the user has seen
    seen_or_truth = ((history + s.truth) > 0).getnnz(axis=1)
    np.testing.assert_array_equal(negatives.getnnz(axis=1), np.minimum(20, 60 - seen_or_truth))
    again = leave_one_out_split(ds, n_negatives=20, random_state=3).candidates
    other = leave_one_out_split(ds, n_negatives=20, random_state=4).candidates
    assert (again != c).nnz == 0 and (other != c).nnz > 0


def test_sampled_candidates_take_every_allowed_item_when_too_few_remain():
    # 6 items; the user saw 3 and holds out 1: only 2 negatives exist although 100 are asked for.
    ds = Dataset.from_events(frame([("a", i, i) for i in range(4)] + [("b", i, 0) for i in range(6)]))
    s = split(ds, "loo", min_interactions=4)
    c = sampled_candidates(s, n_negatives=100).toarray()
    row = s.test_users.tolist().index(ds.users.index("a"))
    assert c[row].tolist() == [0, 0, 0, 1, 1, 1]


def test_sampled_candidates_find_a_needle_in_a_large_catalog():
    # Rejection sampling almost never hits the single allowed item of 3000; the dense fallback must find it.
    rows = [("a", i, 1) for i in range(2998)] + [("a", 2998, 2)] + [("z", i, 0) for i in range(3000)]
    ds = Dataset.from_events(frame(rows))
    s = split(ds, "loo")
    c = sampled_candidates(s, n_negatives=1, random_state=0)
    a = s.test_users.tolist().index(ds.users.index("a"))
    assert sorted(ds.items.lookup(c[a].indices)) == ["i2998", "i2999"]


@pytest.mark.parametrize("n_seen", [4, 13])  # 15 or 6 items allowed: the rejection or the shuffle path
def test_sampled_negatives_are_uniform(n_seen):
    # 2000 identical users over 20 items who saw n_seen and hold out one more: each of the allowed items is
    # drawn with probability 3 / allowed.
    n_users, allowed = 2000, 20 - n_seen - 1
    rows = [(f"u{u}", i, 1) for u in range(n_users) for i in range(n_seen)] + \
           [(f"u{u}", n_seen, 2) for u in range(n_users)] + [("z", i, 0) for i in range(20)]
    ds = Dataset.from_events(frame(rows))
    s = split(ds, "loo", min_interactions=n_seen + 1)
    negatives = sampled_candidates(s, n_negatives=3, random_state=0) - s.truth
    counts = np.asarray(negatives.sum(axis=0)).ravel()
    seen = ds.items.index([f"i{i}" for i in range(n_seen + 1)])
    assert counts[seen].sum() == 0 and counts.sum() == 3 * n_users
    expected = n_users * 3 / allowed
    free = np.setdiff1d(np.arange(20), seen)
    assert np.all(np.abs(counts[free] - expected) < 0.2 * expected), counts[free]


# --------------------------------------------------------------------------------------------- strong
def test_strong_holds_out_users_and_splits_their_histories():
    ds = random_dataset(2, n_users=50, n=1200)
    s = split(ds, "strong", n_test_users=8, random_state=5)
    held = s.test_users
    assert len(held) == 8 and s.info["held_out_users"] == 8
    assert (np.diff(s.train.indptr)[held] == 0).all()            # absent from train
    assert (s.query.users == -1).all()                            # models must fold them in
    lengths = np.diff(ds.indptr)[held]
    expected_test = np.clip(np.rint(lengths * 0.2), 1, lengths - 1)
    # Query + test are exactly each held-out user's history (no unseen items here: 30 items, 1200 events).
    assert s.info["dropped_unseen_test_interactions"] == 0
    np.testing.assert_array_equal(np.diff(s.test.indptr)[held], expected_test)
    np.testing.assert_array_equal(s.query.lengths + np.diff(s.test.indptr)[held], lengths)
    for r, u in enumerate(held):
        full = np.sort(ds.item_index[ds.indptr[u]:ds.indptr[u + 1]])
        truth = s.test.item_index[s.test.indptr[u]:s.test.indptr[u + 1]]
        parts = np.sort(np.concatenate([s.query.row(r), truth]))
        np.testing.assert_array_equal(parts, full)
    same = split(ds, "strong", n_test_users=8, random_state=5)
    other = split(ds, "strong", n_test_users=8, random_state=6)
    np.testing.assert_array_equal(same.test_users, held)
    np.testing.assert_array_equal(same.query.items, s.query.items)
    assert not np.array_equal(other.test_users, held)


def test_strong_default_holds_out_ten_percent_of_eligible_users():
    ds = random_dataset(3, n_users=60, n=1500)
    eligible = int((np.diff(ds.indptr) >= 5).sum())
    assert split(ds, "strong").info["held_out_users"] == round(eligible * 0.1)


# ------------------------------------------------------------------------------------ global-temporal
def test_global_temporal_cuts_once_for_everyone():
    ds = random_dataset(4)
    s = split(ds, "global-temporal", cut=14)
    assert s.train.timestamp.max() <= 14 < s.test.timestamp.min()
    # Evaluated users have a train history; test events of users without one are dropped and counted.
    assert (np.diff(s.train.indptr)[s.test_users] > 0).all()
    assert s.info["cut"] == 14
    q = split(ds, "global-temporal", test_fraction=0.25)
    assert q.info["cut"] == int(np.quantile(ds.timestamp, 0.75, method="lower"))


def test_global_temporal_drops_users_without_history():
    ds = Dataset.from_events(frame([("a", 0, 1), ("a", 1, 5), ("b", 0, 2), ("b", 1, 3), ("c", 1, 6)]))
    s = split(ds, "global-temporal", cut=4)
    assert list(ds.users.lookup(s.test_users)) == ["a"]
    assert s.info["dropped_cold_user_test_interactions"] == 1


# -------------------------------------------------------------------------------------------- ratings
def dense_ratings() -> Dataset:
    # Every user rates every item; unique timestamps identify the events.
    rows = [(f"u{u}", i, u * 100 + i) for u in range(20) for i in range(15)]
    return Dataset.from_events(frame(rows, ratings=True))


def test_random_ratings_split_holds_out_ten_percent():
    ds = dense_ratings()
    s = split(ds, "ratings", random_state=1)
    assert s.test.n_interactions + s.info["dropped_unseen_test_interactions"] \
        + s.info["dropped_cold_user_test_interactions"] == 30
    assert s.train.n_interactions == 270
    assert set(s.test.timestamp).isdisjoint(s.train.timestamp)
    assert s.truth.data.min() >= 1 and s.truth.data.max() <= 5  # truth carries the ratings


def test_kfold_ratings_partition_the_data():
    ds = dense_ratings()
    tests = [split(ds, "ratings", fold=f, n_folds=5, random_state=7) for f in range(5)]
    assert all(t.info["dropped_unseen_test_interactions"] == 0 for t in tests)
    stamps = np.concatenate([t.test.timestamp for t in tests])
    assert len(stamps) == 300 and len(np.unique(stamps)) == 300
    with pytest.raises(ConfigError, match="fold"):
        split(ds, "ratings", fold=5, n_folds=5)


def test_ratings_protocol_needs_ratings():
    with pytest.raises(DataError, match="no explicit ratings"):
        split(random_dataset(), "ratings")


def test_predefined_split_uses_the_given_pair_and_checks_vocabularies():
    full = frame([("a", 0, 1), ("a", 1, 2), ("b", 0, 3), ("b", 1, 4), ("c", 1, 5)], ratings=True)
    users, items = Vocabulary.from_values(full["user"]), Vocabulary.from_values(full["item"])
    train = Dataset.from_events(full.iloc[[0, 2, 3]], users=users, items=items)
    test = Dataset.from_events(full.iloc[[1, 4]], users=users, items=items)
    s = predefined_split(train, test)
    assert s.protocol == "ratings" and list(users.lookup(s.test_users)) == ["a"]  # c has no train history
    assert s.info["dropped_cold_user_test_interactions"] == 1
    assert s.truth.toarray().tolist() == [[0, 2.0]]
    with pytest.raises(DataError, match="share user and item vocabularies"):
        predefined_split(train, Dataset.from_events(full.iloc[[1, 4]]))


# ---------------------------------------------------------------------------------- validation, dispatch
def test_validation_split_never_sees_test():
    ds = tiny()
    s = split(ds, "loo")
    v = validation_split(s)
    assert v.protocol == "loo" and v.info["role"] == "validation"
    assert user_items(v.test, "u1") == ["i8"]                 # the second-to-last interaction
    assert v.train.n_interactions + v.test.n_interactions + v.info["dropped_unseen_test_interactions"] \
        == s.train.n_interactions
    def events(d: Dataset) -> set:
        return set(zip(d.user_index, d.item_index, d.timestamp, strict=True))

    assert events(v.train) | events(v.test) <= events(s.train)
    assert events(v.train).isdisjoint(events(s.test)) and events(v.test).isdisjoint(events(s.test))


def test_validation_split_of_global_temporal_recomputes_the_cut():
    ds = random_dataset(5)
    s = split(ds, "global-temporal", cut=14)
    v = validation_split(s)
    assert v.test.timestamp.max() <= 14 and v.info["cut"] < 14


def test_split_dispatch_rejects_unknown_names_and_options():
    ds = tiny()
    with pytest.raises(ConfigError, match="unknown protocol 'nope'"):
        split(ds, "nope")
    with pytest.raises(ConfigError, match="has no option"):
        split(ds, "loo", test_fraction=0.2)
    with pytest.raises(ConfigError, match="test_fraction"):
        split(ds, "temporal-user", test_fraction=1.5)
    assert split(ds, "temporal_user").protocol == "temporal-user"
    assert split(ds, "temporal-user", random_state=3).n_users == 3  # every protocol takes a seed


# --------------------------------------------------------------------------------------------- real data
ML100K = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets" / "ml-100k" / "u.data"


@pytest.mark.skipif(not ML100K.is_file(), reason="the shared ml-100k data is not available")
def test_protocols_on_movielens_100k():
    events = pd.read_csv(ML100K, sep="\t", names=["user", "item", "rating", "timestamp"])
    ds = Dataset.from_events(events, name="ml-100k")
    s = split(ds, "temporal-user")
    # Every ml-100k user has >= 20 ratings, so all 943 are evaluated, with newest 20% of each history held out
    # (minus the few held-out films nobody rated earlier).
    assert s.n_users == 943
    assert s.test.n_interactions + s.info["dropped_unseen_test_interactions"] == \
        int(np.clip(np.rint(np.diff(ds.indptr) * 0.2), 1, None).sum())
    last_train = np.maximum.reduceat(s.train.timestamp, s.train.indptr[:-1])
    first_test = np.minimum.reduceat(s.test.timestamp, s.test.indptr[:-1])
    assert (first_test[s.test_users] >= last_train[s.test_users]).all()
    loo = split(ds, "loo", n_negatives=99)
    assert (loo.candidates.getnnz(axis=1) == 100).all()
    assert split(ds, "ratings").truth.nnz == pytest.approx(10_000, abs=50)
