import gzip
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from recengine.data.readers import (
    ColumnMapping,
    load_dataset,
    parse_events,
    read_events,
    read_items,
    read_users,
)
from recengine.errors import ConfigError, DataError

MAPPING = ColumnMapping(user="uid", item="iid", timestamp="ts", rating="stars")


def write(path, text):
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------- happy paths
def test_csv_with_mapping_numbers_and_iso_timestamps(tmp_path):
    f = write(tmp_path / "e.csv", "uid,iid,ts,stars\n"
              "u1,i1,12.7,4\n"
              "u1,i2,2020-01-01T00:00:00Z,3.5\n"
              "u2,i1,2020-01-01T01:00:00+01:00,5\n"
              "NA,null,1970-01-02,1\n")
    result = read_events(f, columns=MAPPING)
    e = result.events
    assert list(e.columns) == ["user", "item", "timestamp", "rating"]
    assert e["timestamp"].tolist() == [12, 1577836800, 1577836800, 86400]
    assert e["timestamp"].dtype == np.int64
    assert e["rating"].tolist() == [4.0, 3.5, 5.0, 1.0]
    # "NA" and "null" are ids, not missing values.
    assert e["user"].tolist() == ["u1", "u1", "u2", "NA"] and e["item"].tolist()[-1] == "null"
    assert result.rejected == 0 and result.reject_path is None


def test_canonical_names_are_inferred_and_value_means_rating(tmp_path):
    f = write(tmp_path / "e.csv", "user,item,timestamp,value,event,weight\na,x,5,2.5,click,3\n")
    e = read_events(f).events
    assert e.iloc[0].to_dict() == {"user": "a", "item": "x", "timestamp": 5, "rating": 2.5, "weight": 3.0,
                                   "event": "click"}


def test_timestamp_none_uses_file_order(tmp_path):
    f = write(tmp_path / "e.csv", "user,item\na,x\na,y\nb,x\n")
    e = read_events(f, columns=ColumnMapping(timestamp=None)).events
    assert e["timestamp"].tolist() == [0, 1, 2]


def test_missing_timestamp_column_without_mapping_says_what_to_do(tmp_path):
    f = write(tmp_path / "e.csv", "user,item\na,x\n")
    with pytest.raises(DataError, match=r"no 'timestamp' column.*ColumnMapping\(timestamp=None\)"):
        read_events(f)


def test_tsv_without_header_counts_lines_from_one(tmp_path):
    f = write(tmp_path / "u.data", "1\t10\t3\t100\n2\t20\t4\tlater\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: unparsable timestamp 'later'"):
        read_events(f, format="tsv", names=["user", "item", "rating", "timestamp"],
                    columns=ColumnMapping(rating="rating"))


def test_multi_character_separator_and_zip_use_the_pandas_reader(tmp_path):
    f = write(tmp_path / "ratings.dat", "1::10::5::100\n\n1::20::x::200\n2::10::4\n3::30::1::300\n")
    kwargs = {"format": "csv", "sep": "::", "names": ["user", "item", "rating", "timestamp"],
              "columns": ColumnMapping(rating="rating")}
    with pytest.raises(DataError, match=r"ratings\.dat, line 3: rating is not a number 'x'"):
        read_events(f, **kwargs)
    result = read_events(f, on_error="reject", reject_path=tmp_path / "r.csv", **kwargs)
    assert result.events["user"].tolist() == ["1", "3"] and result.blank_lines == 1
    assert pd.read_csv(tmp_path / "r.csv")["line"].tolist() == [3, 4]
    z = tmp_path / "e.csv.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("e.csv", "user,item,timestamp\na,x,1\nb,y,2,3\n")
    with pytest.raises(DataError, match=r"e\.csv\.zip, line 3: expected 3 fields, saw 4"):
        read_events(z)


def test_timestamp_formats(tmp_path):
    f = write(tmp_path / "e.csv", "user,item,timestamp\na,x,1500\nb,y,2500\n")
    assert read_events(f, timestamp_format="unix_ms").events["timestamp"].tolist() == [1, 2]
    g = write(tmp_path / "g.csv", "user,item,timestamp\na,x,02/01/1970\n")
    assert read_events(g, timestamp_format="%d/%m/%Y").events["timestamp"].tolist() == [86400]
    # A number is not a date under an explicit pattern.
    h = write(tmp_path / "h.csv", "user,item,timestamp\na,x,86400\n")
    with pytest.raises(DataError, match="line 2: unparsable timestamp '86400'"):
        read_events(h, timestamp_format="%d/%m/%Y")
    with pytest.raises(DataError, match="line 2: unparsable timestamp"):
        read_events(g, timestamp_format="unix")


def test_compressed_csv_by_extension(tmp_path):
    f = tmp_path / "e.csv.gz"
    with gzip.open(f, "wt") as out:
        out.write("user,item,timestamp\na,x,1\n")
    assert read_events(f).events["item"].tolist() == ["x"]


def test_parquet_typed_columns_and_row_numbers(tmp_path):
    f = tmp_path / "e.parquet"
    pd.DataFrame({
        "user": pd.array([1, 2, None], dtype="Int64"), "item": ["a", "b", "c"],
        "timestamp": pd.to_datetime(["1970-01-01 00:00:10", "1970-01-01 00:00:20", "1970-01-01 00:00:00"]),
    }).to_parquet(f)
    with pytest.raises(DataError, match=r"e\.parquet, row 3: missing user"):
        read_events(f)
    result = read_events(f, on_error="reject", reject_path=tmp_path / "r.csv")
    assert result.events["user"].tolist() == ["1", "2"]  # integer ids, not "1.0"
    assert result.events["timestamp"].tolist() == [10, 20]
    assert result.rejected == 1


def test_jsonl_reads_and_reports_bad_json_by_line(tmp_path):
    rows = [{"user": 1, "item": "x", "timestamp": 5},
            {"user": 2, "item": "y", "timestamp": "1970-01-01T00:01:00"}]
    f = write(tmp_path / "e.jsonl", json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    result = read_events(f)
    assert result.events["timestamp"].tolist() == [5, 60]
    assert result.events["user"].tolist() == ["1", "2"]
    bad = write(tmp_path / "b.jsonl", json.dumps(rows[0]) + "\n{oops\n" + json.dumps(rows[1]) + "\n")
    with pytest.raises(DataError, match=r"b\.jsonl, line 2: not valid JSON"):
        read_events(bad)
    no_time = json.dumps({"user": 3, "item": "z"})
    missing = write(tmp_path / "m.jsonl", json.dumps(rows[0]) + "\n" + no_time + "\n")
    with pytest.raises(DataError, match=r"m\.jsonl, line 2: missing timestamp"):
        read_events(missing)


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("body, message", [
    ("u1,i1,yesterday,4\n", "line 3: unparsable timestamp 'yesterday'"),
    ("u1,i1,10,five\n", "line 3: rating is not a number 'five'"),
    ("u1,i1,10,inf\n", "line 3: rating is not a number 'inf'"),
    (",i1,10,4\n", "line 3: missing user \\(column 'uid'\\)"),
    ("u1,,10,4\n", "line 3: missing item"),
    ("u1,i1,10\n", "line 3: expected 4 fields, saw 3: 'u1,i1,10'"),
    ("u1,i1,10,4,extra\n", "line 3: expected 4 fields, saw 5"),
])
def test_bad_rows_stop_the_load_naming_file_line_and_problem(tmp_path, body, message):
    f = write(tmp_path / "events.csv", "uid,iid,ts,stars\nu0,i0,1,3\n" + body)
    with pytest.raises(DataError, match=r"events\.csv, " + message):
        read_events(f, columns=MAPPING)


def test_first_bad_line_is_reported_with_the_total(tmp_path):
    f = write(tmp_path / "e.csv", "user,item,timestamp\na,x,1\na,y,bad\n,z,3\n")
    with pytest.raises(DataError, match=r"line 3: unparsable timestamp 'bad' \(2 bad line\(s\) in all"):
        read_events(f)


def test_line_numbers_survive_blank_and_malformed_lines(tmp_path):
    f = write(tmp_path / "e.csv", "user,item,timestamp\na,x,1\n\nb,y,2,9\nc,z,3\nd,w,oops\n")
    with pytest.raises(DataError, match="line 4: expected 3 fields, saw 4"):
        read_events(f)
    result = read_events(f, on_error="reject", reject_path=tmp_path / "rej.csv")
    rejects = pd.read_csv(tmp_path / "rej.csv", dtype=str)
    assert rejects["line"].tolist() == ["4", "6"]  # rows after a skipped line keep their own numbers
    assert result.blank_lines == 1
    assert result.events["user"].tolist() == ["a", "c"]


def test_mapped_column_missing_from_file(tmp_path):
    f = write(tmp_path / "e.csv", "uid,iid,time\na,x,1\n")
    message = (r"e\.csv, line 1 \(header\): column 'ts' \(mapped to timestamp\) is not in the file; "
               r"it has \['uid', 'iid', 'time'\]")
    with pytest.raises(DataError, match=message):
        read_events(f, columns=MAPPING)


def test_strict_rejects_unknown_columns(tmp_path):
    f = write(tmp_path / "e.csv", "user,item,timestamp,colour\na,x,1,red\n")
    assert len(read_events(f).events) == 1
    with pytest.raises(DataError, match=r"unknown column\(s\) \['colour'\] \(strict=True\)"):
        read_events(f, strict=True)


def test_wrong_or_unknown_format(tmp_path):
    f = write(tmp_path / "e.parquet", "user,item,timestamp\na,x,1\n")
    with pytest.raises(DataError, match=r"e\.parquet: cannot read it as Parquet"):
        read_events(f)
    g = write(tmp_path / "e.xml", "<events/>")
    with pytest.raises(DataError, match="cannot tell the file format"):
        read_events(g)
    with pytest.raises(ConfigError, match="unknown format 'xml'"):
        read_events(g, format="xml")
    with pytest.raises(ConfigError, match="on_error"):
        read_events(f, on_error="ignore")
    with pytest.raises(DataError, match="no such file"):
        read_events(tmp_path / "missing.csv")


def test_bad_encoding_says_to_pass_one(tmp_path):
    f = tmp_path / "e.csv"
    f.write_bytes("user,item,timestamp\nJosé,x,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="not valid utf-8 text.*encoding="):
        read_events(f)
    assert read_events(f, encoding="latin-1").events["user"].tolist() == ["José"]


# ------------------------------------------------------------------------------------------------ reject
def test_reject_mode_writes_original_fields_line_and_reason(tmp_path):
    f = write(tmp_path / "e.csv", "uid,iid,ts,stars\n"
              "u1,i1,10,4\n"
              "u2,i2,never,3\n"
              "u3,i3,30,lots\n"
              ",i4,40,2\n"
              "u5,i5,50,1\n")
    result = read_events(f, columns=MAPPING, on_error="reject")
    assert result.rejected == 3
    assert result.reject_path == tmp_path / "e.csv.rejected.csv"
    assert result.events["user"].tolist() == ["u1", "u5"]
    assert result.events["timestamp"].tolist() == [10, 50]
    rejects = pd.read_csv(result.reject_path, dtype=str, keep_default_na=False)
    assert list(rejects.columns) == ["uid", "iid", "ts", "stars", "line", "reason"]
    assert rejects["line"].tolist() == ["3", "4", "5"]
    assert rejects["ts"].tolist() == ["never", "30", "40"]
    assert rejects["reason"].tolist() == [
        "unparsable timestamp 'never'", "rating is not a number 'lots'", "missing user (column 'uid')"]


def test_no_reject_file_when_nothing_is_rejected(tmp_path):
    f = write(tmp_path / "e.csv", "user,item,timestamp\na,x,1\n")
    result = read_events(f, on_error="reject", reject_path=tmp_path / "r.csv")
    assert result.rejected == 0 and result.reject_path is None and not (tmp_path / "r.csv").exists()


def test_parse_events_on_a_frame_reports_rows():
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", None], "timestamp": [1, 2]})
    with pytest.raises(DataError, match="<frame>, row 2: missing item"):
        parse_events(frame)
    with pytest.raises(ConfigError, match="reject_path"):
        parse_events(frame, on_error="reject")


# ---------------------------------------------------------------------------------------------- features
def test_read_items_splits_lists_and_indexes_by_string_id(tmp_path):
    f = write(tmp_path / "items.csv", "id,title,genres,price\n7,Seven,Drama|Crime,9.5\n8,Eight,,3\n")
    items = read_items(f, id_column="id")
    assert items.index.tolist() == ["7", "8"] and items.index.name == "item"
    assert items.loc["7", "genres"] == ["Drama", "Crime"] and items.loc["8", "genres"] == []
    assert items.loc["7", "price"] == 9.5
    renamed = read_items(f, id_column="id", columns={"title": "name", "genres": "categories"})
    assert list(renamed.columns) == ["name", "categories"]
    assert renamed.loc["7", "categories"] == ["Drama", "Crime"]


def test_read_items_errors_name_line(tmp_path):
    f = write(tmp_path / "items.csv", "item,title\n1,A\n2,B\n1,C\n")
    with pytest.raises(DataError, match=r"items\.csv, line 4: duplicate item id '1'"):
        read_items(f)
    g = write(tmp_path / "g.csv", "item,title\n1,A\n,B\n")
    with pytest.raises(DataError, match=r"g\.csv, line 3: missing item id"):
        read_items(g)
    with pytest.raises(DataError, match="no id column 'sku'"):
        read_items(g, id_column="sku")
    with pytest.raises(DataError, match=r"column\(s\) \['year'\] not in the file"):
        read_items(g, columns=["title", "year"])


def test_read_users_from_jsonl(tmp_path):
    f = write(tmp_path / "users.jsonl", '{"user": 1, "age": 30}\n{"user": 2, "age": 40}\n')
    users = read_users(f)
    assert users.index.tolist() == ["1", "2"] and users["age"].tolist() == [30, 40]


def test_load_dataset_reads_prepares_and_attaches_features(tmp_path):
    events = write(tmp_path / "shop.csv", "user,item,timestamp,event\n"
                   "a,x,1,view\na,x,2,purchase\nb,y,3,view\nb,x,4,click\n")
    items = write(tmp_path / "items.csv", "item,title\nx,Ex\ny,Why\nz,Zed\n")
    ds = load_dataset(events, items=items, event_weights={"view": 1, "click": 2, "purchase": 8},
                      duplicates="sum")
    assert ds.name == "shop" and ds.n_interactions == 3
    m = ds.matrix("weight").toarray()
    assert m[ds.users.index("a"), ds.items.index("x")] == 9.0
    assert m[ds.users.index("b"), ds.items.index("x")] == 2.0
    assert ds.item_features.loc["y", "title"] == "Why" and "z" not in ds.item_features.index
    assert ds.event_types == ("click", "purchase", "view")
