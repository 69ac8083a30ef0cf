"""Schema version 4 over SQLite and PostgreSQL: experiments round trip, bandit rewards once per impression and the
counts a bandit's posterior is read from, attribution of posted events, and a version 3 store migrated."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import sqlalchemy as sa

from recengine.errors import ConfigError, UnknownIdError
from recengine.store import Store, schema
from recengine.store.store import Impression


def test_experiments_round_trip(store):
    start = datetime(2026, 1, 1, tzinfo=UTC)
    definition = {"variants": [{"name": "a", "share": 0.5}], "buckets": [[0, 0, 10_000]]}
    added = store.add_experiment("exp", "home", definition, start)
    assert (added.name, added.surface, added.definition, added.starts_at, added.stops_at) == \
        ("exp", "home", definition, start, None)
    with pytest.raises(ConfigError, match="an experiment named 'exp' exists already"):
        store.add_experiment("exp", "search", definition, start)
    stopped = store.update_experiment("exp", stops_at=start + timedelta(days=3))
    assert stopped.stops_at == start + timedelta(days=3) and stopped.definition == definition
    assert store.update_experiment("exp", definition={"x": 1}).definition == {"x": 1}
    assert [e.name for e in store.experiments()] == ["exp"]
    with pytest.raises(UnknownIdError, match="no experiment named 'nope'"):
        store.update_experiment("nope", stops_at=start)


def test_bandit_rewards_count_once_per_impression(store):
    now = datetime.now(UTC)
    store.add_impressions([Impression(f"r{k}", "u", now, "p", ["i"], [1.0], experiment="exp",
                                      variant="ab"[k % 2], variant_propensity=0.5) for k in range(5)])
    assert store.add_bandit_rewards([("r0", "exp", "a"), ("r1", "exp", "b")]) == [("r0", "exp", "a"),
                                                                                 ("r1", "exp", "b")]
    assert store.add_bandit_rewards([("r0", "exp", "a"), ("r2", "exp", "a")]) == [("r2", "exp", "a")]
    assert store.bandit_counts("exp") == {"a": (3, 2), "b": (2, 1)}
    assert store.impression_variants(["r1", "unknown"]) == {"r1": ("exp", "b")}
    assert store.impressions(experiment="exp")["variant_propensity"].tolist() == [0.5] * 5
    store.forget_user("u")  # what was shown to a deleted user goes, and with it the rewards it earned
    assert store.bandit_counts("exp") == {}


def test_posted_events_are_attributed_by_request_or_window(store):
    shown = datetime(2026, 1, 1, tzinfo=UTC)
    store.add_impressions([Impression("r1", "u", shown, "p", ["a", "b"], [2.0, 1.0]),
                           Impression("r2", "v", shown, "p", ["a"], [1.0])])
    t = int(shown.timestamp())
    events = pd.DataFrame({"user": ["u", "u", "u", "w"], "item": ["b", "a", "a", "a"],
                           "timestamp": [t + 5, t + 60, t + 2 * 86_400, t], "request_id": ["r1", None, None, None]})
    got = store.attribute(events.iloc[::-1], window_seconds=86_400)  # any row order
    # In the given order; unattributed rows stay, with no request (None or NaN, as in events()).
    assert got["request_id"].fillna("-").tolist() == ["-", "-", "r1", "r1"]
    assert got["attribution"].fillna("-").tolist() == ["-", "-", "window", "request"]


def test_a_version_3_store_is_migrated_to_4(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(url) as store, store.engine.begin() as conn:
        store.add_impressions([Impression("r1", "u", datetime.now(UTC), "p", ["a"], [1.0])])
        conn.execute(sa.text("DROP TABLE experiments"))
        conn.execute(sa.text("DROP TABLE bandit_rewards"))
        conn.execute(sa.text("ALTER TABLE impressions DROP COLUMN variant_propensity"))
        conn.execute(schema.schema_version.update().values(version=3))
    with Store.open(url) as store:
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(schema.schema_version.c.version)).scalar_one() == 4
        assert store.impressions()["variant_propensity"].isna().all()  # kept, with the new column empty
        store.add_experiment("exp", "home", {}, datetime.now(UTC))
        assert [e.name for e in store.experiments()] == ["exp"]
