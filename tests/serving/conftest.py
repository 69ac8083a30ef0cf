"""A small planted world: action fans and comedy fans, an itemknn model over them, and a SQLite store with keys."""

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recengine.data.dataset import Dataset
from recengine.models.registry import create_model
from recengine.serving import Settings
from recengine.serving.api import create_app
from recengine.store import Store
from recengine.trained import TrainedModel

ACTION = [f"a{j}" for j in range(10)]
COMEDY = [f"c{j}" for j in range(10)]
#: Newest training event; events posted without a timestamp (now) come after it.
T0 = 1_600_000_000


def planted_dataset() -> Dataset:
    """15 action fans and 15 comedy fans with 5 items each of their genre; "x" has seen a0 and a1 only. a0..a2
    and c0..c2 are the most popular of their genre."""
    rng = np.random.default_rng(0)
    rows = []
    for genre, items in (("a", ACTION), ("c", COMEDY)):
        for u in range(15):
            chosen = list(items[:3]) + list(rng.choice(items[3:], 2, replace=False))
            rows += [(f"{genre}fan{u}", item) for item in chosen]
    rows += [("x", "a0"), ("x", "a1")]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    frame["timestamp"] = T0 - len(frame) + np.arange(len(frame))
    items = pd.DataFrame({"title": [f"Action {j}" for j in range(10)] + [f"Comedy {j}" for j in range(10)],
                          "genres": [["Action"]] * 10 + [["Comedy"]] * 10}, index=pd.Index(ACTION + COMEDY))
    users = pd.DataFrame({"taste": ["action"] * 15 + ["comedy"] * 15 + ["action"]},
                         index=pd.Index([f"afan{u}" for u in range(15)] + [f"cfan{u}" for u in range(15)] + ["x"]))
    return Dataset.from_events(frame, items, users, name="planted")


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "itemknn"
    TrainedModel.fit(create_model("itemknn"), planted_dataset()).save(path)
    return path


@pytest.fixture()
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture()
def keys(store_url):
    """Request headers with a key of each scope."""
    with Store.open(store_url) as store:
        return {scope: {"X-API-Key": store.create_api_key(scope, [scope])} for scope in ("read", "write", "admin")}


@pytest.fixture()
def make_client(store_url, model_dir, keys):
    """A TestClient over an app with these settings (the lifespan runs inside `with`)."""
    return lambda **settings: TestClient(create_app(Settings(store=store_url, model_dir=str(model_dir),
                                                             **settings)), raise_server_exceptions=False)


@pytest.fixture()
def client(make_client):
    with make_client() as c:
        yield c
