"""The impression log: every recommendation response is logged under its request_id (in batches, by the writer's
thread); outcome events are attributed to an impression by request_id or, without one, by user, item and window."""

import time
from datetime import UTC, datetime

import pandas as pd
import pytest
import sqlalchemy as sa

from recengine.errors import DataError
from recengine.store import Store, schema
from recengine.store.store import Impression

RECS = "/v1/users/{}/recommendations"


def recommend(client, keys, user, **params) -> dict:
    """The body, with the response's request id (its X-Request-Id header) as request_id."""
    response = client.get(RECS.format(user), params=params, headers=keys["read"])
    assert response.status_code == 200, response.text
    return {**response.json(), "request_id": response.headers["X-Request-Id"]}


def post(client, keys, events):
    return client.post("/v1/events", json={"events": events}, headers=keys["write"])


def outcomes(client):
    service = client.app.state.service
    service.impressions.flush()
    return service.store.attributed_outcomes()


def test_a_response_is_logged_under_its_request_id(client, keys):
    body = recommend(client, keys, "x", k=3)
    assert len(body["request_id"]) == 32 and body["request_id"] != recommend(client, keys, "x", k=3)["request_id"]
    service = client.app.state.service
    service.impressions.flush()
    logged = service.store.impressions()
    slate = logged[logged["request_id"] == body["request_id"]]
    assert slate["item"].tolist() == [r["item"] for r in body["items"]]
    assert slate["position"].tolist() == [1, 2, 3]
    assert slate["score"].tolist() == pytest.approx([r["score"] for r in body["items"]])
    assert set(slate["user"]) == {"x"} and set(slate["policy"]) == {"itemknn"}
    assert slate["propensity"].isna().all() and slate["experiment"].isna().all()


def test_the_writer_writes_what_waits_at_shutdown(make_client, keys, store_url):
    with make_client() as client:
        request_id = recommend(client, keys, "x", k=2)["request_id"]
    with Store.open(store_url) as store:
        assert set(store.impressions()["request_id"]) == {request_id}


def test_an_outcome_with_its_request_id_is_attributed_to_it(client, keys):
    body = recommend(client, keys, "x", k=3)
    # Posted at once, before the writer's batch: the service writes what waits before it checks the id.
    response = post(client, keys, [{"user": "x", "item": body["items"][0]["item"], "event": "click",
                                    "request_id": body["request_id"]}])
    assert response.status_code == 201, response.text
    got = outcomes(client)
    assert got[["request_id", "attribution"]].values.tolist() == [[body["request_id"], "request"]]


def test_without_a_request_id_the_latest_impression_in_the_window_counts(client, keys):
    first, second = recommend(client, keys, "x", k=3), recommend(client, keys, "x", k=3)
    item = second["items"][0]["item"]
    assert item in [r["item"] for r in first["items"]]
    now = int(time.time())
    response = post(client, keys, [
        {"user": "x", "item": item, "event": "click", "timestamp": now},
        {"user": "x", "item": item, "event": "click", "timestamp": now + 25 * 3600},  # past the 24 h window
        {"user": "x", "item": "c9", "event": "click", "timestamp": now},  # never shown
    ])
    assert response.status_code == 201, response.text
    got = outcomes(client).sort_values(["timestamp", "item"])
    # Unattributed outcomes are rows all the same (missing values are None or NaN, as in events()).
    assert got["request_id"].iloc[0] == second["request_id"] and got["request_id"].iloc[1:].isna().all()
    assert got["attribution"].iloc[0] == "window" and got["attribution"].iloc[1:].isna().all()
    assert client.app.state.service.store.attributed_outcomes(window_seconds=26 * 3600)["request_id"].notna().sum() == 2


def test_an_unknown_request_id_is_refused_naming_the_row(client, keys):
    known = recommend(client, keys, "x", k=1)["request_id"]
    response = post(client, keys, [{"user": "x", "item": "a5", "request_id": known},
                                   {"user": "x", "item": "a6", "request_id": "0" * 32}])
    assert response.status_code == 422 and "events[1]" in response.json()["detail"]
    assert response.json()["detail"].count("0" * 32) == 1
    # A batch may mix events with and without a request id; an id of the client's own form is kept as given.
    mixed = post(client, keys, [{"user": "x", "item": "a5", "request_id": known}, {"user": "x", "item": "a6"},
                                {"user": "x", "item": "a7", "request_id": "batch-7"}])
    assert mixed.status_code == 201, mixed.text
    assert set(client.app.state.service.store.events()["request_id"].dropna()) == {"batch-7", known}


def test_bad_impressions_are_refused_naming_them(store_url):
    now = datetime.now(UTC)
    with Store.open(store_url) as store:
        with pytest.raises(DataError, match=r"impression 1 \('r2'\), position 2: propensity 1.5"):
            store.add_impressions([Impression("r1", "u", now, "p", ["a"], [1.0]),
                                   Impression("r2", "u", now, "p", ["a", "b"], [1.0, 0.5], [0.5, 1.5])])
        with pytest.raises(DataError, match="shows an item twice"):
            store.add_impressions([Impression("r3", "u", now, "p", ["a", "a"], [1.0, 0.5])])
        assert not len(store.impressions())


def test_a_version_2_store_gains_the_impression_log(store_url):
    with Store.open(store_url) as store, store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE impression_items"))
        conn.execute(sa.text("DROP TABLE impressions"))
        conn.execute(schema.schema_version.update().values(version=2))
    with Store.open(store_url) as store:
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(schema.schema_version.c.version)).scalar_one() == schema.latest_version()
        store.add_impressions([Impression("r1", "u", datetime.now(UTC), "p", ["a", "b"], [2.0, 1.0], [0.6, 0.4])])
        assert store.impressions()["propensity"].tolist() == [0.6, 0.4]


def test_deleting_a_user_deletes_what_was_shown_to_them(store_url):
    now = datetime.now(UTC)
    with Store.open(store_url) as store:
        store.add_events(pd.DataFrame({"user": ["gone", "kept"], "item": ["a", "a"], "timestamp": [1, 2]}))
        store.add_impressions([Impression("r1", "gone", now, "p", ["a", "b"], [1.0, 0.5]),
                               Impression("r2", "kept", now, "p", ["b"], [1.0])])
        store.delete_user("gone")
        store.forget_user("never-stored")
        logged = store.impressions()
        assert set(logged["user"]) == {"kept"} and logged["request_id"].tolist() == ["r2"]
        with store.engine.connect() as conn:
            slates = conn.execute(sa.select(schema.impression_items.c.request_id)).scalars().all()
        assert slates == ["r2"]
