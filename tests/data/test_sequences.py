from pathlib import Path

import numpy as np
import pytest

from recengine.data.sequences import load_s3rec, read_item_attributes, read_sequences
from recengine.errors import DataError

BEAUTY = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "amazon-beauty"


def test_sequence_file_keeps_order_as_positions(tmp_path):
    f = tmp_path / "toy.txt"
    f.write_text("u1 a b a c\n\nu2 c\nu3 b a\n")
    ds = read_sequences(f)
    assert ds.name == "toy"
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (3, 3, 7)
    h = ds.histories()
    assert ds.items.lookup(h.row(ds.users.index("u1"))).tolist() == ["a", "b", "a", "c"]
    assert ds.items.lookup(h.row(ds.users.index("u3"))).tolist() == ["b", "a"]
    assert ds.timestamp.tolist() == [0, 1, 2, 3, 0, 0, 1]
    assert (ds.weight == 1.0).all() and ds.rating is None


def test_attributes_become_a_list_column(tmp_path):
    seq = tmp_path / "toy.txt"
    seq.write_text("u1 a b\n")
    attrs = tmp_path / "toy_item2attributes.json"
    attrs.write_text('{"a": [1, 2], "b": [], "zzz": [3]}')
    ds = read_sequences(seq, attributes=attrs)
    assert ds.item_features.loc["a", "attributes"] == [1, 2]
    assert ds.item_features.loc["b", "attributes"] == []
    assert "zzz" not in ds.item_features.index


@pytest.mark.parametrize("text, message", [
    ("u1 a b\nu2\n", r"toy\.txt, line 2: user 'u2' has no items"),
    ("u1 a b\nu2 c\nu1 d\n", r"toy\.txt, line 3: user 'u1' already has a sequence on line 1"),
])
def test_bad_sequence_lines(tmp_path, text, message):
    f = tmp_path / "toy.txt"
    f.write_text(text)
    with pytest.raises(DataError, match=message):
        read_sequences(f)


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "expected a JSON object"),
    ('{"a": 3}', "item 'a' has 3 where a list"),
    ("{oops", "not valid JSON"),
])
def test_bad_attribute_files(tmp_path, text, message):
    f = tmp_path / "attrs.json"
    f.write_text(text)
    with pytest.raises(DataError, match=message):
        read_item_attributes(f)


@pytest.mark.skipif(not (BEAUTY / "Beauty.txt").is_file(), reason="shared amazon-beauty not available")
def test_beauty_counts_match_provenance():
    ds = load_s3rec(BEAUTY, "Beauty")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (22_363, 12_101, 198_502)
    assert ds.item_features["attributes"].notna().all()  # all 12,101 items have attributes
    assert ds.item_features.loc["4", "attributes"] == [1, 2, 3]
    # Line 2 of Beauty.txt: "2 6 7 8 9 10 4 11".
    u = ds.users.index("2")
    assert ds.items.lookup(ds.histories().row(u)).tolist() == ["6", "7", "8", "9", "10", "4", "11"]
    assert ds.timestamp[ds.indptr[u]:ds.indptr[u + 1]].tolist() == list(range(7))
    assert np.diff(ds.indptr).min() >= 5  # the S3-Rec data is 5-core
