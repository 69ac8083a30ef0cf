"""The HTTP API over a planted itemknn model and a SQLite store: fold-in of posted events, deletes, filters,
explanations, keys, bad input, size limits, metrics. Item ids say their genre: a* action, c* comedy."""

import pytest

from recengine.store import Store

RECS = "/v1/users/{}/recommendations"


def recs(client, keys, user, **params):
    response = client.get(RECS.format(user), params=params, headers=keys["read"])
    assert response.status_code == 200, response.text
    return response.json()


def items_of(body):
    return [r["item"] for r in body["items"]]


def post(client, keys, events, scope="write"):
    return client.post("/v1/events", json={"events": events}, headers=keys[scope])


def test_a_posted_event_changes_the_next_recommendations(client, keys, store_url):
    before = recs(client, keys, "x", k=5)
    assert before["source"] == "model" and all(i.startswith("a") for i in items_of(before))
    response = post(client, keys, [{"user": "x", "item": f"c{j}"} for j in range(5)])
    assert response.status_code == 201 and response.json() == {"accepted": 5, "unknown_items": 0}
    after = items_of(recs(client, keys, "x", k=5))
    # Five comedies now outweigh two action films: the fold-in moved x to comedy, and seen items stay out.
    assert sum(i.startswith("c") for i in after) >= 4 and not set(after) & {f"c{j}" for j in range(5)}
    with Store.open(store_url) as store:
        assert sorted(store.events()["item"]) == [f"c{j}" for j in range(5)]


def test_events_at_start_are_read_from_the_store(make_client, keys, store_url):
    with make_client() as client:
        post(client, keys, [{"user": "x", "item": f"c{j}", "timestamp": "2030-01-01T00:00:00"} for j in range(5)])
    with make_client() as restarted:  # a new process: the live history comes back from the store
        assert sum(i.startswith("c") for i in items_of(recs(restarted, keys, "x", k=5))) >= 4


def test_a_new_user_is_folded_in_and_an_unknown_one_gets_popular_items(client, keys):
    cold = recs(client, keys, "nobody", k=3)
    assert cold["source"] == "popular" and len(cold["items"]) == 3
    post(client, keys, [{"user": "newcomer", "item": "c0", "weight": 2.0}, {"user": "newcomer", "item": "c1",
                                                                            "weight": 1.0}])
    warm = recs(client, keys, "newcomer", k=3)
    assert warm["source"] == "model" and all(i.startswith("c") for i in items_of(warm))


def test_cold_start_by_user_attributes(client, keys):
    assert client.put("/v1/users/fresh", json={"attributes": {"taste": "comedy"}}, headers=keys["write"]
                      ).status_code == 200
    body = recs(client, keys, "fresh", k=3)
    assert body["source"] == "popular-in-group" and items_of(body) == ["c0", "c1", "c2"]


def test_delete_user_forgets_them_at_once(client, keys, store_url):
    post(client, keys, [{"user": "x", "item": "c5"}])
    assert client.delete("/v1/users/x", headers=keys["write"]).status_code == 204
    with Store.open(store_url) as store:
        assert "x" not in set(store.events()["user"]) and "x" not in store.users().index
    assert recs(client, keys, "x", k=5) == {**recs(client, keys, "nobody", k=5), "user": "x"}
    assert client.get("/v1/users/x/profile", headers=keys["read"]).status_code == 404
    missing = client.delete("/v1/users/never-was", headers=keys["write"])
    assert missing.status_code == 404 and "never-was" in missing.json()["detail"]


def test_filters_candidates_and_diversity(client, keys):
    assert items_of(recs(client, keys, "x", k=2, exclude=["a2"]))[0] != "a2"
    assert set(items_of(recs(client, keys, "x", k=5, candidates=["c3", "a9", "zzz"]))) == {"c3", "a9"}
    assert recs(client, keys, "x", candidates=["zzz"])["unknown_candidates"] == ["zzz"]
    assert all(i.startswith("c") for i in items_of(recs(client, keys, "x", k=5, category="Comedy")))
    assert "a0" in items_of(recs(client, keys, "x", k=20, exclude_seen="false"))
    assert "a0" not in items_of(recs(client, keys, "x", k=20))
    plain, varied = recs(client, keys, "x", k=4), recs(client, keys, "x", k=4, diversity=0.9)
    assert all(i.startswith("a") for i in items_of(plain))
    assert {i[0] for i in items_of(varied)} == {"a", "c"}
    bad = client.get(RECS.format("x"), params={"category": "Opera"}, headers=keys["read"])
    assert bad.status_code == 422 and "Opera" in bad.json()["detail"] and "Comedy" in bad.json()["detail"]
    assert client.get(RECS.format("x"), params={"k": 0}, headers=keys["read"]).status_code == 422
    assert client.get(RECS.format("x"), params={"k": 5000}, headers=keys["read"]).status_code == 422


def test_explanations_on_request(client, keys):
    body = recs(client, keys, "x", k=3, explain="true")
    assert all(r["reason"] == "liked" and r["text"].startswith("Because you liked Action") for r in body["items"])
    assert all(r["title"].startswith("Action") for r in body["items"])
    assert all(r["reason"] is None for r in recs(client, keys, "x", k=3)["items"])
    assert all(r["reason"] == "popular" and r["text"] for r in recs(client, keys, "nobody", explain="1")["items"])


def test_items_upsert_delete_and_similar(client, keys):
    similar = client.get("/v1/items/a0/similar", params={"k": 3}, headers=keys["read"])
    assert similar.status_code == 200 and all(r["item"].startswith("a") for r in similar.json()["items"])
    new = client.put("/v1/items/n1", json={"title": "New film", "categories": ["Comedy"]}, headers=keys["write"])
    assert new.status_code == 200 and new.json()["in_model"] is True and "content" in new.json()["note"]
    bare = client.put("/v1/items/n0", json={"price": 3.0}, headers=keys["write"])  # nothing to score it by
    assert bare.json()["in_model"] is False and "retrain" in bare.json()["note"]
    old = client.put("/v1/items/a3", json={"title": "Action 3", "attributes": {"year": 1999}},
                     headers=keys["write"])
    assert old.json()["in_model"] is True
    assert client.delete("/v1/items/a2", headers=keys["write"]).status_code == 204
    assert "a2" not in items_of(recs(client, keys, "x", k=10))
    assert "a2" not in items_of(client.get("/v1/items/a0/similar", headers=keys["read"]).json())
    unknown = client.get("/v1/items/zzz/similar", headers=keys["read"])
    assert unknown.status_code == 404 and "zzz" in unknown.json()["detail"]
    assert client.get("/v1/items/a2/similar", headers=keys["read"]).status_code == 404
    # An event for an item the service does not serve is stored, and said to be.
    assert post(client, keys, [{"user": "x", "item": "n0"}, {"user": "x", "item": "n1"}]).json() == {
        "accepted": 2, "unknown_items": 1}


def test_keys_and_scopes(client, keys, store_url):
    assert client.get(RECS.format("x")).status_code == 401
    wrong = client.get(RECS.format("x"), headers={"X-API-Key": "rk_nonsense"})
    assert wrong.status_code == 401 and "unknown or revoked" in wrong.json()["detail"]
    forbidden = post(client, keys, [{"user": "x", "item": "a5"}], scope="read")
    assert forbidden.status_code == 403 and "write" in forbidden.json()["detail"]
    assert post(client, keys, [{"user": "x", "item": "a5"}], scope="admin").status_code == 201
    assert client.delete("/v1/users/x", headers=keys["read"]).status_code == 403
    assert client.get("/v1/model", headers=keys["write"]).status_code == 200
    with Store.open(store_url) as store:
        read_id = int(store.api_keys().set_index("name").loc["read", "id"])
        store.revoke_api_key(read_id)
    assert client.get(RECS.format("x"), headers=keys["read"]).status_code == 401
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize("events, where", [
    ([{"user": "x", "item": "a1"}, {"user": "x", "item": "a2", "timestamp": "yesterday"}], "events[1].timestamp"),
    ([{"user": "x", "item": "a1"}, {"user": "x", "item": "a2", "rating": "lots"}], "events[1].rating"),
    ([{"user": "x", "item": "a1"}, {"item": "a2"}], "events[1].user"),
    ([{"user": "x", "item": "a1"}, {"user": "", "item": "a2"}], "events[1].user"),
    ([{"user": "x", "item": "a1", "rating": 4}, {"user": "x", "item": "a2"}], "events[1]: no rating"),
    ([{"user": "x", "item": "a1", "timestamp": 1_700_000_000_000}], "not milliseconds"),
    ([{"user": "x", "item": "a1", "colour": "red"}], "events[0].colour"),
])
def test_bad_events_are_422_naming_the_row_and_store_nothing(client, keys, store_url, events, where):
    response = post(client, keys, events)
    assert response.status_code == 422 and where in response.json()["detail"], response.text
    with Store.open(store_url) as store:
        assert store.counts()["events"] == 0
    assert recs(client, keys, "x", k=3)["source"] == "model"


def test_errors_are_json_with_a_detail(make_client, keys, monkeypatch):
    with make_client(max_body_bytes=2_000, max_events=3) as client:
        big = {"events": [{"user": "x", "item": "a1"}] * 100}
        response = client.post("/v1/events", json=big, headers=keys["write"])
        assert response.status_code == 413 and "2,000 bytes" in response.json()["detail"]
        chunked = client.post("/v1/events", content=iter([b"{" + b" " * 3_000 + b"}"]),
                              headers={**keys["write"], "Content-Type": "application/json"})
        assert chunked.status_code == 413
        many = client.post("/v1/events", json={"events": [{"user": "x", "item": "a1"}] * 4}, headers=keys["write"])
        assert many.status_code == 413 and "RECENGINE_MAX_EVENTS" in many.json()["detail"]
        assert client.post("/v1/events", content=b"{not json", headers={**keys["write"],
                           "Content-Type": "application/json"}).status_code == 422
        assert client.get("/v1/nothing-here").json() == {"detail": "Not Found"}
        monkeypatch.setattr(client.app.state.service, "recommend", lambda *a, **k: 1 / 0)
        crashed = client.get(RECS.format("x"), headers=keys["read"])
        assert crashed.status_code == 500 and crashed.json() == {
            "detail": "internal server error; the server log has the details"}


def test_profile_model_health_metrics_and_docs(client, keys):
    profile = client.get("/v1/users/afan0/profile", headers=keys["read"])
    assert profile.status_code == 200 and profile.json()["categories"][0]["name"] == "Action"
    assert profile.json()["events_since_training"] == 0
    assert client.get("/v1/users/afan0/profile").status_code == 401
    model = client.get("/v1/model", headers=keys["read"]).json()
    assert model["model"] == "itemknn" and model["items"] == 20 and model["categories"] == ["Action", "Comedy"]
    assert client.get("/health").json() == {"status": "ok", "model": "itemknn"}
    post(client, keys, [{"user": "x", "item": "c1"}, {"user": "y", "item": "c2"}])
    recs(client, keys, "x")
    text = client.get("/metrics").text
    assert "recengine_events_ingested_total 2.0" in text
    assert 'recengine_http_requests_total{method="GET",route="/v1/users/{user_id}/recommendations",status="200"}' \
        in text
    assert "recengine_http_request_duration_seconds_bucket" in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/events", "/v1/items/{item_id}", "/v1/users/{user_id}/recommendations", "/metrics"} <= set(paths)
