import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import DataError


def events() -> pd.DataFrame:
    return pd.DataFrame({
        "user": ["a", "b", "a", "c", "a", "b"],
        "item": ["x", "y", "y", "x", "z", "z"],
        "timestamp": [30, 5, 10, 7, 20, 5],
        "rating": [4.0, 3.0, 5.0, 1.0, 2.0, 4.5],
    })


def test_histories_are_chronological_with_stable_ties():
    ds = Dataset.from_events(events())
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 3, 6)
    a = ds.users.index("a")
    items = ds.items.lookup(ds.histories().row(a))
    assert list(items) == ["y", "z", "x"]  # timestamps 10, 20, 30
    b = ds.users.index("b")
    assert list(ds.items.lookup(ds.histories().row(b))) == ["y", "z"]  # equal timestamps keep input order


def test_matrix_values_and_select_keep_vocabularies():
    ds = Dataset.from_events(events())
    r = ds.matrix("rating").toarray()
    assert r[ds.users.index("a"), ds.items.index("y")] == 5.0
    sub = ds.select(ds.timestamp >= 10)
    assert sub.users == ds.users and sub.items == ds.items
    assert sub.n_interactions == 3


def test_history_subsets_gather_the_right_rows():
    h = Histories.from_lists([[0, 1], [], [2, 2, 0]], n_items=3)
    sub = h[np.array([2, 0])]
    assert [list(sub.row(0)), list(sub.row(1))] == [[2, 2, 0], [0, 1]]
    assert h[1:3].lengths.tolist() == [0, 3]
    m = h.matrix("binary").toarray()
    assert m.tolist() == [[1, 1, 0], [0, 0, 0], [1, 0, 1]]


def test_save_load_round_trip(tmp_path):
    ds = Dataset.from_events(events(), item_features=pd.DataFrame({"title": ["X", "Y"]}, index=["x", "y"]))
    ds.save(tmp_path / "d")
    back = Dataset.load(tmp_path / "d")
    assert back.users == ds.users and back.items == ds.items
    np.testing.assert_array_equal(back.item_index, ds.item_index)
    np.testing.assert_array_equal(back.rating, ds.rating)
    assert back.item_features.loc["y", "title"] == "Y" and pd.isna(back.item_features.loc["z", "title"])


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"user": ["a"], "item": ["x"]}), "lacks required column"),
    (pd.DataFrame({"user": ["a"], "item": ["x"], "timestamp": [1], "colour": [1]}), "unknown column"),
    (pd.DataFrame({"user": ["a", None], "item": ["x", "y"], "timestamp": [1, 2]}), "missing user in row 1"),
])
def test_bad_event_frames_are_rejected(frame, message):
    with pytest.raises(DataError, match=message):
        Dataset.from_events(frame)


def test_vocabulary_maps_ids_as_strings():
    v = Vocabulary([1, 2, "x"])
    assert v.index("2") == 1 and v.index(2) == 1
    assert v.index(["x", "nope"], missing="negative").tolist() == [2, -1]
    with pytest.raises(DataError, match="unknown id 'nope'"):
        v.index(["nope"])
    assert len(v.extend(["x", "y"])) == 4


def test_recency_weighting_halves_per_half_life():
    h = Histories.from_lists([[0, 1, 2], [2, 1, 2]], n_items=3)
    m = h.matrix("binary", half_life=1.0).toarray()
    np.testing.assert_allclose(m[0], [0.25, 0.5, 1.0])
    np.testing.assert_allclose(m[1], [0.0, 0.5, 1.0])  # the repeated item counts once, at its latest position
    w = h.matrix("weight", half_life=2.0).toarray()
    np.testing.assert_allclose(w[1], [0.0, 2 ** -0.5, 1.0 + 0.5])


def test_category_matrix_one_hot_encodes_list_features():
    features = pd.DataFrame({"genres": [["a", "b"], ["b"]]}, index=["x", "y"])
    ds = Dataset.from_events(events(), item_features=features)
    m = ds.category_matrix().toarray()
    assert m.tolist() == [[1, 1], [0, 1], [0, 0]]  # z has no genres
    assert Dataset.from_events(events()).category_matrix() is None
