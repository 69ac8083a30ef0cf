from pathlib import Path

import numpy as np
import pytest

from recengine.data.movielens import (
    bundled_movielens,
    load_movielens,
    read_ml100k_fold,
)
from recengine.errors import DataError

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
ML100K = DATASETS / "ml-100k"
LATEST_SMALL = DATASETS / "ml-latest-small"
needs_100k = pytest.mark.skipif(not (ML100K / "u.data").is_file(), reason="shared ml-100k not available")
needs_small = pytest.mark.skipif(not (LATEST_SMALL / "ratings.csv").is_file(),
                                 reason="shared ml-latest-small not available")


@pytest.fixture(scope="module")
def ml100k():
    return load_movielens(ML100K)


@needs_100k
def test_ml100k_counts_match_provenance(ml100k):
    ds = ml100k
    assert ds.name == "ml-100k"
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    # Rating histogram from PROVENANCE.md: 1:6110 2:11370 3:27145 4:34174 5:21201.
    assert np.bincount(ds.rating.astype(int), minlength=6)[1:].tolist() == [6110, 11370, 27145, 34174, 21201]
    assert (ds.weight == 1.0).all()


@needs_100k
def test_ml100k_items_users_and_order(ml100k):
    ds = ml100k
    items, users = ds.item_features, ds.user_features
    assert items.loc["1", "title"] == "Toy Story (1995)"
    assert items.loc["1", "genres"] == ["Animation", "Children's", "Comedy"]
    assert items.loc["1", "year"] == 1995
    assert items.loc["543", "title"] == "Misérables, Les (1995)"  # latin-1 decoded
    assert items.loc["1", "release_date"].year == 1995
    assert users.loc["1"].to_dict() == {"age": 24, "gender": "M", "occupation": "technician", "zip": "85711"}
    # Histories are chronological; user 196's first three ratings share time 881250949 and keep file order
    # (u.data lines 1, 13734 and 78788).
    u = ds.users.index("196")
    row = ds.histories().row(u)
    ts = ds.timestamp[ds.indptr[u]:ds.indptr[u + 1]]
    assert ts[:3].tolist() == [881250949] * 3 and ts[3] > ts[2] and (np.diff(ts) >= 0).all()
    assert ds.items.lookup(row[:3]).tolist() == ["242", "286", "269"]


@needs_100k
def test_ml100k_folds_share_vocabularies():
    train, test = read_ml100k_fold(ML100K, "u1")
    assert train.users == test.users and train.items == test.items
    assert (train.n_interactions, test.n_interactions) == (80_000, 20_000)
    train, test = read_ml100k_fold(ML100K, "ua")
    assert test.n_interactions == 9430
    assert (np.diff(test.indptr) == 10).all()  # ua/ub hold out exactly 10 ratings per user
    assert test.item_features.loc["1", "title"] == "Toy Story (1995)"
    with pytest.raises(DataError, match="unknown ml-100k fold 'u9'"):
        read_ml100k_fold(ML100K, "u9")


@needs_small
def test_latest_small_counts_and_features():
    ds = load_movielens(LATEST_SMALL)
    assert ds.name == "ml-latest-small"
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (610, 9724, 100_836)
    assert ds.rating.min() == 0.5 and ds.rating.max() == 5.0
    f = ds.item_features
    assert f.loc["1", "genres"] == ["Adventure", "Animation", "Children", "Comedy", "Fantasy"]
    assert f.loc["1", "year"] == 1995 and f.loc["1", "title"] == "Toy Story (1995)"
    assert f.loc["1", "tags"] == ["pixar", "fun"]  # distinct, oldest first (pixar 2006, fun 2018)
    assert f.loc["1", "imdb_id"] == "0114709"


def test_bundled_copy_reads_like_the_release():
    ds = bundled_movielens()
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (610, 9724, 100_836)
    assert ds.item_features.loc["2", "title"] == "Jumanji (1995)"


def write_ml1m(root: Path) -> Path:
    root.mkdir()
    (root / "ratings.dat").write_text("1::10::5::978300760\n1::20::3::978300761\n2::10::4::978300000\n")
    (root / "movies.dat").write_bytes(
        "10::Star Wars: Episode IV (1977)::Action|Sci-Fi\n20::Misérables, Les (1995)::Drama\n"
        "30::Unrated (2000)::Comedy\n".encode("latin-1"))
    (root / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    return root


def test_ml1m_dat_files(tmp_path):
    ds = load_movielens(write_ml1m(tmp_path / "ml-1m"))
    assert ds.name == "ml-1m"
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 3)
    frame = ds.to_frame()
    assert frame[frame["user"] == "1"][["item", "timestamp", "rating"]].values.tolist() == [
        ["10", 978300760, 5.0], ["20", 978300761, 3.0]]
    items = ds.item_features
    assert items.loc["10", "title"] == "Star Wars: Episode IV (1977)" and items.loc["10", "year"] == 1977
    assert items.loc["10", "genres"] == ["Action", "Sci-Fi"]
    assert items.loc["20", "title"] == "Misérables, Les (1995)"
    users = ds.user_features
    assert users.loc["1"].to_dict() == {"age": 1, "gender": "F", "occupation": "K-12 student", "zip": "48067"}
    assert users.loc["2", "occupation"] == "self-employed"


def test_ml1m_bad_rating_line_names_file_and_line(tmp_path):
    root = write_ml1m(tmp_path / "ml-1m")
    (root / "ratings.dat").write_text("1::10::5::978300760\n1::20::x::978300761\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: rating is not a number 'x'"):
        load_movielens(root)


def test_csv_variant_without_optional_files(tmp_path):
    root = tmp_path / "ml-25m"
    root.mkdir()
    (root / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,5,4.5,100\n2,5,3.0,200\n")
    (root / "movies.csv").write_text('movieId,title,genres\n5,"Father of the Bride, Part II (1995)",Comedy\n'
                                     "6,Untitled,(no genres listed)\n")
    ds = load_movielens(root)
    assert ds.name == "ml-25m" and ds.n_interactions == 2
    assert ds.item_features.loc["5", "title"] == "Father of the Bride, Part II (1995)"
    assert ds.item_features.loc["5", "year"] == 1995
    assert "tags" not in ds.item_features.columns


def test_not_a_movielens_directory(tmp_path):
    with pytest.raises(DataError, match="not a MovieLens directory"):
        load_movielens(tmp_path)
