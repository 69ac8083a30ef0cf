"""The store contract, run over SQLite and PostgreSQL: round trips, snapshots, deletes, upserts, the model
registry, API keys, bad input, migrations, and (SQLite) that acknowledged events survive a SIGKILL."""

import hashlib
import signal
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from recengine.data.dataset import Dataset
from recengine.data.readers import read_events, read_items
from recengine.errors import ConfigError, DataError, UnknownIdError
from recengine.store import Store, schema
from recengine.store import store as store_module


def event_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Events with distinct timestamps (so time order is one order), every optional column filled."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "user": [f"u{k}" for k in rng.integers(0, 20, n)],
        "item": [f"i{k}" for k in rng.integers(0, 40, n)],
        "timestamp": rng.permutation(n).astype(np.int64) + 1_600_000_000,
        "event": rng.choice(["view", "click", "buy"], n),
        "rating": rng.integers(1, 6, n).astype(np.float64),
        "weight": rng.uniform(0.5, 2.0, n),
    })


def item_frame() -> pd.DataFrame:
    return pd.DataFrame({
        "title": ["Alpha", "Beta", "Gamma"],
        "categories": [["a", "b"], ["b"], []],
        "price": [9.5, np.nan, 3.0],
        "genres": [["Comedy"], ["Drama", "Horror"], ["Comedy"]],
        "year": [1999, 2005, 2020],
    }, index=pd.Index(["i0", "i1", "cold"], name="item"))


def test_events_round_trip_in_time_order(store):
    frame = event_frame()
    assert store.add_events(frame) == len(frame)
    got = store.events()
    expected = frame.sort_values("timestamp").reset_index(drop=True)
    pd.testing.assert_frame_equal(got.drop(columns="request_id"), expected, check_dtype=False)
    assert got["request_id"].isna().all()
    since = int(expected["timestamp"].iloc[100])
    assert len(store.events(since=since)) == len(frame) - 100
    assert store.counts()["events"] == len(frame)
    assert store.add_events(frame.iloc[:0]) == 0


def test_snapshot_equals_the_dataset_of_the_same_events(store):
    frame = event_frame()
    store.add_events(frame.iloc[:150])
    store.add_events(frame.iloc[150:])
    snap = store.snapshot()
    ref = Dataset.from_events(frame.sort_values("timestamp", kind="stable"))
    assert snap.users == ref.users and snap.items == ref.items
    for name in ("indptr", "item_index", "timestamp", "rating", "weight"):
        np.testing.assert_array_equal(getattr(snap, name), getattr(ref, name), err_msg=name)
    assert snap.event_types == ref.event_types
    np.testing.assert_array_equal(snap.event, ref.event)
    assert snap.item_features is None and snap.user_features is None


def test_snapshot_carries_features_and_cold_items(store):
    store.upsert_items(item_frame())
    store.upsert_users(pd.DataFrame({"age": [31, 45]}, index=pd.Index(["u1", "u9"], name="user")))
    store.add_events(pd.DataFrame({"user": ["u1", "u2"], "item": ["i1", "new"], "timestamp": [5, 7]}))
    snap = store.snapshot()
    # Events first (in order of first event), then the catalogue without events.
    assert list(snap.items.ids) == ["i1", "new", "i0", "cold"]
    assert list(snap.users.ids) == ["u1", "u2", "u9"]
    features = snap.item_features
    assert list(features.columns) == ["title", "categories", "price", "genres", "year"]
    assert features.loc["cold", "title"] == "Gamma" and features.loc["i1", "genres"] == ["Drama", "Horror"]
    assert pd.isna(features.loc["new", "title"])  # created by its event, bare
    assert snap.user_features.loc["u9", "age"] == 45 and pd.isna(snap.user_features.loc["u2", "age"])
    assert snap.rating is None and snap.event is None
    assert snap.category_matrix("genres").shape == (4, 3)


def test_items_and_users_upsert_and_round_trip(store):
    items = item_frame()
    assert store.upsert_items(items) == 3
    got = store.items()
    pd.testing.assert_frame_equal(got, items, check_dtype=False, check_index_type=False)
    # A field the frame has replaces the stored one; those it lacks are kept.
    store.upsert_items(pd.DataFrame({"title": ["Alpha 2"], "price": [1.0]}, index=pd.Index(["i0"], name="item")))
    got = store.items()
    assert got.loc["i0", "title"] == "Alpha 2" and got.loc["i0", "price"] == 1.0
    assert got.loc["i0", "categories"] == ["a", "b"] and got.loc["i0", "genres"] == ["Comedy"]
    users = pd.DataFrame({"age": [31, 45], "country": ["NO", "FR"]}, index=pd.Index(["u1", "u2"], name="user"))
    assert store.upsert_users(users) == 2
    store.upsert_users(pd.DataFrame({"age": [32]}, index=pd.Index(["u1"], name="user")))
    got = store.users()
    assert got.loc["u1", "age"] == 32 and pd.isna(got.loc["u1", "country"]) and got.loc["u2", "country"] == "FR"
    assert store.counts()["items"] == 3 and store.counts()["users"] == 2


def test_delete_user_and_item_remove_their_events(store):
    frame = event_frame()
    store.add_events(frame)
    n_u0 = int((frame["user"] == "u0").sum())
    assert store.delete_user("u0") == n_u0
    assert "u0" not in set(store.events()["user"]) and "u0" not in store.snapshot().users
    n_i3 = int(((frame["item"] == "i3") & (frame["user"] != "u0")).sum())
    assert store.delete_item("i3") == n_i3
    assert store.counts()["events"] == len(frame) - n_u0 - n_i3
    with pytest.raises(UnknownIdError, match="unknown user 'u0'"):
        store.delete_user("u0")


def test_model_versions_lifecycle(store):
    first = store.register_model_version("ease", {"l2": 300.0}, artifact_path="/models/1")
    assert first.status == "training" and first.params == {"l2": 300.0} and first.created_at.tzinfo is not None
    assert store.active_version() is None
    store.set_status(first.id, "ready", metrics={"ndcg@20": 0.31})
    assert store.set_status(first.id, "active").metrics == {"ndcg@20": 0.31}
    second = store.register_model_version("ials", {"factors": 64})
    with pytest.raises(ConfigError, match="can become failed, ready"):
        store.set_status(second.id, "active")
    store.set_status(second.id, "ready")
    store.set_status(second.id, "active")
    assert store.active_version().id == second.id
    assert [v.status for v in store.versions()] == ["ready", "active"]
    failed = store.register_model_version("bpr", {})
    store.set_status(failed.id, "failed")
    with pytest.raises(ConfigError, match="nothing"):
        store.set_status(failed.id, "ready")
    with pytest.raises(ConfigError, match="unknown model status"):
        store.set_status(first.id, "done")
    with pytest.raises(UnknownIdError):
        store.set_status(999, "ready")


def test_api_keys_store_only_a_hash(store):
    key = store.create_api_key("ingest bot", ["events:write", "read"])
    assert store.verify_api_key(key) == ["events:write", "read"]
    assert store.verify_api_key(key + "x") is None and store.verify_api_key("") is None
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(schema.api_keys)).mappings().all()
    assert len(rows) == 1 and rows[0]["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert not any(key in str(value) for value in rows[0].values())  # the prefix is a few characters only
    listed = store.api_keys()
    assert listed.loc[0, "name"] == "ingest bot" and key.startswith(listed.loc[0, "prefix"])
    store.revoke_api_key(int(listed.loc[0, "id"]))
    assert store.verify_api_key(key) is None
    with pytest.raises(UnknownIdError):
        store.revoke_api_key(999)
    with pytest.raises(ConfigError, match="list of names"):
        store.create_api_key("oops", "read")


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop(columns="timestamp"), "missing column"),
    (lambda f: f.assign(extra=1), "unknown column"),
    (lambda f: f.assign(user=[None] + list(f["user"][1:])), "row 0: missing user"),
    (lambda f: f.assign(timestamp=f["timestamp"].astype(str)), "integer seconds"),
    (lambda f: f.assign(rating=[np.inf] + list(f["rating"][1:])), "row 0: rating inf is not a number"),
])
def test_bad_events_raise_naming_the_problem_and_add_nothing(store, change, message):
    with pytest.raises(DataError, match=message):
        store.add_events(change(event_frame(10)))
    assert store.counts() == {"users": 0, "items": 0, "events": 0, "model_versions": 0, "api_keys": 0}


def test_a_failed_add_leaves_no_trace(store, monkeypatch):
    def fail(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "_executemany_rows", fail)
    monkeypatch.setattr(store_module, "_copy_rows", fail)
    with pytest.raises(OSError):
        store.add_events(event_frame(10))
    assert store.counts()["users"] == 0 and store.counts()["items"] == 0  # created in the same transaction


def test_bad_items_raise_naming_the_item(store):
    with pytest.raises(DataError, match="duplicate item id 'i0'"):
        store.upsert_items(pd.DataFrame({"title": ["a", "b"]}, index=pd.Index(["i0", "i0"], name="item")))
    with pytest.raises(DataError, match="item 'i1': price 'cheap' is not a number"):
        store.upsert_items(pd.DataFrame({"price": [1.0, "cheap"]}, index=pd.Index(["i0", "i1"], name="item")))
    with pytest.raises(DataError, match="set_index"):
        store.upsert_items(pd.DataFrame({"item": ["i0"], "title": ["a"]}))
    with pytest.raises(DataError, match="column 'when' holds a Timestamp"):
        store.upsert_users(pd.DataFrame({"when": [pd.Timestamp("2024-01-01")]}, index=pd.Index(["u"], name="user")))
    assert store.counts()["items"] == 0 and store.counts()["users"] == 0


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_reads_back_with_the_readers(store, tmp_path, fmt):
    frame = event_frame(50)
    store.add_events(frame)
    store.upsert_items(item_frame())
    assert store.export(tmp_path / f"events.{fmt}") == 50
    back = read_events(tmp_path / f"events.{fmt}").events
    expected = frame.sort_values("timestamp").reset_index(drop=True)
    pd.testing.assert_frame_equal(back[list(expected.columns)], expected, check_dtype=False)
    assert store.export(tmp_path / f"items.{fmt}", what="items") == store.counts()["items"]
    items = read_items(tmp_path / f"items.{fmt}")
    assert items.loc["i1", "genres"] == ["Drama", "Horror"] and items.loc["cold", "title"] == "Gamma"
    with pytest.raises(ConfigError, match="csv or parquet"):
        store.export(tmp_path / "events.xlsx")


def test_request_ids_are_kept(store):
    frame = event_frame(3).assign(request_id=["r1", None, ""])
    store.add_events(frame)
    got = store.events().set_index("timestamp").loc[frame["timestamp"], "request_id"].tolist()
    assert got[0] == "r1" and pd.isna(got[1]) and pd.isna(got[2])  # an empty request id is none


def test_a_newer_schema_is_refused_and_an_older_one_migrated(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    Store.open(url).close()
    steps, latest = [], schema.latest_version()
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS,
                                               lambda conn: steps.append(conn.exec_driver_sql("SELECT 1"))])
    with Store.open(url) as store, store.engine.connect() as conn:
        assert conn.execute(sa.select(schema.schema_version.c.version)).scalar_one() == latest + 1
    assert len(steps) == 1
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:latest - 1])
    with pytest.raises(ConfigError, match=f"schema version {latest + 1}, newer than this recengine knows"):
        Store.open(url)


def test_sqlite_settings_and_bad_urls(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 's.db'}") as store, store.engine.connect() as conn:
        pragmas = {p: conn.exec_driver_sql(f"PRAGMA {p}").scalar() for p in
                   ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")}
    assert pragmas == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1, "busy_timeout": 30000}
    with pytest.raises(ConfigError, match="not a store URL"):
        Store.open("nonsense")
    with pytest.raises(ConfigError, match="cannot open the store"):
        Store.open(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}")
    with pytest.raises(ConfigError, match="SQLite or PostgreSQL"):
        Store.open("mysql+pymysql://u:p@localhost/db")


CRASHER = """
import sys
import pandas as pd
from recengine.store import Store

store = Store.open(sys.argv[1])
batch = 0
while True:
    store.add_events(pd.DataFrame({"user": [f"u{batch % 7}"] * 50, "item": [f"i{k}" for k in range(50)],
                                   "timestamp": [batch] * 50}))
    print(batch, flush=True)  # acknowledged: add_events has committed
    batch += 1
"""


def test_acknowledged_events_survive_sigkill(tmp_path):
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    process = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE, text=True)
    acknowledged = -1
    try:
        for line in process.stdout:
            acknowledged = int(line)
            if acknowledged >= 30:
                break
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert acknowledged >= 30
    with Store.open(url) as store:
        counts = store.events().groupby("timestamp").size()
    assert set(range(acknowledged + 1)) <= set(counts.index)
    assert (counts == 50).all()  # and never half a batch


def test_a_snapshot_of_mixed_feedback_leaves_partial_columns_out_and_says_so(store, caplog):
    store.add_events(event_frame(20))
    store.add_events(pd.DataFrame({"user": ["u1"], "item": ["i1"], "timestamp": [1], "weight": [3.0]}))
    snap = store.snapshot()
    assert snap.rating is None and snap.event is None and snap.n_interactions == 21
    assert "1 of 21 events have no rating" in caplog.text
    assert snap.weight[snap.timestamp == 1][0] == 3.0


def test_a_sqlite_write_that_reads_first_waits_for_another_writer_instead_of_failing(tmp_path):
    # Deleting a user reads their id, then writes. Begun deferred, that transaction failed at once with
    # "database is locked" when another connection (the service's impression writer) committed in between.
    url = f"sqlite:///{tmp_path / 'race.db'}"
    with Store.open(url) as first, Store.open(url) as second:
        first.add_events(event_frame(50))
        committed = threading.Event()

        def other_writer() -> None:
            second.add_events(event_frame(10, seed=1))
            committed.set()

        with first._writing() as conn:
            before = conn.execute(sa.select(sa.func.count()).select_from(schema.events)).scalar_one()
            writer = threading.Thread(target=other_writer)
            writer.start()
            assert not committed.wait(0.3)  # it waits for this transaction's lock, within the busy timeout
            conn.execute(schema.events.delete())
        writer.join(10)
        assert committed.is_set() and before == 50
        assert len(first.events()) == 10
