"""Bulk ingestion: event, item and user files read (and validated) by the readers, each file one transaction."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from recengine.data.readers import ColumnMapping, _detect_format, read_events, read_items, read_users
from recengine.errors import ConfigError, DataError
from recengine.store.store import Store

KINDS = ("events", "items", "users")


@dataclass(frozen=True)
class IngestReport:
    """What one file added: rows stored, rows set aside in the reject file, and how long it took."""

    path: Path
    kind: str
    rows: int
    seconds: float
    rejected: int = 0
    reject_path: Path | None = None


def ingest_file(store: Store, path: str | Path, *, kind: str = "auto",
                columns: dict[str, str | None] | None = None, reject_path: str | Path | None = None) -> IngestReport:
    """Read one file with the readers and add it to the store in one transaction.

    kind: events, items, users or auto (from the columns: the user and item columns → events; only the item
    column → items; only the user column → users). columns maps event fields to file columns, as read_events
    takes it; its user and item columns are also the id columns of user and item files. reject_path (events
    only) writes bad rows there and loads the rest; without it the first bad row stops the file.
    """
    path = Path(path)
    mapping = replace(ColumnMapping(), **(columns or {}))
    kind = detect_kind(path, mapping) if kind == "auto" else kind
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: use one of {', '.join(KINDS)} or auto")
    if reject_path is not None and kind != "events":
        raise ConfigError(f"{path}: a reject file is for event files; an {kind} file loads whole or not at all")
    start = time.perf_counter()
    if kind == "events":
        result = read_events(path, columns=columns, on_error="reject" if reject_path else "raise",
                             reject_path=reject_path)
        rows = store.add_events(result.events)
        return IngestReport(path, kind, rows, time.perf_counter() - start, result.rejected, result.reject_path)
    if kind == "items":
        rows = store.upsert_items(read_items(path, id_column=mapping.item))
    else:
        rows = store.upsert_users(read_users(path, id_column=mapping.user))
    return IngestReport(path, kind, rows, time.perf_counter() - start)


def detect_kind(path: Path, mapping: ColumnMapping) -> str:
    """events, items or users, from which id columns the file has."""
    present = set(_columns(path))
    has_user, has_item = mapping.user in present, mapping.item in present
    if has_user or has_item:
        return "events" if has_user and has_item else "items" if has_item else "users"
    raise DataError(f"{path}: cannot tell events, items or users apart: it has neither a {mapping.user!r} nor an "
                    f"{mapping.item!r} column ({sorted(present)}); map them with --columns or pass --kind")


def _columns(path: Path) -> list[str]:
    """The column names of a file, reading only its head."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    fmt = _detect_format(path, None)
    try:
        if fmt == "parquet":
            return list(pq.read_schema(path).names)
        if fmt == "jsonl":
            first = next(iter(pd.read_json(path, lines=True, chunksize=1, dtype=False)), pd.DataFrame())
            return list(first.columns)
        return list(pd.read_csv(path, sep="," if fmt == "csv" else "\t", nrows=0).columns)
    except (OSError, ValueError) as exc:  # Arrow's and pandas' parse errors are ValueErrors
        raise DataError(f"{path}: cannot read its header ({exc})") from exc
