"""Readers: event, item and user files (CSV, TSV, Parquet, JSON lines) → validated frames and Datasets.

Every row is checked with vectorized masks after reading the file as strings (or nullable types): a bad row
either stops the load with a DataError naming the file, the line and the problem, or, with
``on_error="reject"``, goes to a reject file with its line number and reason. Nothing is dropped silently.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import logging
import lzma
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recengine.data.dataset import Dataset
from recengine.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: File formats read_events understands, and the extensions that select them.
FORMATS = ("csv", "tsv", "parquet", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
               ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".zip")
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
_NUMERIC_TIME_UNITS = {"unix": 1, "unix_ms": 1_000, "unix_us": 1_000_000, "unix_ns": 1_000_000_000}
#: Seconds beyond which a timestamp cannot be a date (year ~2900); also keeps int64 conversion safe.
_MAX_SECONDS = 3.0e10


@dataclass(frozen=True)
class ColumnMapping:
    """Which source column holds each canonical field.

    user and item are required. timestamp=None numbers the rows in file order instead (for files that are
    already chronological). event, rating and weight are optional (None = not in the file).
    """

    user: str = "user"
    item: str = "item"
    timestamp: str | None = "timestamp"
    event: str | None = None
    rating: str | None = None
    weight: str | None = None

    @classmethod
    def infer(cls, columns: Sequence[str]) -> ColumnMapping:
        """The mapping for a file that uses the canonical names (user, item, timestamp, event, rating,
        weight; "value" is accepted for rating)."""
        present = set(columns)
        rating = "rating" if "rating" in present else "value" if "value" in present else None
        return cls(
            timestamp="timestamp" if "timestamp" in present else "",
            event="event" if "event" in present else None,
            rating=rating,
            weight="weight" if "weight" in present else None,
        )

    def mapped(self) -> dict[str, str]:
        """canonical field → source column, for the fields that are mapped."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


@dataclass(frozen=True)
class ReadResult:
    """What read_events returns: the canonical event frame and what was set aside."""

    events: pd.DataFrame
    rejected: int = 0
    reject_path: Path | None = None
    blank_lines: int = 0


# ------------------------------------------------------------------------------------------------- events
def read_events(
    path: str | Path,
    *,
    columns: ColumnMapping | dict[str, str | None] | None = None,
    format: str | None = None,
    on_error: str = "raise",
    reject_path: str | Path | None = None,
    timestamp_format: str | None = None,
    strict: bool = False,
    sep: str | None = None,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
) -> ReadResult:
    """Read an event file into the canonical frame (user, item, timestamp and optional rating, weight, event).

    columns: source column per field; None = the canonical names (see ColumnMapping.infer); a dict maps some
    fields and leaves the rest to their canonical names.
    format: "csv", "tsv", "parquet" or "jsonl"; None = from the extension (compressed CSV/JSON work too).
    on_error: "raise" stops at the first bad row with a DataError naming file, line and problem; "reject"
    writes bad rows to reject_path (default: next to the input, ``<name>.rejected.csv``) and loads the rest.
    timestamp_format: None reads numbers as unix seconds and other strings as ISO 8601; "unix", "unix_ms",
    "unix_us", "unix_ns" read numbers only; "iso" reads ISO 8601 only; anything else is a strftime pattern.
    strict: also reject files with columns the mapping does not use.
    sep, names: a custom delimiter, and column names for a file without a header line.
    Line numbers are 1-based and count the header line (CSV/TSV) and blank lines; Parquet reports rows.
    """
    path = Path(path)
    if on_error not in ("raise", "reject"):
        raise ConfigError(f"on_error must be 'raise' or 'reject', got {on_error!r}")
    fmt = _detect_format(path, format)
    raw, lines, blank, malformed = _read_raw(path, fmt, sep=sep, names=names, encoding=encoding)
    if columns is None or isinstance(columns, dict):
        # Fields not mapped explicitly are found by their canonical names, so a partial mapping never
        # silently ignores a rating or event column.
        columns = replace(ColumnMapping.infer(list(raw.columns)), **(columns or {}))
    if reject_path is None and on_error == "reject":
        reject_path = path.with_name(path.name + ".rejected.csv")
    return parse_events(
        raw, columns, source=str(path), lines=lines, blank=blank, malformed=malformed, on_error=on_error,
        reject_path=reject_path, timestamp_format=timestamp_format, strict=strict,
        line_label="row" if fmt == "parquet" else "line",
    )


def parse_events(
    frame: pd.DataFrame,
    columns: ColumnMapping | None = None,
    *,
    source: str = "<frame>",
    lines: np.ndarray | None = None,
    blank: np.ndarray | None = None,
    malformed: pd.DataFrame | None = None,
    on_error: str = "raise",
    reject_path: str | Path | None = None,
    timestamp_format: str | None = None,
    strict: bool = False,
    line_label: str = "row",
) -> ReadResult:
    """Validate and convert a raw frame (strings or typed columns) into the canonical event frame.

    lines: the line number of each row (default 1-based row number); blank: rows that are blank lines (not
    records, counted apart); malformed: lines the parser could not split, as a frame of line, reason.
    The other arguments are as in read_events.
    """
    if on_error not in ("raise", "reject"):
        raise ConfigError(f"on_error must be 'raise' or 'reject', got {on_error!r}")
    if on_error == "reject" and reject_path is None:
        raise ConfigError("on_error='reject' needs a reject_path to write the bad rows to")
    columns = columns if columns is not None else ColumnMapping.infer(list(frame.columns))
    n = len(frame)
    lines = np.arange(1, n + 1, dtype=np.int64) if lines is None else np.asarray(lines, dtype=np.int64)
    blank = np.zeros(n, dtype=bool) if blank is None else np.asarray(blank, dtype=bool)
    _check_header(frame, columns, source + (", line 1 (header)" if line_label == "line" else ""), strict)
    mapped = columns.mapped()

    problems = _Problems(n)
    out: dict[str, object] = {}
    for field in ("user", "item"):
        col = frame[mapped[field]]
        problems.flag(col.isna().to_numpy(), f"missing {field} (column {mapped[field]!r})")
        out[field] = _as_id_strings(col)
    if columns.timestamp:
        col = frame[mapped["timestamp"]]
        problems.flag(col.isna().to_numpy(), f"missing timestamp (column {mapped['timestamp']!r})")
        seconds, bad = _parse_timestamps(col, timestamp_format)
        problems.flag(bad, "unparsable timestamp", values=col)
        out["timestamp"] = seconds
    else:
        # File order stands in for time; rejected rows keep their place so the others do not shift.
        out["timestamp"] = np.arange(n, dtype=np.int64)
    for field in ("rating", "weight"):
        if field in mapped:
            col = frame[mapped[field]]
            problems.flag(col.isna().to_numpy(), f"missing {field} (column {mapped[field]!r})")
            values = _to_float(col)
            problems.flag(~np.isfinite(values) & col.notna().to_numpy(), f"{field} is not a number",
                          values=col)
            out[field] = values
    if "event" in mapped:
        col = frame[mapped["event"]]
        problems.flag(col.isna().to_numpy(), f"missing event (column {mapped['event']!r})")
        out["event"] = _as_id_strings(col)

    bad = problems.any() & ~blank
    malformed = malformed if malformed is not None else pd.DataFrame({"line": [], "reason": []})
    n_bad = int(bad.sum()) + len(malformed)
    written = None
    if n_bad:
        if on_error == "raise":
            first_row = lines[bad].min() if bad.any() else np.iinfo(np.int64).max
            first_mal = malformed["line"].min() if len(malformed) else np.iinfo(np.int64).max
            if first_mal < first_row:
                line, reason = int(first_mal), malformed.loc[malformed["line"].idxmin(), "reason"]
            else:
                k = int(np.flatnonzero(bad & (lines == first_row))[0])
                line, reason = int(first_row), problems.reason(k)
            raise DataError(
                f"{source}, {line_label} {line}: {reason} ({n_bad} bad {line_label}(s) in all; fix them, or "
                f"pass on_error='reject' to write them to a reject file and load the rest)")
        written = _write_rejects(frame, bad, lines, problems, malformed, Path(reject_path), line_label)
        logger.warning("%s: %d bad %s(s) written to %s", source, n_bad, line_label, written)

    keep = ~bad & ~blank
    # Id columns stay pandas (Arrow-backed) strings: filtering them is cheap, converting them is not.
    events = pd.DataFrame({
        key: (value[keep].reset_index(drop=True) if isinstance(value, pd.Series) else np.asarray(value)[keep])
        for key, value in out.items()
    })
    events["timestamp"] = events["timestamp"].astype(np.int64)
    return ReadResult(events=events, rejected=n_bad, reject_path=written, blank_lines=int(blank.sum()))


class _Problems:
    """The first problem of every row, collected column by column with vectorized masks."""

    def __init__(self, n: int):
        self.code = np.full(n, -1, dtype=np.int16)
        self.messages: list[str] = []
        self.values: list[pd.Series | None] = []

    def flag(self, mask: np.ndarray, message: str, values: pd.Series | None = None) -> None:
        mask = np.asarray(mask, dtype=bool) & (self.code < 0)
        if mask.any():
            self.code[mask] = len(self.messages)
            self.messages.append(message)
            self.values.append(values)

    def any(self) -> np.ndarray:
        return self.code >= 0

    def reason(self, row: int) -> str:
        code = int(self.code[row])
        values = self.values[code]
        suffix = f" {values.iloc[row]!r}" if values is not None else ""
        return self.messages[code] + suffix

    def reasons(self, rows: np.ndarray) -> list[str]:
        # Only called for bad rows, which are few; the messages need the offending values.
        return [self.reason(int(r)) for r in rows]


def _check_header(frame: pd.DataFrame, columns: ColumnMapping, source: str, strict: bool) -> None:
    if columns.timestamp == "":
        raise DataError(
            f"{source}: no 'timestamp' column (it has {list(frame.columns)}); map one with "
            f"ColumnMapping(timestamp=...), or pass ColumnMapping(timestamp=None) to use the file's order")
    mapped = columns.mapped()
    for field, name in mapped.items():
        if name not in frame.columns:
            raise DataError(f"{source}: column {name!r} (mapped to {field}) is not in the file; "
                            f"it has {list(frame.columns)}")
    if strict:
        extra = [c for c in frame.columns if c not in set(mapped.values())]
        if extra:
            raise DataError(f"{source}: unknown column(s) {extra} (strict=True); map them or "
                            f"drop strict")


def _detect_format(path: Path, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise ConfigError(f"unknown format {format!r}: use one of {list(FORMATS)}")
        return format
    suffixes = [s.lower() for s in path.suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    if suffixes and suffixes[-1] in _EXTENSIONS:
        return _EXTENSIONS[suffixes[-1]]
    raise DataError(f"{path}: cannot tell the file format from its name; pass format= one of {list(FORMATS)}")


def _read_raw(
    path: Path, fmt: str, *, sep: str | None, names: Sequence[str] | None, encoding: str,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    """The file as a frame of strings (or typed columns for Parquet/JSON), each row's line number, a mask of
    blank lines, and the lines the parser had to skip."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    if fmt == "parquet":
        try:
            raw = pd.read_parquet(path, dtype_backend="numpy_nullable")
        except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
            raise DataError(f"{path}: cannot read it as Parquet ({exc}); check the file or pass "
                            f"format=") from exc
        n = len(raw)
        return raw.reset_index(drop=True), np.arange(1, n + 1), np.zeros(n, bool), _no_malformed()
    if fmt == "jsonl":
        return _read_jsonl(path, encoding)
    sep = sep or ("," if fmt == "csv" else "\t")
    if len(sep) == 1 and path.suffix.lower() != ".zip":
        return _read_delimited_arrow(path, sep, names, encoding)
    return _read_delimited(path, sep, names, encoding)


def _no_malformed() -> pd.DataFrame:
    return pd.DataFrame({"line": pd.Series([], dtype=np.int64), "reason": pd.Series([], dtype=object)})


def _read_delimited_arrow(
    path: Path, sep: str, names: Sequence[str] | None, encoding: str,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    """Delimited text through Arrow's C++ reader, every column as nullable strings: several times faster
    than pandas' string parsing. Rows with the wrong number of fields go to the handler, with their line."""
    header = names is None
    if header:
        names = _header(path, sep, encoding)
    invalid: list[tuple[int | None, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number, f"expected {row.expected_columns} fields, saw {row.actual_columns}: "
                                    f"{row.text!r}"))
        return "skip"

    def read(threads: bool) -> pa.Table:
        invalid.clear()
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(use_threads=threads, skip_rows=1 if header else 0,
                                           column_names=list(names), encoding=encoding),
            parse_options=pacsv.ParseOptions(delimiter=sep, ignore_empty_lines=False,
                                             invalid_row_handler=on_invalid),
            # Only an empty field is missing: "NA" or "null" may be real ids.
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in names},
                                                 strings_can_be_null=True, null_values=[""],
                                                 quoted_strings_can_be_null=False),
        )

    try:
        table = read(threads=True)
        if any(number is None for number, _ in invalid):
            table = read(threads=False)  # Arrow numbers the bad lines only when it reads in one thread
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "utf8" in str(exc).lower():
            raise DataError(f"{path}: not valid {encoding} text ({exc}); pass encoding= "
                            f"(e.g. 'latin-1')") from exc
        raise DataError(f"{path}: cannot read it as delimited text ({exc})") from exc
    raw = table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    n = len(raw)
    first = 2 if header else 1
    malformed = _no_malformed()
    if invalid:
        invalid.sort(key=lambda x: x[0])
        bad_lines = np.array([number for number, _ in invalid], dtype=np.int64)
        malformed = pd.DataFrame({"line": bad_lines, "reason": [reason for _, reason in invalid]})
        # Rows after a skipped line sit one line further down: shift each row by the skips before it.
        slots = bad_lines - first - np.arange(len(bad_lines))
        lines = np.arange(n, dtype=np.int64) + first + np.searchsorted(slots, np.arange(n), side="right")
    else:
        lines = np.arange(n, dtype=np.int64) + first
    blank = raw.isna().all(axis=1).to_numpy() if raw.shape[1] else np.zeros(n, bool)
    return raw, lines, blank, malformed


def _header(path: Path, sep: str, encoding: str) -> list[str]:
    """The column names on the first line."""
    try:
        with _OPENERS.get(path.suffix.lower(), open)(path, "rb") as stream:
            first = stream.readline()
        text = first.decode("utf-8-sig" if encoding.lower().replace("-", "") == "utf8" else encoding)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}, line 1: not valid {encoding} text ({exc}); pass encoding=") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read it ({exc})") from exc
    fields = next(csv.reader([text.rstrip("\r\n")], delimiter=sep), [])
    if not fields or fields == [""]:
        raise DataError(f"{path}, line 1: no header line (the file is empty?); pass names= for a file "
                        f"without one")
    if len(set(fields)) != len(fields):
        dup = next(f for f in fields if fields.count(f) > 1)
        raise DataError(f"{path}, line 1 (header): column {dup!r} appears twice")
    return fields


def _read_delimited(
    path: Path, sep: str, names: Sequence[str] | None, encoding: str,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    """The pandas reader, for multi-character separators and zip files."""
    header = names is None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            # Only an empty field is missing: "NA" or "null" may be real ids.
            raw = pd.read_csv(
                path, sep=sep, dtype=str, keep_default_na=False, na_values=[""], skip_blank_lines=False,
                on_bad_lines="warn", header=0 if header else None, names=list(names) if names else None,
                encoding=encoding, engine="c" if len(sep) == 1 else "python",
            )
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not valid {encoding} text ({exc}); pass encoding= "
                            f"(e.g. 'latin-1')") from exc
        except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
            raise DataError(f"{path}: cannot read it as delimited text ({exc})") from exc
    skipped = []
    for w in caught:
        if issubclass(w.category, pd.errors.ParserWarning):
            found = re.findall(r"[Ss]kipping line (\d+): ([^\n]*)", str(w.message))
            skipped += [(int(n), msg) for n, msg in found]
    malformed = _no_malformed()
    first = 2 if header else 1
    n = len(raw)
    if skipped:
        skipped.sort()
        bad_lines = np.array([s[0] for s in skipped], dtype=np.int64)
        texts = _read_lines(path, set(bad_lines.tolist()), encoding)
        malformed = pd.DataFrame({
            "line": bad_lines,
            "reason": [f"{msg.strip()}: {texts.get(int(k), '')!r}" for k, msg in skipped],
        })
        # Rows after a skipped line sit one line further down: shift each row by the skips before it.
        slots = bad_lines - first - np.arange(len(bad_lines))
        lines = np.arange(n, dtype=np.int64) + first + np.searchsorted(slots, np.arange(n), side="right")
    else:
        lines = np.arange(n, dtype=np.int64) + first
    blank = raw.isna().all(axis=1).to_numpy() if raw.shape[1] else np.zeros(n, bool)
    return raw, lines, blank, malformed


def _read_lines(path: Path, wanted: set[int], encoding: str) -> dict[int, str]:
    """The text of a few physical lines (error path only)."""
    found: dict[int, str] = {}
    last = max(wanted)
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        for number, text in enumerate(f, start=1):
            if number in wanted:
                found[number] = text.rstrip("\r\n")
            if number >= last:
                break
    return found


def _read_jsonl(path: Path, encoding: str) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    opener = _OPENERS.get(path.suffix.lower(), open)
    try:
        with opener(path, "rt", encoding=encoding, newline="") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text ({exc}); pass encoding=") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read it as JSON lines ({exc})") from exc
    # Split on "\n" only: str.splitlines would also break at characters JSON strings may hold (U+2028).
    lines_text = pd.Series(text.split("\n"), dtype=object)
    nonblank = (lines_text.str.strip() != "").to_numpy()
    numbers = np.arange(1, len(lines_text) + 1, dtype=np.int64)[nonblank]
    body = lines_text[nonblank].tolist()
    try:
        raw = pd.read_json(io.StringIO("\n".join(body)), lines=True, dtype=False,
                           dtype_backend="numpy_nullable") if body else pd.DataFrame()
        if len(raw) != len(body):
            raise ValueError("row count differs from line count")
        ok = np.ones(len(body), dtype=bool)
        malformed = _no_malformed()
    except ValueError:
        # Error path: find the lines that are not JSON objects one by one, then read the rest.
        objects, ok_list, reasons = [], [], []
        for t in body:
            try:
                obj = json.loads(t)
            except ValueError as exc:
                obj, reason = None, f"not valid JSON ({exc})"
            else:
                reason = None if isinstance(obj, dict) else "not a JSON object"
            ok_list.append(reason is None)
            if reason is None:
                objects.append(obj)
            else:
                reasons.append(f"{reason}: {t.strip()[:200]!r}")
        ok = np.array(ok_list, dtype=bool)
        raw = pd.DataFrame.from_records(objects).convert_dtypes() if objects else pd.DataFrame()
        malformed = pd.DataFrame({"line": numbers[~ok], "reason": reasons})
    return raw.reset_index(drop=True), numbers[ok], np.zeros(len(raw), bool), malformed


#: A decimal number as text (what a rating, weight or unix time may look like).
_NUMBER = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"


def _to_float(col: pd.Series) -> np.ndarray:
    """float64 values; NaN where missing or not a number (callers tell those apart with col.isna())."""
    if pd.api.types.is_bool_dtype(col):
        return np.full(len(col), np.nan)
    if pd.api.types.is_numeric_dtype(col):
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_string_dtype(col) and not pd.api.types.is_object_dtype(col):
        # Vectorized in Arrow: validate with a regex, then cast only the valid strings.
        text = pc.utf8_trim_whitespace(pa.array(col, from_pandas=True))
        ok = pc.fill_null(pc.match_substring_regex(text, _NUMBER), False)
        values = pc.cast(pc.if_else(ok, text, pa.scalar(None, text.type)), pa.float64())
        return values.to_numpy(zero_copy_only=False)
    return pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _as_id_strings(col: pd.Series) -> pd.Series:
    """External ids as strings; integral floats (an int column with gaps) lose their '.0'."""
    if pd.api.types.is_float_dtype(col):
        values = col.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = values[np.isfinite(values)]
        if np.array_equal(finite, np.round(finite)):
            col = col.astype("Int64")
    if pd.api.types.is_string_dtype(col) and not pd.api.types.is_object_dtype(col):
        return col
    return col.astype("string").astype(object).where(col.notna(), None)


def _parse_timestamps(col: pd.Series, timestamp_format: str | None) -> tuple[np.ndarray, np.ndarray]:
    """int64 seconds since the epoch, and a mask of present values that could not be parsed."""
    present = col.notna().to_numpy()
    n = len(col)
    seconds = np.full(n, np.nan)
    if pd.api.types.is_datetime64_any_dtype(col):
        dt = pd.to_datetime(col, utc=True)
        seconds = _datetime_seconds(dt)
    else:
        scale = _NUMERIC_TIME_UNITS.get(timestamp_format or "unix")
        use_numbers = timestamp_format is None or timestamp_format in _NUMERIC_TIME_UNITS
        if use_numbers:
            numbers = _to_float(col)
            seconds = np.where(np.isfinite(numbers), numbers / scale, np.nan)
        todo = present & np.isnan(seconds)
        if todo.any() and timestamp_format not in _NUMERIC_TIME_UNITS:
            fmt = "ISO8601" if timestamp_format in (None, "iso") else timestamp_format
            dt = pd.to_datetime(col[todo].astype(str), format=fmt, utc=True, errors="coerce")
            seconds[todo] = _datetime_seconds(dt)
    bad = present & (np.isnan(seconds) | (np.abs(np.nan_to_num(seconds)) > _MAX_SECONDS))
    return np.floor(np.where(bad | ~present, 0, seconds)).astype(np.int64), bad


def _datetime_seconds(dt: pd.Series) -> np.ndarray:
    delta = (dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    return delta.to_numpy(dtype=np.float64, na_value=np.nan)


def _write_rejects(
    frame: pd.DataFrame, bad: np.ndarray, lines: np.ndarray, problems: _Problems, malformed: pd.DataFrame,
    path: Path, line_label: str,
) -> Path:
    """The bad rows with their original fields, line number and reason, in file order."""
    rows = np.flatnonzero(bad)
    rejects = frame.iloc[rows].astype(object).copy()
    rejects[line_label] = lines[rows]
    rejects["reason"] = problems.reasons(rows)
    if len(malformed):
        mal = malformed.rename(columns={"line": line_label})
        rejects = pd.concat([rejects, mal], ignore_index=True)
    rejects = rejects.sort_values(line_label, kind="stable")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        rejects.to_csv(path, index=False)
    except OSError as exc:
        raise DataError(f"cannot write the reject file {path} ({exc}); pass reject_path= a writable "
                        f"file") from exc
    return path


# ------------------------------------------------------------------------------------------------ features
def read_items(
    path: str | Path,
    *,
    id_column: str = "item",
    columns: Sequence[str] | Mapping[str, str] | None = None,
    list_columns: Sequence[str] = ("genres", "categories", "tags"),
    list_sep: str = "|",
    format: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """Item features indexed by item id (as str, index name "item").

    columns: None keeps every column; a list keeps those; a mapping keeps and renames (source → target).
    list_columns (names after renaming) hold lists: strings are split on list_sep, an empty value is [].
    """
    return _read_features(path, "item", id_column, columns, list_columns, list_sep, format, sep, encoding)


def read_users(
    path: str | Path,
    *,
    id_column: str = "user",
    columns: Sequence[str] | Mapping[str, str] | None = None,
    list_columns: Sequence[str] = (),
    list_sep: str = "|",
    format: str | None = None,
    sep: str | None = None,
    encoding: str = "utf-8",
) -> pd.DataFrame:
    """User features indexed by user id (as str, index name "user"); arguments as in read_items."""
    return _read_features(path, "user", id_column, columns, list_columns, list_sep, format, sep, encoding)


def _read_features(
    path: str | Path, kind: str, id_column: str, columns: Sequence[str] | Mapping[str, str] | None,
    list_columns: Sequence[str], list_sep: str, format: str | None, sep: str | None, encoding: str,
) -> pd.DataFrame:
    path = Path(path)
    fmt = _detect_format(path, format)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    label = "row" if fmt == "parquet" else "line"
    try:
        if fmt == "parquet":
            raw = pd.read_parquet(path)
            first = 1
        elif fmt == "jsonl":
            raw = pd.read_json(path, lines=True, dtype=False)
            first = 1
        else:
            raw = pd.read_csv(path, sep=sep or ("," if fmt == "csv" else "\t"), dtype={id_column: str},
                              encoding=encoding)
            first = 2
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text ({exc}); pass encoding= "
                        f"(e.g. 'latin-1')") from exc
    except Exception as exc:  # the parsers raise many types for a malformed file
        raise DataError(f"{path}: cannot read it as {fmt} ({exc})") from exc
    if id_column not in raw.columns:
        raise DataError(f"{path}, {label} 1: no id column {id_column!r}; it has {list(raw.columns)}; "
                        f"pass id_column=")
    if columns is not None:
        wanted = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
        missing = [c for c in wanted if c not in raw.columns]
        if missing:
            raise DataError(f"{path}: column(s) {missing} not in the file; it has {list(raw.columns)}")
        wanted.pop(id_column, None)
        raw = raw[[id_column, *wanted]].rename(columns=wanted)
    ids = raw[id_column]
    missing_id = ids.isna().to_numpy()
    if missing_id.any():
        raise DataError(f"{path}, {label} {int(np.flatnonzero(missing_id)[0]) + first}: missing {kind} id")
    ids = _as_id_strings(ids).astype(str)
    dup = ids.duplicated().to_numpy()
    if dup.any():
        k = int(np.flatnonzero(dup)[0])
        raise DataError(f"{path}, {label} {k + first}: duplicate {kind} id {ids.iloc[k]!r}")
    features = raw.drop(columns=[id_column])
    features.index = pd.Index(ids.to_numpy(dtype=object), name=kind)
    for name in list_columns:
        if name in features.columns:
            features[name] = split_lists(features[name], list_sep)
    return features


def split_lists(col: pd.Series, sep: str = "|") -> pd.Series:
    """A column of sep-separated strings (or lists/arrays) as Python lists; a missing or empty value is []."""
    if col.map(lambda v: isinstance(v, list | tuple | np.ndarray)).any():
        return col.map(lambda v: list(v) if isinstance(v, list | tuple | np.ndarray) else [])
    text = col.astype(object).where(col.notna(), "").astype(str)
    parts = text.str.split(sep, regex=False)
    # "" splits to [""]: an empty field means no values.
    return parts.map(lambda p: [x for x in p if x])


# ------------------------------------------------------------------------------------------------- dataset
def load_dataset(
    events_path: str | Path,
    *,
    items: str | Path | pd.DataFrame | None = None,
    users: str | Path | pd.DataFrame | None = None,
    columns: ColumnMapping | dict[str, str | None] | None = None,
    format: str | None = None,
    on_error: str = "raise",
    reject_path: str | Path | None = None,
    timestamp_format: str | None = None,
    strict: bool = False,
    name: str | None = None,
    **prepare_options: object,
) -> Dataset:
    """Read events (and optional item/user feature files or frames), prepare them and build a Dataset.

    prepare_options go to recengine.data.prepare.prepare_events (event_weights, unknown_events, duplicates,
    min_rating, k_core, user_core, item_core). What reading and preparing removed is logged.
    """
    from recengine.data.prepare import prepare_events  # prepare imports nothing from here; keep it lazy

    result = read_events(events_path, columns=columns, format=format, on_error=on_error,
                         reject_path=reject_path, timestamp_format=timestamp_format, strict=strict)
    events, report = prepare_events(result.events, **prepare_options)  # type: ignore[arg-type]
    logger.info("%s: read %d events (%d rejected); prepared: %s", events_path, len(result.events),
                result.rejected, report)
    item_features = read_items(items) if isinstance(items, str | Path) else items
    user_features = read_users(users) if isinstance(users, str | Path) else users
    stem = Path(events_path).name.split(".")[0]
    return Dataset.from_events(events, item_features, user_features, name=name or stem)
