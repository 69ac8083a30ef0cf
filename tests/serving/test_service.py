"""The Service without HTTP: which histories are marked as training ones, forgetting, swapping models."""

import gc
import weakref

import pandas as pd
import pytest

from recengine.errors import ConfigError
from recengine.models.registry import create_model
from recengine.serving import Service, Settings
from recengine.store import Store
from recengine.trained import TrainedModel


@pytest.fixture()
def service(store_url, model_dir):
    opened = Service.open(Settings(store=store_url, model_dir=str(model_dir)))
    yield opened
    opened.close()


@pytest.fixture(scope="module")
def index(model_dir):
    """Item id → the model's internal index."""
    return TrainedModel.load(model_dir).dataset.items.index


def events(user, items, timestamp=1_700_000_000):
    return pd.DataFrame({"user": user, "item": items, "timestamp": timestamp})


def test_only_an_unchanged_training_history_is_marked_with_its_user(service, index):
    users = service.model_info()["users"]
    untouched = service.history("afan0")
    assert 0 <= untouched.users[0] < users and len(untouched.items) == 5
    service.add_events(events("afan0", ["c9"]))
    changed = service.history("afan0")
    assert changed.users[0] == -1 and len(changed.items) == 6 and changed.items[-1] == index("c9")
    assert service.history("stranger").users[0] == -1 and not len(service.history("stranger").items)


def test_late_events_keep_the_history_in_time_order(service, index):
    service.add_events(events("x", ["c9"], timestamp=1))
    assert service.history("x").items.tolist() == [index("c9"), index("a0"), index("a1")]


def test_a_deleted_user_never_gets_their_learned_state_back(service, index):
    service.delete_user("x")
    assert service.history("x").users[0] == -1 and not len(service.history("x").items)
    service.add_events(events("x", ["c0"]))  # back as a new person: only what came after the delete
    assert service.history("x").items.tolist() == [index("c0")]


def test_swap_keeps_the_live_histories(service):
    service.add_events(events("x", [f"c{j}" for j in range(5)]))
    popular = TrainedModel.load(service.model_info()["source"]["model_dir"])
    popular = TrainedModel.fit(create_model("popular"), popular.dataset)
    service.swap(popular, {"model_dir": "elsewhere"})
    info = service.model_info()
    assert info["model"] == "popular" and info["source"] == {"model_dir": "elsewhere"} and info["live_users"] == 1
    assert len(service.history("x").items) == 7
    assert {r.item for r in service.recommend("x", 20).items}.isdisjoint({f"c{j}" for j in range(5)})


class _Node:
    """A garbage-collected object that weak references can follow."""


def test_a_swap_refreezes_a_frozen_heap_and_leaves_an_unfrozen_one_alone(service):
    dataset = TrainedModel.load(service.model_info()["source"]["model_dir"]).dataset
    gc.unfreeze()
    service.swap(TrainedModel.fit(create_model("popular"), dataset), {"model_dir": "first"})
    assert gc.get_freeze_count() == 0
    gc.disable()  # no collection between dropping the cycle and freezing it
    cycle = _Node()
    cycle.itself = cycle
    freed = weakref.ref(cycle)
    del cycle
    gc.freeze()  # as `recengine serve` does once loaded; the cycle is frozen with the rest
    gc.enable()
    try:
        gc.collect()
        assert freed() is not None, "a frozen cycle outlives collections"
        later = _Node()  # lives on, created after the freeze
        service.swap(TrainedModel.fit(create_model("popular"), dataset), {"model_dir": "second"})
        assert freed() is None, "a cycle frozen before the swap is collected by it"
        assert gc.get_freeze_count() > 0
        assert not any(o is later for o in gc.get_objects()), "what lives after the swap is frozen"
    finally:
        gc.unfreeze()


def test_the_store_active_version_is_served_when_no_directory_is_given(store_url, model_dir):
    with pytest.raises(ConfigError, match="no active model version"):
        Service.open(Settings(store=store_url))
    with Store.open(store_url) as store:
        version = store.register_model_version("itemknn", {}, artifact_path=str(model_dir))
        store.set_status(version.id, "ready")
        store.set_status(version.id, "active")
    opened = Service.open(Settings(store=store_url))
    assert opened.model_info()["source"] == {"model_dir": str(model_dir), "version": version.id}
    opened.close()


def test_settings_from_the_environment():
    settings = Settings.from_env({"RECENGINE_STORE": "sqlite:///x.db", "RECENGINE_MAX_K": "50"}, model_dir="m")
    assert (settings.store, settings.max_k, settings.model_dir) == ("sqlite:///x.db", 50, "m")
    with pytest.raises(ConfigError, match="RECENGINE_MAX_EVENTS"):
        Settings.from_env({"RECENGINE_MAX_EVENTS": "many"})
