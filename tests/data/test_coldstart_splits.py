"""The cold-start protocols: cold items (first seen after a cut, or a random share) and cold users."""

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset
from recengine.data.splits import split
from recengine.errors import ConfigError, DataError


def staggered(n_users: int = 30, n_items: int = 20) -> Dataset:
    """Item k first appears at time 10 k; every user touches every item once, at 10 k + user number."""
    rows = [(f"u{u}", f"i{k}", 10 * k + u % 10) for u in range(n_users) for k in range(n_items)]
    return Dataset.from_events(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))


def test_cold_items_are_the_newest_and_absent_from_train():
    data = staggered()
    s = split(data, "cold-items", item_fraction=0.1)
    cold = {f"i{k}" for k in (18, 19)}
    assert s.info["cold_items"] == 2 and s.info["cut"] == 180
    train_items = set(s.train.items.lookup(np.unique(s.train.item_index)))
    assert not train_items & cold and len(train_items) == 18
    assert (s.train.timestamp < 180).all()
    # Every row ranks exactly the cold items; the truth only holds cold items.
    assert set(s.train.items.lookup(np.unique(s.candidates.indices))) == cold
    assert np.diff(s.candidates.indptr).tolist() == [2] * s.n_users
    assert set(s.train.items.lookup(np.unique(s.truth.indices))) <= cold
    assert s.truth.nnz == 2 * s.n_users


def test_cold_items_explicit_cut_and_random_selection():
    data = staggered()
    assert split(data, "cold-items", cut=165).info["cold_items"] == 3  # first seen at 170, 180, 190
    a = split(data, "cold-items", selection="random", item_fraction=0.25, random_state=1)
    b = split(data, "cold-items", selection="random", item_fraction=0.25, random_state=1)
    cold = np.unique(a.candidates.indices)
    assert len(cold) == 5 and np.array_equal(cold, np.unique(b.candidates.indices))
    assert not np.isin(a.train.item_index, cold).any()
    assert a.train.n_interactions == data.n_interactions - 5 * 30


def test_cold_items_rejects_bad_options():
    data = staggered()
    with pytest.raises(ConfigError, match="selection"):
        split(data, "cold-items", selection="oldest")
    with pytest.raises(DataError, match="no cold items"):
        split(data, "cold-items", cut=10_000)


def test_cold_users_know_only_their_first_interactions():
    data = staggered(n_users=40)
    s = split(data, "cold-users", n_known=3, test_users_fraction=0.25, min_interactions=10)
    assert s.n_users == 10 and (s.query.lengths == 3).all() and (s.query.users == -1).all()
    held = s.test_users
    assert not np.isin(s.train.user_index, held).any(), "held-out users leave train entirely"
    for row, user in enumerate(held):
        history = data.histories([user])
        first = history.items[:3]
        assert np.array_equal(s.query.row(row), first)
        truth = s.truth[row].indices
        assert not np.isin(truth, first).any() and len(truth) == 17


def test_cold_users_levels_share_the_held_out_users():
    data = staggered(n_users=40)
    users = [split(data, "cold-users", n_known=n, test_users_fraction=0.25).test_users for n in (1, 3, 5)]
    assert all(np.array_equal(users[0], u) for u in users[1:])


def test_cold_users_rejects_impossible_options():
    with pytest.raises(ConfigError, match="must exceed n_known"):
        split(staggered(), "cold-users", n_known=10, min_interactions=10)
