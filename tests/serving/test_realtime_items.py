"""New items recommendable at once through content, planted: sci-fi fans and romance fans, and a new sci-fi film
put after training. Served by a collaborative model (the service's content side-index), a content model and a
hybrid with a content component."""

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recengine.data.dataset import Dataset
from recengine.models.registry import create_model
from recengine.serving import Service, Settings
from recengine.serving.api import create_app
from recengine.store import Store
from recengine.trained import TrainedModel

SCIFI = [f"s{j}" for j in range(10)]
ROMANCE = [f"r{j}" for j in range(12)]
NEW = {"title": "Robot Rebellion", "text": "robots and androids rebel against the machines that made them",
       "categories": ["Sci-Fi"]}
MODELS = {"itemknn": {}, "content": {"text_encoder": "tfidf"},
          "weighted": {"models": ["itemknn", {"name": "content", "params": {"text_encoder": "tfidf"}}]}}


def planted() -> Dataset:
    """15 sci-fi fans who have seen the five robot films s0..s4 and one space film of s5..s9, and 15 romance
    fans with 5 of 12 romance films: a new robot film is what a sci-fi fan has not seen and would like most."""
    rng = np.random.default_rng(1)
    rows = []
    for u in range(15):
        rows += [(f"sfan{u}", item) for item in [*SCIFI[:5], SCIFI[5 + u % 5]]]
        rows += [(f"rfan{u}", item) for item in rng.choice(ROMANCE, 5, replace=False)]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    frame["timestamp"] = 1_600_000_000 - len(frame) + np.arange(len(frame))
    robots = ["robots take over the city", "a robot learns to love machines", "androids and robots at war",
              "the last robot factory", "robots and machines rebel"]
    space = ["a starship crosses the galaxy", "aliens land on a distant planet", "a space station adrift",
             "war among the stars", "a colony on mars"]
    love = ["wedding day", "first love", "summer romance", "love letters", "heart of paris", "a second chance"]
    items = pd.DataFrame({
        "title": [f"Sci-Fi {j}" for j in range(10)] + [f"Romance {j}" for j in range(12)],
        "text": robots + space + [f"{love[j % 6]}: a love story and a wedding" for j in range(12)],
        "genres": [["Sci-Fi"]] * 10 + [["Romance"]] * 12}, index=pd.Index(SCIFI + ROMANCE))
    return Dataset.from_events(frame, items, name="planted-content")


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    root, data = tmp_path_factory.mktemp("models"), planted()
    for name, params in MODELS.items():
        TrainedModel.fit(create_model(name, **params), data).save(root / name)
    return root


@pytest.fixture(params=list(MODELS))
def service(request, store_url, model_dirs):
    opened = Service.open(Settings(store=store_url, model_dir=str(model_dirs / request.param)))
    yield opened
    opened.close()


def put(service, item="new", **fields):
    return service.upsert_items(pd.DataFrame([fields or NEW], index=pd.Index([item], name="item")))[0]


def top(service, user, k=5, **options):
    return [r.item for r in service.recommend(user, k, **options).items]


def test_a_new_item_reaches_the_fans_of_its_content_and_leaves_with_its_delete(service):
    assert "new" not in top(service, "sfan0")
    assert put(service) == "content"
    assert "new" in top(service, "sfan0") and "new" not in top(service, "rfan0")
    explained = {r.item: r for r in service.recommend("sfan0", 5, explain=True).items}["new"]
    assert explained.reason == "new-item" and explained.text == "New item matching your interest in Sci-Fi"
    assert service.model_info()["new_items"] == 1
    service.delete_item("new")
    assert "new" not in top(service, "sfan0", k=30) and service.model_info()["new_items"] == 0
    assert put(service) == "content"  # put again: served again
    assert "new" in top(service, "sfan0")


def test_similar_items_of_and_to_a_new_item(service):
    put(service)
    assert "new" in [r.item for r in service.similar_items("s0", 10)]
    assert "new" not in [r.item for r in service.similar_items("r0", 10)]
    assert {r.item for r in service.similar_items("new", 5)} <= set(SCIFI)
    service.delete_item("new")
    assert "new" not in [r.item for r in service.similar_items("s0", 10)]
    with pytest.raises(Exception, match="unknown item 'new'"):
        service.similar_items("new")


def test_filters_seen_and_cold_users_treat_new_items_as_items(service):
    put(service)
    assert "new" in top(service, "sfan0", 10, categories=["Sci-Fi"])
    assert "new" not in top(service, "sfan0", 10, categories=["Romance"])
    assert "new" not in top(service, "sfan0", 10, exclude=["new"])
    ranked = service.recommend("sfan0", 2, candidates=["new", "r0", "nowhere"])
    assert [r.item for r in ranked.items] == ["new", "r0"] and ranked.unknown_candidates == ["nowhere"]
    assert len(top(service, "sfan0", 5, diversity=0.5)) == 5
    report = service.add_events(pd.DataFrame({"user": ["sfan0"], "item": ["new"], "timestamp": [1_700_000_000]}))
    assert report.unknown_items == 0
    assert "new" not in top(service, "sfan0", 30) and "new" in top(service, "sfan0", 30, exclude_seen=False)
    assert len(top(service, "nobody", 5)) == 5  # a cold user's popularity still ranks whole


def test_an_item_without_content_waits_for_the_retrain(service):
    assert put(service, "bare", price=2.0) is None
    assert "bare" not in top(service, "sfan0", 30) and service.model_info()["new_items"] == 0


def test_new_items_are_served_again_after_a_restart(store_url, model_dirs):
    settings = Settings(store=store_url, model_dir=str(model_dirs / "itemknn"))
    with TestClient(create_app(settings)) as client, Store.open(store_url) as store:
        write = {"X-API-Key": store.create_api_key("w", ["write"])}
        read = {"X-API-Key": store.create_api_key("r", ["read"])}
        answer = client.put("/v1/items/new", json=NEW, headers=write)
        assert answer.status_code == 200 and answer.json()["in_model"] is True
    with TestClient(create_app(settings)) as client:
        body = client.get("/v1/users/sfan0/recommendations", params={"k": 5, "explain": True}, headers=read).json()
        assert "new" in [r["item"] for r in body["items"]]
        similar = client.get("/v1/items/new/similar", params={"k": 3}, headers=read).json()["items"]
        assert all(r["item"] in SCIFI for r in similar)
