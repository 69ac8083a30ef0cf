"""Named data sources for the CLI and benchmarks: one spec string → a Dataset or a ready Split."""

from __future__ import annotations

from pathlib import Path

from recengine.data.dataset import Dataset
from recengine.data.split import Split
from recengine.errors import ConfigError

SOURCES = {
    "bundled": "MovieLens latest-small shipped with recengine",
    "movielens:DIR": "a MovieLens folder (100k, 1m, latest-small, 20m, 25m; detected from its files)",
    "grouplens:DIR:FOLD": "an ml-100k GroupLens split (u1..u5, ua, ub) as a ratings Split",
    "sequences:DIR": "the S3-Rec sequence format (e.g. amazon-beauty: Beauty.txt + item attributes)",
    "ncf:PREFIX": "the NCF format (PREFIX.train.rating, .test.rating, .test.negative) as a sampled Split",
}


def load_source(spec: str) -> Dataset | Split:
    """Load a named source; see SOURCES for the forms a spec takes."""
    from recengine.data import movielens, ncf, sequences
    from recengine.data.splits import predefined_split

    kind, _, rest = spec.partition(":")
    if kind in ("bundled", "ml-latest-small") and not rest:
        return movielens.bundled_movielens()
    if not rest:
        raise ConfigError(f"unknown data source {spec!r}; forms: {', '.join(SOURCES)}")
    if kind == "movielens":
        return movielens.load_movielens(rest)
    if kind == "grouplens":
        folder, _, fold = rest.rpartition(":")
        if not folder:
            folder, fold = rest, "u1"
        train, test = movielens.read_ml100k_fold(folder, fold)
        return predefined_split(train, test, drop_unseen_items=False)
    if kind == "sequences":
        texts = sorted(Path(rest).glob("*.txt"))
        if len(texts) != 1:
            raise ConfigError(f"sequences:{rest}: expected one <name>.txt sequence file there, found {len(texts)}")
        return sequences.load_s3rec(rest, name=texts[0].stem)
    if kind == "ncf":
        return ncf.load_ncf(rest)
    raise ConfigError(f"unknown data source {spec!r}; forms: {', '.join(SOURCES)}")


def load_events_file(path: str, *, columns: str | None = None, items: str | None = None,
                     reject_path: str | None = None) -> Dataset:
    """An events file with an optional column mapping written as "user=userId,item=movieId,..."; fields not
    named there are read from columns with their canonical names (user, item, timestamp, rating, ...)."""
    from recengine.data.readers import load_dataset

    return load_dataset(path, items=items, columns=column_fields(columns),
                        on_error="reject" if reject_path else "raise", reject_path=reject_path)


def column_fields(columns: str | None) -> dict[str, str | None]:
    """--columns "user=userId,item=movieId,rating=" → {field: source column}; an empty column unmaps the field."""
    from recengine.data.readers import ColumnMapping

    fields: dict[str, str | None] = {}
    for pair in columns.split(",") if columns else []:
        key, sep, value = pair.partition("=")
        if not sep or key not in ColumnMapping.__dataclass_fields__:
            raise ConfigError(f"--columns {pair!r}: write field=column with field one of "
                              f"{', '.join(ColumnMapping.__dataclass_fields__)}")
        fields[key] = value or None
    return fields
