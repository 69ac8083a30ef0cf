from pathlib import Path

import numpy as np
import pytest

from recengine.data.ncf import load_ncf
from recengine.errors import ConfigError, DataError

LASTFM = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "lastfm-ncf" / "lastfm"


def write_ncf(tmp_path: Path, negatives: str | None = None, test: str | None = None) -> Path:
    prefix = tmp_path / "toy"
    # Ids deliberately out of order in the files: the vocabulary sorts numeric ids.
    Path(f"{prefix}.train.rating").write_text("1\t2\t7\n0\t0\t3\n0\t1\t1\n1\t0\t2\n")
    Path(f"{prefix}.test.rating").write_text(test or "0\t2\t5\n1\t3\t1\n")
    Path(f"{prefix}.test.negative").write_text(negatives or "(0,2)\t3\t4\n(1,3)\t4\t0\n")
    return prefix


def test_split_from_ncf_files(tmp_path):
    split = load_ncf(write_ncf(tmp_path))
    assert split.protocol == "ncf-sampled"
    assert split.train.users.ids.tolist() == ["0", "1"]
    assert split.train.items.ids.tolist() == ["0", "1", "2", "3", "4"]  # item 4 only occurs as a negative
    assert split.train.n_interactions == 4 and split.test.n_interactions == 2
    assert (split.train.weight == 1.0).all() and split.train.rating is None
    # Train history of user 0 in file order: 0 then 1.
    assert split.query.row(0).tolist() == [0, 1]
    assert split.truth.toarray().tolist() == [[0, 0, 1, 0, 0], [0, 0, 0, 1, 0]]
    assert split.candidates.toarray().tolist() == [[0, 0, 1, 1, 1], [1, 0, 0, 1, 1]]
    # Test items come after train in time (NCF holds out the latest interaction).
    assert split.test.timestamp.min() > split.train.timestamp.max()
    assert split.info["test_items_unseen_in_train"] == 1  # item 3
    assert split.info["negatives_in_train"] == 1  # user 1's negative 0 is one of their train items


def test_count_weights(tmp_path):
    split = load_ncf(write_ncf(tmp_path), weights="count")
    m = split.train.matrix("weight").toarray()
    assert m.tolist() == [[3, 1, 0, 0, 0], [2, 0, 7, 0, 0]]
    with pytest.raises(ConfigError, match="weights must be"):
        load_ncf(write_ncf(tmp_path), weights="log")


def test_negatives_including_the_test_item_are_an_error_or_collapsed(tmp_path):
    prefix = write_ncf(tmp_path, negatives="(0,2)\t3\t4\n(1,3)\t4\t3\n")
    message = r"toy\.test\.negative, line 2: the negatives of user '1' include their test item '3'"
    with pytest.raises(DataError, match=message):
        load_ncf(prefix, test_in_negatives="raise")
    split = load_ncf(prefix)
    assert split.candidates.toarray().tolist()[1] == [0, 0, 0, 1, 1]
    assert split.info["test_item_in_negatives"] == 1


@pytest.mark.parametrize("negatives, message", [
    ("(0,2)\t3\t4\n(1,4)\t0\n", r"line 2: pair \(1,4\) is not that user's test interaction"),
    ("(0,2)\t3\t4\n", r"no negatives line for test user '1'"),
    ("(0,2)\t3\t4\n1,3\t4\n", r"line 2: expected '\(user,item\)' first"),
    ("(0,2)\t3\t\t4\n(1,3)\t4\n", r"line 1: empty negative item id"),
    ("(0,2)\t3\n(1,3)\t4\n(0,2)\t1\n", r"line 3: user '0' has a second negatives line"),
])
def test_malformed_negative_files(tmp_path, negatives, message):
    with pytest.raises(DataError, match=message):
        load_ncf(write_ncf(tmp_path, negatives=negatives), test_in_negatives="raise")


def test_two_test_items_for_one_user(tmp_path):
    with pytest.raises(DataError, match="user '0' has 2 test items"):
        load_ncf(write_ncf(tmp_path, test="0\t2\t5\n0\t3\t1\n1\t3\t1\n"))


def test_missing_file_says_what_is_needed(tmp_path):
    with pytest.raises(DataError, match=r"no such file; load_ncf needs <prefix>\.train\.rating"):
        load_ncf(tmp_path / "nothing")


@pytest.mark.skipif(not Path(f"{LASTFM}.train.rating").is_file(), reason="shared lastfm-ncf not available")
def test_lastfm_counts_match_provenance():
    # 86 lines of the released negatives file list the user's own test item among the negatives.
    with pytest.raises(DataError, match=r"line 18: the negatives of user '17' include their test item '268' "
                                        r"\(86 lines do\)"):
        load_ncf(LASTFM, test_in_negatives="raise")
    split = load_ncf(LASTFM)
    assert not split.exclude_seen  # all 100 given candidates are ranked, as published
    assert (split.train.n_users, split.train.n_items) == (1741, 2665)
    assert (split.train.n_interactions, split.test.n_interactions) == (67_408, 1741)
    assert split.n_users == 1741
    per_row = np.diff(split.candidates.indptr)
    assert np.bincount(per_row).tolist()[99:] == [86, 1655]
    # Every row's test item is among its candidates.
    assert split.candidates.multiply(split.truth).nnz == 1741
    # NCF ids are 0-based and dense: internal index == given id.
    assert split.train.items.ids[:3].tolist() == ["0", "1", "2"]
