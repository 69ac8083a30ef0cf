"""The NCF benchmark format (He et al. 2017, reused by DeepCF and others) as a sampled-negative Split.

``<prefix>.train.rating`` and ``<prefix>.test.rating``: ``user\\titem\\tvalue[\\ttimestamp]`` a line (value: a
rating or a play count); ``<prefix>.test.negative``: ``(user,item)`` and then the sampled negative items, one
line per test user. Each test user is ranked among their test item and its given negatives.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.readers import ColumnMapping, read_events
from recengine.data.split import Split
from recengine.data.vocab import Vocabulary
from recengine.errors import ConfigError, DataError

PROTOCOL = "ncf-sampled"


def load_ncf(
    path_prefix: str | Path,
    *,
    weights: str = "binary",
    test_in_negatives: str = "drop",
    name: str | None = None,
) -> Split:
    """Read ``<prefix>.train.rating``, ``.test.rating`` and ``.test.negative`` into an ``ncf-sampled`` Split.

    weights: "binary" (every train interaction weighs 1.0) or "count" (the file's value, e.g. play counts).
    Users and items keep their given ids, in one vocabulary covering train, test and negatives (numeric order
    when the ids are numbers, so NCF's 0-based ids equal internal indices). candidates holds each test user's
    test item and its negatives. A negative equal to the user's test item (86 lines of the released Last.fm
    file) is kept as one candidate, as NCF's own evaluation code does (it scores a dict keyed by item), and
    info counts those lines; test_in_negatives="raise" makes it a DataError instead. info also counts
    negatives that are train items of the user (they stay, and are ranked: that is how the files were sampled).
    """
    if weights not in ("binary", "count"):
        raise ConfigError(f"weights must be 'binary' or 'count', got {weights!r}")
    if test_in_negatives not in ("raise", "drop"):
        raise ConfigError(f"test_in_negatives must be 'raise' or 'drop', got {test_in_negatives!r}")
    prefix = Path(path_prefix)
    base = name or prefix.name
    train = _read_ratings(Path(f"{prefix}.train.rating"))
    test = _read_ratings(Path(f"{prefix}.test.rating"))
    neg_file = Path(f"{prefix}.test.negative")
    neg_users, pair_items, negatives, neg_lengths, neg_lines = _read_negatives(neg_file)

    users = _vocabulary(train["user"], test["user"], neg_users)
    items = _vocabulary(train["item"], test["item"], pair_items, negatives)

    # Timestamps: the file's, else file order with test after train (NCF holds out the latest interaction).
    if "timestamp" not in train.columns:
        train["timestamp"] = np.arange(len(train), dtype=np.int64)
        test["timestamp"] = np.arange(len(test), dtype=np.int64) + len(train)
    if weights == "binary":
        train["weight"] = 1.0
    test["weight"] = 1.0
    train_ds = Dataset.from_events(train, users=users, items=items, name=f"{base}-train")
    test_ds = Dataset.from_events(test, users=users, items=items, name=f"{base}-test")

    test_counts = np.diff(test_ds.indptr)
    if (test_counts > 1).any():
        u = int(np.flatnonzero(test_counts > 1)[0])
        raise DataError(f"{prefix}.test.rating: user {users.ids[u]!r} has {test_counts[u]} test items; the "
                        f"NCF format holds out exactly one per user")
    test_users = np.flatnonzero(test_counts == 1)
    candidates, clashes = _candidates(neg_file, users, items, test_ds, test_users, neg_users, pair_items,
                                      negatives, neg_lengths, neg_lines, test_in_negatives)
    seen = np.bincount(train_ds.item_index, minlength=len(items)) > 0
    in_train = candidates.multiply(train_ds.matrix("binary")[test_users])
    info = {
        "source": str(prefix), "weights": weights,
        "negatives_per_user": int(np.median(neg_lengths - 1)) if len(neg_lengths) else 0,
        "test_items_unseen_in_train": int((~seen[test_ds.item_index]).sum()),
        "negatives_in_train": int(in_train.nnz),
        "test_item_in_negatives": clashes,
    }
    # NCF ranks every test user, even one whose test item never occurs in train, and ranks all 100 given
    # candidates, even those the user has in train: keep both, as published.
    return Split.from_datasets(PROTOCOL, train_ds, test_ds, candidates=candidates, drop_unseen_items=False,
                               info=info, exclude_seen=False)


def _read_ratings(file: Path) -> pd.DataFrame:
    """user, item, weight (the file's value) and timestamp when the file has one."""
    if not file.is_file():
        raise DataError(f"{file}: no such file; load_ncf needs <prefix>.train.rating, .test.rating and "
                        f".test.negative")
    n_fields = _fields_in_first_line(file)
    if n_fields not in (3, 4):
        raise DataError(f"{file}, line 1: expected 3 or 4 tab-separated fields (user, item, value"
                        f"[, timestamp]), found {n_fields}")
    names = ["user", "item", "value", "timestamp"][:n_fields]
    columns = ColumnMapping(timestamp="timestamp" if n_fields == 4 else None, weight="value")
    events = read_events(file, format="tsv", names=names, columns=columns).events
    if n_fields == 3:
        events = events.drop(columns=["timestamp"])
    return events


def _fields_in_first_line(file: Path) -> int:
    with open(file, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                return len(line.rstrip("\r\n").split("\t"))
    raise DataError(f"{file}: the file is empty")


def _read_negatives(file: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per line: user and test item of the pair; all negatives flattened; fields per line (the pair
    included); line numbers."""
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    lines = pd.Series(file.read_text(encoding="utf-8").split("\n"), dtype=object).str.rstrip("\r")
    line_no = np.arange(1, len(lines) + 1)
    present = (lines.str.strip() != "").to_numpy()
    lines, line_no = lines[present].reset_index(drop=True), line_no[present]
    fields = lines.str.split("\t")
    pair = fields.str[0].str.extract(r"^\(\s*([^,\s]+)\s*,\s*([^)\s]+)\s*\)$")
    bad = pair[0].isna().to_numpy()
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{file}, line {line_no[k]}: expected '(user,item)' first, "
                        f"found {fields.iloc[k][0]!r}")
    lengths = fields.str.len().to_numpy()
    flat = np.concatenate(fields.to_numpy()) if len(fields) else np.empty(0, dtype=object)
    is_neg = np.ones(len(flat), dtype=bool)
    is_neg[np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)] = False
    negatives = flat[is_neg]
    empty = negatives == ""
    if empty.any():
        k = int(np.repeat(np.arange(len(lengths)), lengths - 1)[np.flatnonzero(empty)[0]])
        raise DataError(f"{file}, line {line_no[k]}: empty negative item id (a doubled or trailing tab?)")
    return pair[0].to_numpy(dtype=object), pair[1].to_numpy(dtype=object), negatives, lengths, line_no


def _candidates(
    file: Path, users: Vocabulary, items: Vocabulary, test: Dataset, test_users: np.ndarray,
    neg_users: np.ndarray, pair_items: np.ndarray, negatives: np.ndarray, lengths: np.ndarray,
    line_no: np.ndarray, test_in_negatives: str,
) -> tuple[sp.csr_matrix, int]:
    n_lines = len(neg_users)
    u = users.index(neg_users)
    dup = pd.Series(u).duplicated().to_numpy()
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        raise DataError(f"{file}, line {line_no[k]}: user {neg_users[k]!r} has a second negatives line")
    # The pair on each line must be that user's test interaction.
    test_item_of = np.full(len(users), -1, dtype=np.int64)
    test_item_of[test.user_index] = test.item_index
    mismatch = test_item_of[u] != items.index(pair_items)
    if mismatch.any():
        k = int(np.flatnonzero(mismatch)[0])
        raise DataError(f"{file}, line {line_no[k]}: pair ({neg_users[k]},{pair_items[k]}) is not that "
                        f"user's test interaction in the .test.rating file")
    missing = np.setdiff1d(test_users, u)
    if len(missing):
        raise DataError(f"{file}: no negatives line for test user {users.ids[missing[0]]!r} "
                        f"({len(missing)} test users lack one)")
    line_of_neg = np.repeat(np.arange(n_lines), lengths - 1)
    neg_index = items.index(negatives)
    clash = neg_index == test_item_of[u][line_of_neg]
    if clash.any() and test_in_negatives == "raise":
        k = int(line_of_neg[np.flatnonzero(clash)[0]])
        raise DataError(f"{file}, line {line_no[k]}: the negatives of user {neg_users[k]!r} include their "
                        f"test item {pair_items[k]!r} ({len(np.unique(line_of_neg[clash]))} lines do); a "
                        f"sampled negative must differ from the test item. Pass test_in_negatives='drop' to "
                        f"rank such an item once, as NCF's evaluation code does")
    # Rows follow the Split's test users (ascending internal index).
    row_of_user = np.full(len(users), -1, dtype=np.int64)
    row_of_user[test_users] = np.arange(len(test_users))
    rows = np.concatenate([row_of_user[u], row_of_user[u][line_of_neg]])
    cols = np.concatenate([test_item_of[u], neg_index])
    keep = rows >= 0  # lines of users without a test item cannot be evaluated (and are caught above)
    m = sp.csr_matrix((np.ones(int(keep.sum()), dtype=np.float32), (rows[keep], cols[keep])),
                      shape=(len(test_users), len(items)))
    m.sum_duplicates()
    m.data[:] = 1.0  # an item listed twice is still one candidate
    return m, int(len(np.unique(line_of_neg[clash])))


def _vocabulary(*columns: pd.Series | np.ndarray) -> Vocabulary:
    """Distinct ids of the columns; numeric order when every id is an integer, else first appearance."""
    values = pd.unique(np.concatenate([np.asarray(c, dtype=object) for c in columns]).astype(str))
    numbers = pd.to_numeric(pd.Series(values), errors="coerce")
    if len(values) and numbers.notna().all() and (numbers == np.round(numbers)).all():
        values = values[np.argsort(numbers.to_numpy(), kind="stable")]
    return Vocabulary(values)
