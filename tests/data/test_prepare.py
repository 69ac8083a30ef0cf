import pandas as pd
import pytest

from recengine.data.prepare import prepare_events
from recengine.errors import ConfigError, DataError


def shop() -> pd.DataFrame:
    # a/x is seen three times: view@3, purchase@1, view@5.
    return pd.DataFrame({
        "user": ["a", "a", "a", "b", "b", "c"],
        "item": ["x", "x", "y", "x", "y", "z"],
        "timestamp": [3, 1, 2, 5, 4, 0],
        "event": ["view", "purchase", "view", "click", "view", "view"],
    })


WEIGHTS = {"view": 1, "click": 2, "cart": 4, "purchase": 8}


def triples(frame: pd.DataFrame, *columns: str) -> list[tuple]:
    return list(frame[["user", "item", *columns]].itertuples(index=False, name=None))


def test_nothing_asked_nothing_changed():
    events, report = prepare_events(shop())
    assert len(events) == 6 and report == {"input": 6, "output": 6}


def test_event_weights_replace_types_by_weights():
    events, report = prepare_events(shop(), event_weights=WEIGHTS)
    assert events["weight"].tolist() == [1.0, 8.0, 1.0, 2.0, 1.0, 1.0]
    assert report["unknown_events"] == 0


def test_event_weights_multiply_existing_weights():
    frame = shop().assign(weight=[2.0, 1.0, 1.0, 0.5, 1.0, 3.0])
    events, _ = prepare_events(frame, event_weights=WEIGHTS)
    assert events["weight"].tolist() == [2.0, 8.0, 1.0, 1.0, 1.0, 3.0]


def test_unknown_event_type_is_an_error_naming_it_unless_dropped():
    frame = shop()
    frame.loc[5, "event"] = "share"
    with pytest.raises(DataError, match=r"event type\(s\) \['share'\] have no weight.*unknown_events='drop'"):
        prepare_events(frame, event_weights=WEIGHTS)
    events, report = prepare_events(frame, event_weights=WEIGHTS, unknown_events="drop")
    assert report["unknown_events"] == 1 and report["unknown_event_types"] == ["share"]
    assert "c" not in set(events["user"]) and report["output"] == 5


def test_event_weights_need_an_event_column():
    with pytest.raises(DataError, match="needs an event column"):
        prepare_events(shop().drop(columns=["event"]), event_weights=WEIGHTS)


@pytest.mark.parametrize("policy, expected", [
    ("first", [("a", "x", 1), ("a", "y", 2), ("b", "x", 5), ("b", "y", 4), ("c", "z", 0)]),
    ("last", [("a", "x", 3), ("a", "y", 2), ("b", "x", 5), ("b", "y", 4), ("c", "z", 0)]),
])
def test_first_and_last_keep_the_earliest_or_latest(policy, expected):
    events, report = prepare_events(shop(), duplicates=policy)
    assert sorted(triples(events, "timestamp")) == expected
    assert report["duplicates"] == 1


def test_first_and_last_break_timestamp_ties_by_input_order():
    frame = pd.DataFrame({"user": ["a", "a"], "item": ["x", "x"], "timestamp": [7, 7], "rating": [1.0, 2.0]})
    assert prepare_events(frame, duplicates="first")[0]["rating"].tolist() == [1.0]
    assert prepare_events(frame, duplicates="last")[0]["rating"].tolist() == [2.0]


def test_sum_adds_weights_and_keeps_the_latest_event():
    events, _ = prepare_events(shop(), event_weights=WEIGHTS, duplicates="sum")
    row = events[(events["user"] == "a") & (events["item"] == "x")]
    assert row["weight"].tolist() == [9.0] and row["timestamp"].tolist() == [3]
    # Without weights, sum counts repeats.
    counted, _ = prepare_events(shop(), duplicates="sum")
    assert dict(zip(zip(counted["user"], counted["item"], strict=True), counted["weight"], strict=True)) == {
        ("a", "x"): 2.0, ("a", "y"): 1.0, ("b", "x"): 1.0, ("b", "y"): 1.0, ("c", "z"): 1.0}


def test_max_keeps_the_strongest_event():
    events, _ = prepare_events(shop(), event_weights=WEIGHTS, duplicates="max")
    row = events[(events["user"] == "a") & (events["item"] == "x")]
    assert row["event"].tolist() == ["purchase"] and row["weight"].tolist() == [8.0]
    assert row["timestamp"].tolist() == [1]


def test_min_rating_keeps_ratings_at_or_above_and_reports_removed():
    frame = shop().assign(rating=[5.0, 3.5, 4.0, 1.0, 3.0, 4.5])
    events, report = prepare_events(frame, min_rating=4.0)
    assert events["rating"].tolist() == [5.0, 4.0, 4.5]
    assert report["below_min_rating"] == 3 and report["output"] == 3
    with pytest.raises(DataError, match="min_rating needs a rating column"):
        prepare_events(shop(), min_rating=3)


def test_k_core_iterates_until_stable():
    # u1 and u2 rate x and y; u3 rates x and z; z has one user. With k=2: z goes, then u3 has one item
    # left and goes too (second round); x and y keep two users each.
    frame = pd.DataFrame({
        "user": ["u1", "u1", "u2", "u2", "u3", "u3"],
        "item": ["x", "y", "x", "y", "x", "z"],
        "timestamp": range(6),
    })
    events, report = prepare_events(frame, k_core=2)
    assert sorted(triples(events)) == [("u1", "x"), ("u1", "y"), ("u2", "x"), ("u2", "y")]
    assert report["k_core"] == 2 and report["k_core_rounds"] == 2


def test_k_core_counts_distinct_pairs_and_separate_cores():
    # u1 has one distinct item seen three times: not enough for user_core=2.
    frame = pd.DataFrame({
        "user": ["u1", "u1", "u1", "u2", "u2"], "item": ["x", "x", "x", "x", "y"], "timestamp": range(5),
    })
    events, _ = prepare_events(frame, user_core=2)
    assert triples(events) == [("u2", "x"), ("u2", "y")]
    events, report = prepare_events(frame, item_core=2)
    assert triples(events) == [("u1", "x"), ("u1", "x"), ("u1", "x"), ("u2", "x")]
    assert report["k_core"] == 1


@pytest.mark.parametrize("kwargs, error", [
    ({"duplicates": "mean"}, ConfigError),
    ({"unknown_events": "ignore"}, ConfigError),
    ({"k_core": 0}, ConfigError),
    ({"user_core": 2.5}, ConfigError),
    ({"event_weights": {"view": float("nan")}}, ConfigError),
])
def test_bad_options(kwargs, error):
    with pytest.raises(error):
        prepare_events(shop(), **kwargs)


def test_missing_required_column():
    with pytest.raises(DataError, match="no 'timestamp' column"):
        prepare_events(shop().drop(columns=["timestamp"]))
