"""A deleted user stays deleted across restarts: the store records the deletion, and a model trained before it
never uses what it learned about them; a model trained after it does (they may come back as someone new)."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import sqlalchemy as sa

from recengine.serving import Service, Settings
from recengine.store import Store, schema
from recengine.trained import TrainedModel

RECS = "/v1/users/{}/recommendations"


def recs(client, keys, user, **params):
    response = client.get(RECS.format(user), params={"k": 5, **params}, headers=keys["read"])
    assert response.status_code == 200, response.text
    return response.json()


def test_a_deleted_user_is_unknown_after_a_restart(make_client, keys, store_url):
    with make_client() as client:
        # x trained on a0 and a1 (the model knows them, the store does not) and now posts a comedy.
        assert client.post("/v1/events", json={"events": [{"user": "x", "item": "c5"}]},
                           headers=keys["write"]).status_code == 201
        assert recs(client, keys, "x")["source"] == "model"
        assert client.delete("/v1/users/x", headers=keys["write"]).status_code == 204
    with make_client() as restarted:  # same store, same model directory, a new process
        body, stranger = recs(restarted, keys, "x", explain="true"), recs(restarted, keys, "nobody", explain="true")
        assert body == {**stranger, "user": "x"} and body["source"] == "popular"
        assert "a0" in [r["item"] for r in body["items"]]  # their training history is not even excluded as seen
        assert restarted.get("/v1/users/x/profile", headers=keys["read"]).status_code == 404
        assert restarted.get("/v1/users/x/history", headers=keys["read"]).status_code == 404
    with Store.open(store_url) as store:
        assert set(store.deleted_users()) == {"x"} and "x" not in set(store.events()["user"])


def test_a_user_known_to_the_store_only_and_a_second_deletion(store_url):
    with Store.open(store_url) as store:
        store.add_events(pd.DataFrame({"user": ["u"], "item": ["i"], "timestamp": [1]}))
        assert store.delete_user("u") == 1
        first = store.deleted_users()["u"]
        assert store.forget_user("u") == 0  # gone from the store: only the deletion is recorded, again
        assert store.deleted_users()["u"] >= first and first.tzinfo is not None


def test_a_model_trained_after_the_deletion_may_know_them_again(store_url, model_dir):
    service = Service.open(Settings(store=store_url, model_dir=str(model_dir)))
    try:
        service.delete_user("afan0")
        assert service.history("afan0").users[0] == -1 and not len(service.history("afan0").items)
        older = TrainedModel.load(model_dir)
        service.swap(older, {"model_dir": str(model_dir)})  # trained before the deletion: still forgotten
        assert not len(service.history("afan0").items)
        newer = TrainedModel.load(model_dir)
        later = datetime.now(UTC) + timedelta(hours=1)
        newer.info.update(trained_at=later.strftime("%Y-%m-%dT%H:%M:%SZ"), fit_seconds=1.0)
        service.swap(newer, {"model_dir": "retrained"})
        assert service.history("afan0").users[0] >= 0 and len(service.history("afan0").items) == 5
    finally:
        service.close()


def test_a_version_1_store_gains_the_deletions_table(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    with Store.open(url) as store, store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE deleted_users"))
        conn.execute(schema.schema_version.update().values(version=1))
    with Store.open(url) as store, store.engine.connect() as conn:
        assert conn.execute(sa.select(schema.schema_version.c.version)).scalar_one() == schema.latest_version()
        assert store.deleted_users() == {}
        store.forget_user("someone")
        assert set(store.deleted_users()) == {"someone"}
