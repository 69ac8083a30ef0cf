"""Sequence files: one user a line, ``user item item ...`` in chronological order (S3-Rec / ICLRec format).

The Dataset's timestamp is the position in the user's sequence (0, 1, 2, ...), so histories keep the file's
order. Item attributes (``<name>_item2attributes.json``: {item: [attribute ids]}) become an ``attributes``
list column of item_features.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from recengine.data.dataset import Dataset
from recengine.errors import DataError


def read_sequences(
    path: str | Path,
    *,
    attributes: str | Path | None = None,
    name: str | None = None,
    encoding: str = "utf-8",
) -> Dataset:
    """Read a sequence file (whitespace-separated ``user item item ...`` lines) into a Dataset.

    A user on two lines, or a line with a user and no items, is a DataError naming the line. attributes: an
    item2attributes JSON file. Weight is 1.0; there are no ratings.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text ({exc}); pass encoding=") from exc
    lines = pd.Series(text.split("\n"), dtype=object)
    tokens = lines.str.split()
    lengths = tokens.str.len().to_numpy()
    line_no = np.arange(1, len(lines) + 1)
    present = lengths > 0  # blank lines (and the one after the final newline) are not records
    tokens, lengths, line_no = tokens[present], lengths[present], line_no[present]
    if (lengths == 1).any():
        k = int(np.flatnonzero(lengths == 1)[0])
        raise DataError(f"{path}, line {line_no[k]}: user {tokens.iloc[k][0]!r} has no items; every line "
                        f"must be 'user item item ...'")
    flat = np.concatenate(tokens.to_numpy()).astype(object) if len(tokens) else np.empty(0, dtype=object)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    users = flat[starts]
    dup = pd.Series(users).duplicated().to_numpy()
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        first = int(np.flatnonzero(users == users[k])[0])
        raise DataError(f"{path}, line {line_no[k]}: user {users[k]!r} already has a sequence on line "
                        f"{line_no[first]}; a sequence file holds one line per user")
    is_item = np.ones(len(flat), dtype=bool)
    is_item[starts] = False
    n_items = lengths - 1
    # Position within each user's sequence: a running index that restarts at every line.
    starts_of_items = np.cumsum(n_items) - n_items
    position = np.arange(int(n_items.sum()), dtype=np.int64) - np.repeat(starts_of_items, n_items)
    events = pd.DataFrame({
        "user": np.repeat(users, n_items), "item": flat[is_item], "timestamp": position,
    })
    item_features = read_item_attributes(attributes) if attributes is not None else None
    return Dataset.from_events(events, item_features, name=name or path.stem)


def read_item_attributes(path: str | Path) -> pd.DataFrame:
    """An item2attributes JSON file ({item: [attribute ids]}) as a frame with an ``attributes`` list column,
    indexed by item id."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        mapping = json.loads(path.read_text())
    except ValueError as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(mapping, dict):
        raise DataError(f"{path}: expected a JSON object {{item: [attribute ids]}}, "
                        f"got {type(mapping).__name__}")
    bad = [k for k, v in mapping.items() if not isinstance(v, list)]
    if bad:
        raise DataError(f"{path}: item {bad[0]!r} has {mapping[bad[0]]!r} where a list of attribute ids "
                        f"belongs")
    return pd.DataFrame({"attributes": list(mapping.values())},
                        index=pd.Index(np.asarray(list(mapping.keys()), dtype=object), name="item"))


def load_s3rec(directory: str | Path, name: str = "Beauty") -> Dataset:
    """An S3-Rec dataset directory: ``<name>.txt`` and, if present, ``<name>_item2attributes.json``."""
    directory = Path(directory)
    attributes = directory / f"{name}_item2attributes.json"
    return read_sequences(directory / f"{name}.txt", attributes=attributes if attributes.is_file() else None,
                          name=name)
