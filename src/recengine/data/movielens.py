"""MovieLens readers: 100K (with its GroupLens folds), 1M/10M ('::' files) and latest/20M/25M (CSV).

Events carry the rating as ``rating`` and weight 1.0. Item features: title, year, genres (list) and, where
the release has them, release_date, imdb_url/imdb_id/tmdb_id and tags (list of distinct tags, oldest first).
User features (100K, 1M): age, gender, occupation, zip.
"""

from __future__ import annotations

import shutil
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from recengine.data.dataset import Dataset
from recengine.data.readers import ColumnMapping, read_events, split_lists
from recengine.data.vocab import Vocabulary
from recengine.errors import DataError

#: Genre flag order of u.item (as listed in u.genre).
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
#: ML-1M occupation codes (from its README).
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)
ML100K_FOLDS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
_RATING_COLUMNS = ColumnMapping(rating="rating")
_NO_GENRES = "(no genres listed)"


# --------------------------------------------------------------------------------------------- detection
def load_movielens(path: str | Path, name: str | None = None) -> Dataset:
    """Read a MovieLens release directory, telling the variant from the files present:
    ``u.data`` (100K), ``ratings.dat`` (1M, 10M) or ``ratings.csv`` (latest, latest-small, 20M, 25M)."""
    path = Path(path)
    if (path / "u.data").is_file():
        return read_ml100k(path, name=name)
    if (path / "ratings.dat").is_file():
        return read_ml_dat(path, name=name)
    if (path / "ratings.csv").is_file():
        return read_ml_csv(path, name=name)
    raise DataError(f"{path}: not a MovieLens directory (expected u.data, ratings.dat or ratings.csv in it); "
                    f"fetch one with recengine.data.fetch.fetch('ml-100k')")


def bundled_movielens() -> Dataset:
    """MovieLens latest-small as shipped inside the package (redistributable under its README's terms)."""
    root = resources.files("recengine").joinpath("datasets").joinpath("ml-latest-small")
    if isinstance(root, Path):
        return read_ml_csv(root, name="ml-latest-small")
    # Installed as a zip: copy the files out first.
    with tempfile.TemporaryDirectory() as tmp:
        for entry in root.iterdir():
            if entry.is_file():
                with entry.open("rb") as src, open(Path(tmp) / entry.name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        return read_ml_csv(tmp, name="ml-latest-small")


# ------------------------------------------------------------------------------------------------- 100K
def read_ml100k(path: str | Path, name: str | None = None) -> Dataset:
    """MovieLens 100K: u.data ratings, u.item films (latin-1) and u.user users where present."""
    path = Path(path)
    events = _ml100k_ratings(path / "u.data")
    return Dataset.from_events(events, _ml100k_items(path), _ml100k_users(path),
                               name=name or _name(path, "ml-100k"))


def read_ml100k_fold(path: str | Path, fold: str = "u1") -> tuple[Dataset, Dataset]:
    """A GroupLens split of 100K (``u1``..``u5`` 5-fold, ``ua``/``ub`` 10 ratings per user in test) as a
    (train, test) pair of Datasets sharing user and item vocabularies."""
    if fold not in ML100K_FOLDS:
        raise DataError(f"unknown ml-100k fold {fold!r}: use one of {list(ML100K_FOLDS)}")
    path = Path(path)
    base = _ml100k_ratings(path / f"{fold}.base")
    test = _ml100k_ratings(path / f"{fold}.test")
    users = Vocabulary.from_values(np.concatenate([base["user"].to_numpy(), test["user"].to_numpy()]))
    items = Vocabulary.from_values(np.concatenate([base["item"].to_numpy(), test["item"].to_numpy()]))
    item_features, user_features = _ml100k_items(path), _ml100k_users(path)
    return tuple(  # type: ignore[return-value]
        Dataset.from_events(frame, item_features, user_features, users=users, items=items,
                            name=f"{_name(path, 'ml-100k')}-{fold}-{part}")
        for frame, part in ((base, "train"), (test, "test"))
    )


def _ml100k_ratings(file: Path) -> pd.DataFrame:
    if not file.is_file():
        raise DataError(f"{file}: no such file; is this an ml-100k directory?")
    return read_events(file, format="tsv", names=["user", "item", "rating", "timestamp"],
                       columns=_RATING_COLUMNS).events


def _ml100k_items(path: Path) -> pd.DataFrame | None:
    file = path / "u.item"
    if not file.is_file():
        return None
    names = ["item", "title", "release_date", "video_release_date", "imdb_url", *ML100K_GENRES]
    raw = pd.read_csv(file, sep="|", header=None, names=names, dtype=str, encoding="latin-1",
                      keep_default_na=False, na_values=[""])
    flags = raw[list(ML100K_GENRES)].fillna("0").to_numpy() == "1"
    released = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce")
    items = _movie_frame(raw["item"], raw["title"], pd.Series([""] * len(raw)))
    # The film's year from its title, else from the release date.
    items["year"] = items["year"].fillna(pd.Series(released.dt.year.astype("Int64").array, index=items.index))
    items["genres"] = _lists_from_flags(flags, ML100K_GENRES)
    items["release_date"] = released.to_numpy()
    items["imdb_url"] = raw["imdb_url"].to_numpy()
    return items


def _ml100k_users(path: Path) -> pd.DataFrame | None:
    file = path / "u.user"
    if not file.is_file():
        return None
    raw = pd.read_csv(file, sep="|", header=None, names=["user", "age", "gender", "occupation", "zip"],
                      dtype={"user": str, "zip": str})
    return raw.set_index(pd.Index(raw.pop("user").to_numpy(dtype=object), name="user"))


# ------------------------------------------------------------------------------------------------ 1M/10M
def read_ml_dat(path: str | Path, name: str | None = None) -> Dataset:
    """MovieLens 1M or 10M: '::'-separated ratings.dat, movies.dat, users.dat (1M) and tags.dat (10M)."""
    path = Path(path)
    # ':' as the separator keeps pandas' fast parser; the empty fields between the two colons are ignored.
    events = read_events(
        path / "ratings.dat", format="csv", sep=":", encoding="latin-1",
        names=["user", "_1", "item", "_2", "rating", "_3", "timestamp"], columns=_RATING_COLUMNS,
    ).events
    items = None
    if (path / "movies.dat").is_file():
        lines = _dat_lines(path / "movies.dat")
        head = lines.str.split("::", n=1, expand=True)
        rest = head[1].str.rsplit("::", n=1, expand=True)
        items = _movie_frame(head[0], rest[0], rest[1])
        tags = _ml_dat_tags(path / "tags.dat")
        if tags is not None:
            items["tags"] = _tag_lists(tags, items.index)
    users = None
    if (path / "users.dat").is_file():
        raw = pd.read_csv(path / "users.dat", sep=":", header=None, encoding="latin-1", dtype=str,
                          names=["user", "_1", "gender", "_2", "age", "_3", "occupation", "_4", "zip"])
        codes = pd.to_numeric(raw["occupation"], errors="coerce")
        known = codes.between(0, len(ML1M_OCCUPATIONS) - 1)
        occupation = pd.Series(np.asarray(ML1M_OCCUPATIONS, dtype=object)[codes.where(known, 0).astype(int)])
        users = pd.DataFrame({
            "age": pd.to_numeric(raw["age"], errors="coerce").astype("Int64").array,
            "gender": raw["gender"].to_numpy(),
            "occupation": occupation.where(known.to_numpy(), None).to_numpy(),
            "zip": raw["zip"].to_numpy(),
        }, index=pd.Index(raw["user"].to_numpy(dtype=object), name="user"))
    default = "ml-1m" if users is not None else "ml-10m"
    return Dataset.from_events(events, items, users, name=name or _name(path, default))


def _dat_lines(file: Path) -> pd.Series:
    text = file.read_text(encoding="latin-1")
    lines = pd.Series(text.split("\n"), dtype=object).str.rstrip("\r")
    return lines[lines != ""].reset_index(drop=True)


def _ml_dat_tags(file: Path) -> pd.DataFrame | None:
    if not file.is_file():
        return None
    lines = _dat_lines(file)
    head = lines.str.split("::", n=2, expand=True)
    rest = head[2].str.rsplit("::", n=1, expand=True)
    timestamp = pd.to_numeric(rest[1], errors="coerce")
    return pd.DataFrame({"item": head[1], "tag": rest[0], "timestamp": timestamp})


# ---------------------------------------------------------------------------------------- latest/20M/25M
def read_ml_csv(path: str | Path, name: str | None = None) -> Dataset:
    """MovieLens latest(-small), 20M or 25M: ratings.csv, movies.csv, and tags.csv / links.csv if present."""
    path = Path(path)
    events = read_events(path / "ratings.csv", format="csv",
                         columns=ColumnMapping(user="userId", item="movieId", rating="rating")).events
    items = None
    if (path / "movies.csv").is_file():
        raw = pd.read_csv(path / "movies.csv", dtype=str, keep_default_na=False, na_values=[""])
        items = _movie_frame(raw["movieId"], raw["title"], raw["genres"])
        if (path / "links.csv").is_file():
            links = pd.read_csv(path / "links.csv", dtype=str).set_index("movieId")
            items["imdb_id"] = links["imdbId"].reindex(items.index).to_numpy()
            items["tmdb_id"] = links["tmdbId"].reindex(items.index).to_numpy()
        if (path / "tags.csv").is_file():
            tags = pd.read_csv(path / "tags.csv", dtype={"movieId": str, "tag": str})
            tags = tags.rename(columns={"movieId": "item"})
            items["tags"] = _tag_lists(tags, items.index)
    return Dataset.from_events(events, items, name=name or _name(path, "ml-latest"))


# ---------------------------------------------------------------------------------------------- helpers
def _movie_frame(ids: pd.Series, titles: pd.Series, genres: pd.Series) -> pd.DataFrame:
    """title, year (from a trailing "(YYYY)" in the title) and genres split on '|'."""
    titles = titles.astype(object).where(titles.notna(), "").astype(str).str.strip()
    year = pd.to_numeric(titles.str.extract(r"\((\d{4})\)$", expand=False), errors="coerce").astype("Int64")
    genre_lists = split_lists(genres.where(genres != _NO_GENRES, ""), "|")
    return pd.DataFrame({
        "title": titles.to_numpy(), "year": year.array, "genres": genre_lists.to_numpy(),
    }, index=pd.Index(ids.astype(str).str.strip().to_numpy(dtype=object), name="item"))


def _lists_from_flags(flags: np.ndarray, names: tuple[str, ...]) -> list[list[str]]:
    """One list of names per row of a boolean (rows, names) matrix."""
    rows, cols = np.nonzero(flags)
    bounds = np.searchsorted(rows, np.arange(1, flags.shape[0]))
    labels = np.asarray(names, dtype=object)[cols]
    return [part.tolist() for part in np.split(labels, bounds)]


def _tag_lists(tags: pd.DataFrame, index: pd.Index) -> np.ndarray:
    """Distinct tags of each item, oldest first; [] for items without tags."""
    tags = tags.dropna(subset=["item", "tag"])
    if "timestamp" in tags.columns:
        tags = tags.sort_values("timestamp", kind="stable")
    tags = tags.assign(tag=tags["tag"].astype(str).str.strip()).drop_duplicates(["item", "tag"])
    lists = tags.groupby("item", sort=False)["tag"].agg(list).reindex(index)
    return lists.map(lambda v: v if isinstance(v, list) else []).to_numpy()


def _name(path: Path, default: str) -> str:
    return path.name if path.name.lower().startswith("ml-") else default
