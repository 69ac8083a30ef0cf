"""Model lifecycle on a planted store: train → ready with metrics, promotion only if not worse, rollback, failed
and killed trainings that never reach serving, the background Retrainer and the admin API over it.

The planted world: 30 action fans and 30 comedy fans, each with 10 of their genre's 40 items (popular ones more
often), the k-th event of every user at about the same time, so a global-temporal cut leaves everyone old and
new events. itemknn finds the genre; popular mixes both genres; random is the floor."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from recengine.cli import main
from recengine.errors import ConfigError
from recengine.models.itemknn import ItemKNN
from recengine.serving import Service, Settings
from recengine.serving.api import create_app
from recengine.serving.lifecycle import (
    METRICS,
    Retrainer,
    promote_if_not_worse,
    rollback,
    source_of,
    train_version,
)
from recengine.store import Store
from recengine.trained import TrainedModel

N_ITEMS = 40


def planted_events(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, N_ITEMS + 1) ** 0.7
    rows = []
    for genre in ("a", "c"):
        for u in range(30):
            chosen = rng.choice(N_ITEMS, 10, replace=False, p=popularity / popularity.sum())
            rows += [(f"{genre}fan{u}", f"{genre}{j}", k) for k, j in enumerate(chosen)]
    frame = pd.DataFrame(rows, columns=["user", "item", "step"])
    frame["timestamp"] = 1_600_000_000 + frame.pop("step") * 1_000 + rng.integers(0, 1_000, len(frame))
    return frame


@pytest.fixture()
def store(tmp_path):
    with Store.open(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.add_events(planted_events())
        ids = [f"{g}{j}" for g in "ac" for j in range(N_ITEMS)]
        store.upsert_items(pd.DataFrame({"title": [f"Film {i}" for i in ids],
                                         "categories": [["Action"] if i[0] == "a" else ["Comedy"] for i in ids]},
                                        index=pd.Index(ids, name="item")))
        yield store


@pytest.fixture()
def root(tmp_path):
    return tmp_path / "models"


def active(store, name, root):
    """Train `name` and make it the active version (the first promotion: there is nothing to compare with)."""
    result = train_version(store, name, {}, root)
    assert promote_if_not_worse(store, result).promoted
    return result


def test_train_makes_a_ready_version_with_metrics(store, root):
    result = train_version(store, "itemknn", {"neighbors": 50}, root)
    version = result.version
    assert version.status == "ready" and version.params["neighbors"] == 50
    assert set(METRICS) <= set(version.metrics) and version.metrics["ndcg@20"] > 0.2
    evaluation = version.metrics["evaluation"]
    assert evaluation["protocol"] == "global-temporal" and evaluation["users"] == 60
    assert version.metrics["trained_on"]["events"] == 600  # the final fit is on the whole snapshot
    assert version.artifact_path == str(root.resolve() / str(version.id))
    assert TrainedModel.load(version.artifact_path).dataset.n_interactions == 600
    assert store.active_version() is None  # trained, not promoted


def test_promotes_only_if_not_worse(store, root):
    first = active(store, "popular", root)
    better = train_version(store, "itemknn", {}, root)
    decision = promote_if_not_worse(store, better)
    assert decision.promoted and decision.champion_version == first.version.id
    assert decision.candidate > decision.champion  # popular refitted on the candidate's split
    assert store.active_version().id == better.version.id
    assert store.version(first.version.id).status == "ready"
    for worse in ("random", "popular"):
        decision = promote_if_not_worse(store, train_version(store, worse, {}, root))
        assert not decision.promoted and decision.candidate < decision.champion * 0.99, decision
        assert "below the bound" in decision.reason and store.active_version().id == better.version.id
    # The active configuration retrained on the same data is not worse than itself.
    again = promote_if_not_worse(store, train_version(store, "itemknn", {}, root))
    assert again.promoted and again.candidate == again.champion
    with pytest.raises(ConfigError, match="promotion compares"):
        promote_if_not_worse(store, better, metric="mrr@10")


def test_rollback_swaps_back(store, root):
    first = active(store, "popular", root)
    second = active(store, "itemknn", root)
    service = Service(store, second.trained, source_of(second.version))
    retrainer = Retrainer(service, root)
    assert retrainer.activate(first.version.id).status == "active"
    assert service.model_info()["source"]["version"] == first.version.id
    assert service.model_info()["model"] == "popular"
    assert [v.status for v in store.versions()] == ["active", "ready"]
    with pytest.raises(ConfigError, match="only a ready version"):
        rollback(store, first.version.id)  # already active


def test_a_failing_fit_marks_the_version_failed_and_serving_stays(store, root, monkeypatch):
    served = active(store, "popular", root)
    service = Service(store, served.trained, source_of(served.version))
    # A parameter value the model only rejects when it fits.
    with pytest.raises(ConfigError):
        train_version(store, "itemknn", {"similarity": "no-such-similarity"}, root)
    bad = store.versions()[-1]
    assert bad.status == "failed" and "no-such-similarity" in bad.metrics["error"] and bad.artifact_path is None

    def crash(self, dataset):
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(ItemKNN, "fit", crash)
    retrainer = Retrainer(service, root, model="itemknn").start()
    try:
        job = retrainer.trigger()
        assert job.done.wait(30) and job.decision is None and "out of memory" in job.error
    finally:
        retrainer.stop()
    assert store.version(job.version.id).status == "failed"
    assert store.active_version().id == served.version.id
    assert service.model_info()["source"]["version"] == served.version.id
    assert not (root / str(job.version.id)).exists()


KILLED = """
import sys, time
from pathlib import Path
from recengine.data.dataset import Dataset
from recengine.serving.lifecycle import train_version
from recengine.store import Store

save = Dataset.save

def slow_save(self, path):
    save(self, path)  # the bundle's data is written in its staging directory; then the process is killed
    Path(sys.argv[3]).touch()
    time.sleep(600)

Dataset.save = slow_save
with Store.open(sys.argv[1]) as store:
    train_version(store, "itemknn", {}, sys.argv[2])
"""


def test_a_training_killed_midway_is_never_served(store, root, tmp_path):
    served = active(store, "popular", root)
    marker = tmp_path / "saving"
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(KILLED), store.url, str(root), str(marker)],
                               env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the training never got to saving"
            time.sleep(0.1)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    killed = store.versions()[-1]
    assert killed.name == "itemknn" and killed.status == "training" and killed.artifact_path is None
    assert not (root / str(killed.id)).exists()  # only its staging directory, which nothing names
    service = Service.open(Settings(store=store.url))
    try:
        assert service.model_info()["source"]["version"] == served.version.id
    finally:
        service.close()


def test_service_open_loads_the_active_version_never_a_newer_one(store, root):
    served = active(store, "itemknn", root)
    train_version(store, "popular", {}, root)  # newer and ready, but not active
    store.register_model_version("ease", {})  # newer still, and training
    service = Service.open(Settings(store=store.url))
    try:
        info = service.model_info()
        assert info["model"] == "itemknn" and info["source"] == source_of(served.version)
    finally:
        service.close()


def test_the_retrainer_runs_on_a_schedule(store, root):
    served = active(store, "itemknn", root)
    service = Service(store, served.trained, source_of(served.version))
    retrainer = Retrainer(service, root, interval=0.2).start()
    try:
        deadline = time.monotonic() + 30
        while retrainer.last is None or not retrainer.last.done.is_set():
            assert time.monotonic() < deadline, "no scheduled retraining within 30 s"
            time.sleep(0.05)
    finally:
        retrainer.stop()
    job = retrainer.last
    assert job.decision.promoted and job.version.name == "itemknn"  # the serving configuration, retrained
    assert service.model_info()["source"]["version"] == job.version.id


def test_the_api_lists_trains_and_activates_versions_with_an_admin_key(store, root):
    first = active(store, "popular", root)
    keys = {scope: {"X-API-Key": store.create_api_key(scope, [scope])} for scope in ("read", "admin")}
    with TestClient(create_app(Settings(store=store.url)), raise_server_exceptions=False) as client:
        assert client.get("/v1/models").status_code == 401
        denied = client.get("/v1/models", headers=keys["read"])
        assert denied.status_code == 403 and "admin" in denied.json()["detail"]
        assert client.post("/v1/models/train", headers=keys["read"]).status_code == 403
        listed = client.get("/v1/models", headers=keys["admin"]).json()
        assert [(v["id"], v["status"]) for v in listed] == [(first.version.id, "active")]
        assert listed[0]["metrics"]["ndcg@20"] == first.version.metrics["ndcg@20"]

        bad = client.post("/v1/models/train", json={"model": "no-such-model"}, headers=keys["admin"])
        assert bad.status_code == 422 and "no-such-model" in bad.json()["detail"]
        response = client.post("/v1/models/train", json={"model": "itemknn"}, headers=keys["admin"])
        assert response.status_code == 202 and response.json()["status"] == "training"
        new = response.json()["version"]
        job = client.app.state.retrainer.last
        assert job.version.id == new and job.done.wait(30) and job.decision.promoted, job.error
        model = client.get("/v1/model", headers=keys["read"]).json()
        assert model["model"] == "itemknn" and model["source"]["version"] == new

        rolled = client.post(f"/v1/models/{first.version.id}/activate", headers=keys["admin"])
        assert rolled.status_code == 200 and rolled.json()["status"] == "active"
        assert client.get("/v1/model", headers=keys["read"]).json()["source"]["version"] == first.version.id
        assert client.post("/v1/models/999/activate", headers=keys["admin"]).status_code == 404
        assert client.post(f"/v1/models/{first.version.id}/activate", headers=keys["admin"]).status_code == 422


def test_the_command_line_trains_lists_and_rolls_back(store, root, capsys):
    assert main(["train", "--store", store.url]) == 2  # nothing active to retrain, and no --model
    assert "--model" in capsys.readouterr().err
    ids = []
    for model in ("popular", "itemknn"):
        assert main(["train", "--store", store.url, "--model", model, "--models-root", str(root), "--promote"]) == 0
        out, err = capsys.readouterr()
        ids.append(int(out))
        assert "promoted:" in err and f"{root.resolve() / out.strip()}" in err
    assert main(["train", "--store", store.url, "--param", "neighbors=5", "--models-root", str(root)]) == 0
    retrained = store.version(int(capsys.readouterr().out))
    assert retrained.name == "itemknn" and retrained.params["neighbors"] == 5 and retrained.status == "ready"
    assert main(["versions", "--store", store.url]) == 0
    listing = capsys.readouterr().out
    assert "active" in listing and "ndcg@20" in listing
    assert main(["rollback", str(ids[0]), "--store", store.url]) == 0
    assert store.active_version().id == ids[0]
    assert main(["rollback", "999", "--store", store.url]) == 2


def test_serve_retrains_on_its_schedule(store, root, capsys):
    first = active(store, "itemknn", root)
    key = store.create_api_key("reader", ["read"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "recengine.cli", "serve", "--store", store.url, "--port",
                               str(port), "--retrain-every", "0.5", "--models-root", str(root), "--log-level",
                               "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                try:
                    version = http.get("/v1/model").json()["source"]["version"]
                except httpx.TransportError:
                    version = None
                if version is not None and version != first.version.id:
                    break
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGINT)
        output = server.communicate(timeout=30)[0]
    assert server.returncode == 0 and "retraining every 0.5 s" in output, output
    assert store.version(version).status in ("active", "ready")  # a later scheduled run may have followed
