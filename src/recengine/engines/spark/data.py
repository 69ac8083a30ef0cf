"""Events on Spark: Parquet (partitioned folders too), CSV/TSV and JSON lines → the event table.

The event table has one row per event: ``user`` and ``item`` (strings), ``timestamp`` (double, whole seconds since
the epoch; when the mapping has no timestamp, ``input_order``: file order stands in for time, as single-node),
``weight`` (double), ``rating`` (double, null without ratings), ``event_type`` (string, only when the input has
event types) and ``input_order`` (long: the row's place in the input, files in path order and rows in file order).
``input_order`` is the tie-break of equal timestamps that the single-node Dataset keeps as its stored order; the
splits need it.

Rows are validated with the single-node reader's rules (recengine.data.readers) and prepared with prepare_events'
steps (event weights, rating threshold, duplicate policy, k-core), all as DataFrame expressions and window
functions. A bad row stops the job with file, row and problem, or, given reject_path, goes to a rejects table
(file, row, problem, record) and is counted: nothing is dropped silently.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from recengine.data.dataset import Dataset
from recengine.data.prepare import DUPLICATE_POLICIES
from recengine.data.readers import ColumnMapping
from recengine.errors import ConfigError, DataError

#: The event table's columns (event_type is there only when the input has event types).
EVENT_COLUMNS = ("user", "item", "timestamp", "weight", "rating", "event_type", "input_order")
FORMATS = ("csv", "tsv", "parquet", "jsonl")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
               ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
_COMPRESSION = (".gz", ".bz2", ".xz", ".zst", ".deflate", ".snappy", ".lz4")
_NUMERIC_TIME_UNITS = {"unix": 1, "unix_ms": 1_000, "unix_us": 1_000_000, "unix_ns": 1_000_000_000}
#: Seconds beyond which a timestamp cannot be a date; the single-node reader's bound.
_MAX_SECONDS = 3.0e10
#: A decimal number as text; the single-node reader's pattern.
_NUMBER = r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$"


@dataclass(frozen=True)
class SparkEvents:
    """What read_events returns: the prepared event table (persisted) and what reading and preparing removed.

    read: records read (blank lines not counted); rejected: bad rows (in the rejects table at reject_path);
    kept: events in the table; report: prepare_events' report (input, per-step removals, output).
    """

    frame: object  # pyspark.sql.DataFrame; pyspark is imported lazily
    read: int
    rejected: int
    kept: int
    report: dict = field(default_factory=dict)
    reject_path: str | None = None
    blank_lines: int = 0

    def to_dataset(self, name: str = "events") -> Dataset:
        """The events as a recengine Dataset, equal to what the single-node load_dataset builds from the same
        file and options (ids in order of first appearance, histories in time order with ties in input order)."""
        return events_to_dataset(self.frame, name=name)


def events_to_dataset(frame, name: str = "events") -> Dataset:
    """An event table (as read_events makes) collected to the driver as a Dataset; for data that fits in memory."""
    wanted = [c for c in EVENT_COLUMNS if c in frame.columns]
    table = frame.select(*wanted).orderBy("input_order").toArrow()
    events = table.to_pandas()
    out = pd.DataFrame({"user": events["user"].astype(object), "item": events["item"].astype(object),
                        "timestamp": events["timestamp"].astype("int64"), "weight": events["weight"]})
    if "rating" in events and events["rating"].notna().all() and len(events):
        out["rating"] = events["rating"]
    if "event_type" in events:
        out["event"] = events["event_type"].astype(object)
    return Dataset.from_events(out, name=name)


# ------------------------------------------------------------------------------------------------- reading
def read_events(
    spark,
    paths: str | Sequence[str],
    *,
    format: str | None = None,
    columns: ColumnMapping | dict[str, str | None] | None = None,
    timestamp_format: str | None = None,
    strict: bool = False,
    sep: str | None = None,
    names: Sequence[str] | None = None,
    reject_path: str | None = None,
    event_weights: Mapping[str, float] | None = None,
    unknown_events: str = "error",
    duplicates: str = "keep",
    min_rating: float | None = None,
    k_core: int | None = None,
    user_core: int | None = None,
    item_core: int | None = None,
) -> SparkEvents:
    """Read event files through `spark` into the event table, validated and prepared.

    paths: files or folders (a partitioned Parquet folder such as ``events/date=2024-01-01/…`` gives its partition
    columns, which the mapping may use), any path Spark reads. format, columns, timestamp_format, strict, sep and
    names are as in recengine.data.readers.read_events (timestamp_format: None, "unix", "unix_ms", "unix_us",
    "unix_ns" or "iso"). reject_path=None stops at the first bad row with a DataError naming file, row and problem;
    a path writes the bad rows there as a CSV table (file, row, problem, record) and loads the rest.
    event_weights, unknown_events, duplicates, min_rating, k_core, user_core and item_core are as in
    recengine.data.prepare.prepare_events, applied in the same order with the same tie rules.
    Rows are 1-based lines for CSV/TSV (the header is line 1) and JSON lines, rows for Parquet.
    """
    paths = [str(paths)] if isinstance(paths, str | Path) else [str(p) for p in paths]
    if not paths:
        raise ConfigError("read_events: give at least one path")
    if timestamp_format is not None and timestamp_format not in (*_NUMERIC_TIME_UNITS, "iso"):
        raise ConfigError(f"timestamp_format {timestamp_format!r}: the Spark engine reads unix, unix_ms, "
                          f"unix_us, unix_ns or iso; convert other formats to ISO 8601 first")
    _check_prepare_options(unknown_events, duplicates)
    fmt = _detect_format(paths, format)
    raw, source_columns, label = _read_raw(spark, paths, fmt, sep, names)
    if columns is None or isinstance(columns, dict):
        columns = replace(ColumnMapping.infer(source_columns), **(columns or {}))
    _check_header(columns, source_columns, paths, strict)
    checked = _validate(raw, columns, timestamp_format)
    read, blank, n_bad, first_bad = _check_counts(checked)
    if n_bad and reject_path is None:
        file, row, problem = first_bad
        raise DataError(f"{file}, {label} {row}: {problem} ({n_bad} bad {label}(s) in all; fix them, or pass "
                        f"reject_path= to write them to a rejects table and load the rest)")
    if n_bad:
        _write_rejects(checked, reject_path, label)
    prepared, report = prepare_events(
        _canonical(checked, columns), event_weights=event_weights, unknown_events=unknown_events,
        duplicates=duplicates, min_rating=min_rating, k_core=k_core, user_core=user_core, item_core=item_core)
    return SparkEvents(prepared, read=read, rejected=n_bad, kept=int(report["output"]), report=report,
                       reject_path=reject_path if n_bad else None, blank_lines=blank)


def _detect_format(paths: list[str], format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise ConfigError(f"unknown format {format!r}: use one of {list(FORMATS)}")
        return format
    found = {_format_of(p) for p in paths}
    if None in found or len(found) > 1:
        raise DataError(f"{paths}: cannot tell one file format from the names; pass format= one of "
                        f"{list(FORMATS)} (a folder needs it)")
    return found.pop()


def _format_of(path: str) -> str | None:
    suffixes = [s.lower() for s in Path(path.rstrip("/")).suffixes]
    while suffixes and suffixes[-1] in _COMPRESSION:
        suffixes.pop()
    return _EXTENSIONS.get(suffixes[-1]) if suffixes else None


def _read_raw(spark, paths: list[str], fmt: str, sep: str | None, names: Sequence[str] | None):
    """The input as a frame of its source columns plus _file, _row (1-based), _order (global position),
    _blank and _malformed (reason or null); the source column names; and what a row is called in messages."""
    from pyspark.sql import functions as F
    from pyspark.sql.utils import AnalysisException

    try:
        if fmt == "parquet":
            data = spark.read.parquet(*paths)
            located = data.select("*", F.col("_metadata.file_path").alias("_file"),
                                  F.lit(0).cast("long").alias("_block"),
                                  F.col("_metadata.row_index").alias("_index"))
            numbered = _number_rows(located)
            source = list(data.columns)
            record = F.to_json(F.struct(*[F.col(f"`{c}`") for c in source]))
            return (numbered.withColumn("_blank", F.lit(False)).withColumn("_malformed", F.lit(None).cast("string"))
                    .withColumn("_record", record)), source, "row"
        lines = spark.read.text(paths).select(
            "value", F.col("_metadata.file_path").alias("_file"),
            F.col("_metadata.file_block_start").alias("_block"), F.monotonically_increasing_id().alias("_index"))
        numbered = _number_rows(lines)
        if fmt == "jsonl":
            return (*_parse_json(spark, paths, numbered), "line")
        return (*_parse_delimited(lines, numbered, sep or ("," if fmt == "csv" else "\t"), names), "line")
    except AnalysisException as exc:
        raise DataError(f"{paths}: cannot read them as {fmt} ({exc.getMessage().splitlines()[0]})") from exc


def _number_rows(frame):
    """Row numbers within each file and one global input position, without a global sort.

    A file is read in splits (blocks); inside a split rows arrive in file order with increasing _index. So a row's
    number is the rows of the file's earlier splits plus its offset inside its own split: a small per-split table,
    broadcast back."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    blocks = frame.groupBy("_file", "_block").agg(F.min("_index").alias("_first"), F.count("*").alias("_n"))
    earlier = Window.unboundedPreceding, -1
    in_file = Window.partitionBy("_file").orderBy("_block").rowsBetween(*earlier)
    overall = Window.orderBy("_file", "_block").rowsBetween(*earlier)
    blocks = blocks.select("_file", "_block", "_first",
                           F.coalesce(F.sum("_n").over(in_file), F.lit(0)).alias("_in_file"),
                           F.coalesce(F.sum("_n").over(overall), F.lit(0)).alias("_before"))
    offset = F.col("_index") - F.col("_first")
    return (frame.join(F.broadcast(blocks), ["_file", "_block"])
            .withColumn("_row", F.col("_in_file") + offset + 1)
            .withColumn("_order", F.col("_before") + offset)
            .drop("_block", "_index", "_first", "_in_file", "_before"))


def _parse_delimited(lines, numbered, sep: str, names: Sequence[str] | None):
    from pyspark.sql import functions as F

    header_text = None
    if names is None:
        # Line 1 of some file: the first row of a split that starts a file.
        first = lines.filter(F.col("_block") == 0).select("value").first()
        if first is None:
            raise DataError("no header line (the files are empty?); pass names= for files without one")
        header_text = first["value"]
        names = next(csv.reader([header_text.lstrip("\ufeff")], delimiter=sep), [])
        if len(set(names)) != len(names) or names in ([], [""]):
            raise DataError(f"header line {header_text!r}: no column names, or a column appears twice")
    names = list(names)
    if header_text is None:
        body = numbered.withColumn("_header_differs", F.lit(False))
    else:
        # Every file must carry the same header; a different one is a problem of that file's line 1.
        header = F.col("_row") == 1
        body = (numbered.withColumn("_header_differs", header & (F.col("value") != F.lit(header_text)))
                .filter(~header | F.col("_header_differs")))
    schema = ", ".join(f"`{n}` string" for n in names) + ", `_corrupt` string"
    options = {"sep": sep, "mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"}
    parsed = body.withColumn("_p", F.from_csv("value", schema, options))
    fields = [F.col("_p").getField(n) for n in names]
    # As single-node: a line whose fields are all empty is blank, not a record.
    all_null = F.lit(True)
    for value in fields:
        all_null = all_null & value.isNull()
    blank = (F.trim(F.col("value")) == "") | (all_null & F.col("_p").getField("_corrupt").isNull())
    malformed = (F.when(F.col("_header_differs"),
                        F.concat(F.lit("header differs from the first file's: '"), F.col("value"), F.lit("'")))
                 .when(F.col("_p").getField("_corrupt").isNotNull(),
                       F.concat(F.lit(f"expected {len(names)} fields: '"), F.col("value"), F.lit("'"))))
    out = parsed.select(*[v.alias(n) for v, n in zip(fields, names, strict=True)], "_file", "_row", "_order",
                        blank.alias("_blank"), F.when(~blank, malformed).alias("_malformed"),
                        F.col("value").alias("_record"))
    return out, names


def _parse_json(spark, paths: list[str], numbered):
    from pyspark.sql import functions as F

    # The keys: Spark's own inference over the files (every value read as text, as the row checks want).
    inferred = spark.read.option("primitivesAsString", True).json(paths).columns
    names = [c for c in inferred if c != "_corrupt_record"]
    schema = ", ".join(f"`{n}` string" for n in names) + (", " if names else "") + "`_corrupt` string"
    options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": "_corrupt"}
    parsed = numbered.withColumn("_p", F.from_json("value", schema, options))
    fields = [F.col("_p").getField(n).alias(n) for n in names]
    malformed = F.when(F.col("_p").isNull() | F.col("_p").getField("_corrupt").isNotNull(),
                       F.concat(F.lit("not a JSON object: '"), F.col("value"), F.lit("'")))
    blank = F.trim(F.col("value")) == ""
    out = parsed.select(*fields, "_file", "_row", "_order", blank.alias("_blank"),
                        F.when(~blank, malformed).alias("_malformed"), F.col("value").alias("_record"))
    return out, names


def _check_header(columns: ColumnMapping, source_columns: list[str], paths: list[str], strict: bool) -> None:
    if columns.timestamp == "":
        raise DataError(
            f"{paths}: no 'timestamp' column (they have {source_columns}); map one with "
            f"ColumnMapping(timestamp=...), or pass ColumnMapping(timestamp=None) to use the input order")
    mapped = columns.mapped()
    for name, column in mapped.items():
        if column not in source_columns:
            raise DataError(f"{paths}: column {column!r} (mapped to {name}) is not in the input; it has "
                            f"{source_columns}")
    if strict:
        extra = [c for c in source_columns if c not in set(mapped.values())]
        if extra:
            raise DataError(f"{paths}: unknown column(s) {extra} (strict=True); map them or drop strict")


# ---------------------------------------------------------------------------------------------- validation
def _validate(raw, columns: ColumnMapping, timestamp_format: str | None):
    """raw plus the canonical values (_user, _item, _timestamp, _rating, _weight, _event) and _problem: the first
    problem of the row, in the single-node reader's order of checks."""
    from pyspark.sql import functions as F

    mapped = columns.mapped()
    types = dict(raw.dtypes)
    problems = [F.col("_malformed")]
    values = {}

    def missing(name: str):
        return F.when(_col(mapped[name]).isNull(), F.lit(f"missing {name} (column {mapped[name]!r})"))

    def quoted(source: str):
        return F.concat(F.lit("'"), _col(source).cast("string"), F.lit("'"))

    for name in ("user", "item"):
        problems.append(missing(name))
        values[name] = _id_strings(raw, mapped[name], types[mapped[name]])
    if columns.timestamp:
        source = mapped["timestamp"]
        seconds = _seconds(_col(source), types[source], timestamp_format)
        bad = _col(source).isNotNull() & (seconds.isNull() | (F.abs(seconds) > _MAX_SECONDS))
        problems += [missing("timestamp"),
                     F.when(bad, F.concat(F.lit("unparsable timestamp "), quoted(source)))]
        values["timestamp"] = F.floor(seconds).cast("double")
    else:
        values["timestamp"] = F.col("_order").cast("double")
    for name in ("rating", "weight"):
        if name in mapped:
            source = mapped[name]
            number = _number(_col(source), types[source])
            not_finite = number.isNull() | F.isnan(number) | (F.abs(number) == float("inf"))
            problems += [missing(name), F.when(not_finite, F.concat(F.lit(f"{name} is not a number "),
                                                                    quoted(source)))]
            values[name] = number
    if "event" in mapped:
        problems.append(missing("event"))
        values["event"] = _id_strings(raw, mapped["event"], types[mapped["event"]])
    problem = F.when(~F.col("_blank"), F.coalesce(*problems))
    return raw.select("*", *[v.alias(f"_{k}") for k, v in values.items()], problem.alias("_problem"))


def _col(name: str):
    from pyspark.sql import functions as F

    return F.col(f"`{name}`")


def _id_strings(raw, source: str, dtype: str):
    """External ids as strings; a float column whose values are all whole numbers loses its '.0' (as single-node)."""
    from pyspark.sql import functions as F

    column = _col(source)
    if dtype in ("float", "double"):
        fractional = raw.filter(column.isNotNull() & ~F.isnan(column) & (column != F.floor(column))).limit(1)
        if fractional.count() == 0:
            return F.when(~F.isnan(column), column.cast("long").cast("string"))
    return column.cast("string")


def _number(column, dtype: str):
    """A double, or null where the value is not a number (booleans and text that is not a decimal are not)."""
    from pyspark.sql import functions as F

    if dtype == "string":
        text = F.trim(column)
        return F.when(text.rlike(_NUMBER), text.try_cast("double"))
    if dtype == "boolean":
        return F.lit(None).cast("double")
    return column.try_cast("double")


def _seconds(column, dtype: str, timestamp_format: str | None):
    """Seconds since the epoch (double), null where a present value cannot be read."""
    from pyspark.sql import functions as F

    if dtype.startswith("timestamp"):
        return F.unix_micros(column.cast("timestamp")) / 1e6
    if dtype == "date":
        return F.unix_date(column).cast("double") * 86_400.0
    numbers_allowed = timestamp_format is None or timestamp_format in _NUMERIC_TIME_UNITS
    iso_allowed = timestamp_format in (None, "iso")
    scale = float(_NUMERIC_TIME_UNITS.get(timestamp_format or "unix", 1))
    number = _number(column, dtype) / scale if numbers_allowed else F.lit(None).cast("double")
    if not iso_allowed or dtype != "string":
        return number
    iso = F.unix_micros(F.try_to_timestamp(F.trim(column))) / 1e6
    return F.coalesce(number, iso)


def _check_counts(checked) -> tuple[int, int, int, tuple | None]:
    """One pass: records read, blank lines, bad rows and the first bad one (file, row, problem)."""
    from pyspark.sql import functions as F

    bad = F.col("_problem").isNotNull()
    row = checked.agg(
        F.sum(F.when(~F.col("_blank"), 1).otherwise(0)).alias("read"),
        F.sum(F.when(F.col("_blank"), 1).otherwise(0)).alias("blank"),
        F.sum(F.when(bad, 1).otherwise(0)).alias("bad"),
        F.min(F.when(bad, F.struct("_file", "_row", "_problem"))).alias("first"),
    ).first()
    first = tuple(row["first"]) if row["first"] is not None else None
    return int(row["read"] or 0), int(row["blank"] or 0), int(row["bad"] or 0), first


def _write_rejects(checked, path: str, label: str) -> None:
    from pyspark.sql import functions as F

    rejects = (checked.filter(F.col("_problem").isNotNull())
               .select(F.col("_file").alias("file"), F.col("_row").alias(label), F.col("_problem").alias("problem"),
                       F.col("_record").alias("record"))
               .orderBy("file", label))
    try:
        rejects.coalesce(1).write.mode("overwrite").option("header", True).csv(path)
    except Exception as exc:  # Spark raises several types for an unwritable path
        raise DataError(f"cannot write the rejects table {path} ({exc}); pass reject_path= a writable "
                        f"path") from exc


def _canonical(checked, columns: ColumnMapping):
    from pyspark.sql import functions as F

    mapped = columns.mapped()
    good = checked.filter(F.col("_problem").isNull() & ~F.col("_blank"))
    out = [F.col("_user").alias("user"), F.col("_item").alias("item"), F.col("_timestamp").alias("timestamp"),
           (F.col("_weight") if "weight" in mapped else F.lit(1.0)).alias("weight"),
           (F.col("_rating") if "rating" in mapped else F.lit(None).cast("double")).alias("rating")]
    if "event" in mapped:
        out.append(F.col("_event").alias("event_type"))
    return good.select(*out, F.col("_order").alias("input_order"))


# --------------------------------------------------------------------------------------------- preparation
def _check_prepare_options(unknown_events: str, duplicates: str) -> None:
    if unknown_events not in ("error", "drop"):
        raise ConfigError(f"unknown_events must be 'error' or 'drop', got {unknown_events!r}")
    if duplicates not in DUPLICATE_POLICIES:
        raise ConfigError(f"duplicates must be one of {list(DUPLICATE_POLICIES)}, got {duplicates!r}")


def _core(value: int | None, name: str) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return value


def prepare_events(
    events,
    *,
    event_weights: Mapping[str, float] | None = None,
    unknown_events: str = "error",
    duplicates: str = "keep",
    min_rating: float | None = None,
    k_core: int | None = None,
    user_core: int | None = None,
    item_core: int | None = None,
):
    """recengine.data.prepare.prepare_events on an event table: the same steps in the same order, the same tie rules
    (equal times: input_order decides); returns (persisted table, report)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    _check_prepare_options(unknown_events, duplicates)
    user_core = _core(user_core if user_core is not None else k_core, "user_core")
    item_core = _core(item_core if item_core is not None else k_core, "item_core")
    events = events.persist()
    size = events.count()
    report: dict = {"input": size}

    def step(kept, name: str) -> None:
        # Each step's result is cached and counted once; the step before it is released.
        nonlocal events, size
        kept = kept.persist()
        report[name] = size - kept.count()
        size -= report[name]
        events.unpersist()
        events = kept

    if event_weights is not None:
        kept, types = _apply_event_weights(events, event_weights, unknown_events)
        step(kept, "unknown_events")
        if types:
            report["unknown_event_types"] = types
    if min_rating is not None:
        if events.filter(F.col("rating").isNull()).limit(1).count():
            raise DataError("min_rating needs a rating column, and these events have none; map one when reading "
                            "or drop min_rating")
        step(events.filter(F.col("rating") >= float(min_rating)), "below_min_rating")
    if duplicates != "keep":
        pair = Window.partitionBy("user", "item")
        if duplicates == "max":
            order = [F.col("weight").desc(), F.col("timestamp").desc(), F.col("input_order").desc()]
        elif duplicates == "first":
            order = [F.col("timestamp").asc(), F.col("input_order").asc()]
        else:  # last, sum: the latest event stands for the pair
            order = [F.col("timestamp").desc(), F.col("input_order").desc()]
        ranked = events.withColumn("_pick", F.row_number().over(pair.orderBy(*order)))
        if duplicates == "sum":
            ranked = ranked.withColumn("weight", F.sum("weight").over(pair))
        step(ranked.filter(F.col("_pick") == 1).drop("_pick"), "duplicates")
    if user_core > 1 or item_core > 1:
        kept, rounds = _k_core(events, user_core, item_core)
        step(kept, "k_core")
        report["k_core_rounds"] = rounds
    report["output"] = size
    return events, report


def _apply_event_weights(events, event_weights: Mapping[str, float], unknown_events: str):
    from pyspark.sql import functions as F

    if "event_type" not in events.columns:
        raise DataError("event_weights needs an event column, and these events have none; map the event type "
                        "column when reading (ColumnMapping(event=...)) or drop event_weights")
    bad_weights = {k: v for k, v in event_weights.items()
                   if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v)}
    if bad_weights:
        raise ConfigError(f"event_weights must be finite numbers; got {bad_weights}")
    known = F.col("event_type").isin([str(k) for k in event_weights])
    unknown = events.filter(~known).groupBy("event_type").count().orderBy("event_type").collect()
    types, dropped = [str(r["event_type"]) for r in unknown], sum(r["count"] for r in unknown)
    if dropped and unknown_events == "error":
        raise DataError(f"event type(s) {types} have no weight in event_weights ({dropped} events); add them "
                        f"to event_weights, or pass unknown_events='drop' to remove those events")
    by_type = F.create_map(*[x for k, v in event_weights.items() for x in (F.lit(str(k)), F.lit(float(v)))])
    weighted = events.filter(known).withColumn("weight", by_type[F.col("event_type")] * F.col("weight"))
    return weighted, types


def _k_core(events, user_core: int, item_core: int):
    """Drop users with < user_core distinct items and items with < item_core distinct users, both counted in the
    same round (as single-node), until nothing changes; over the distinct (user, item) pairs."""
    from pyspark.sql import functions as F

    pairs = events.select("user", "item").distinct().persist()
    size, rounds = pairs.count(), 0
    while size:
        users = pairs.groupBy("user").count().filter(F.col("count") >= user_core).select("user")
        items = pairs.groupBy("item").count().filter(F.col("count") >= item_core).select("item")
        kept = pairs.join(users, "user", "left_semi").join(items, "item", "left_semi").persist()
        new_size = kept.count()
        pairs.unpersist()
        pairs = kept
        if new_size == size:
            break
        size, rounds = new_size, rounds + 1
    return events.join(pairs, ["user", "item"], "left_semi"), rounds
