"""A bandit experiment: Thompson sampling over the variants, its posterior moved by a posted click within a second,
kept in the store and read back by a restarted service; it sends traffic to the variant that earns clicks."""

import time

import numpy as np
import pandas as pd

from recengine.serving import Settings
from recengine.serving.experiments import HOLDOUT
from recengine.serving.service import Service

VARIANTS = [{"name": "plain", "share": 0.5}, {"name": "varied", "share": 0.5, "diversity": 0.9}]


def open_service(store_url, model_dir) -> Service:
    return Service.open(Settings(store=store_url, model_dir=str(model_dir)))


def test_a_click_moves_the_posterior_within_a_second_and_it_survives_a_restart(client, keys, store_url, model_dir):
    created = client.post("/v1/experiments", headers=keys["admin"], json={
        "name": "auto", "variants": VARIANTS, "allocation": "bandit", "primary_metric": "click"})
    assert created.status_code == 201, created.text
    assert created.json()["posterior"] == {v["name"]: {"successes": 0.0, "failures": 0.0, "mean": 0.5}
                                           for v in VARIANTS}
    response = client.get("/v1/users/x/recommendations", params={"k": 3}, headers=keys["read"])
    variant, request_id = response.headers["X-Variant"], response.headers["X-Request-Id"]
    shown = client.get("/v1/experiments/auto", headers=keys["read"]).json()["posterior"][variant]
    assert shown["failures"] == 1.0  # a pull without a reward, until an outcome says otherwise

    started = time.perf_counter()
    posted = client.post("/v1/events", headers=keys["write"], json={"events": [
        {"user": "x", "item": response.json()["items"][0]["item"], "event": "click", "request_id": request_id}]})
    posterior = client.get("/v1/experiments/auto", headers=keys["read"]).json()["posterior"]
    elapsed = time.perf_counter() - started
    assert posted.status_code == 201 and elapsed < 1.0
    assert posterior[variant] == {"successes": 1.0, "failures": 0.0, "mean": 2 / 3}
    # A second click on the same slate is not a second success; one without a request id is attributed by window.
    client.post("/v1/events", headers=keys["write"], json={"events": [
        {"user": "x", "item": response.json()["items"][1]["item"], "event": "click", "request_id": request_id},
        {"user": "x", "item": response.json()["items"][2]["item"], "event": "click"}]})
    service = client.app.state.service
    assert service.experiments.posterior("auto")[variant]["successes"] == 1.0
    before = service.experiments.posterior("auto")
    service.impressions.flush()

    restarted = open_service(store_url, model_dir)  # a second process on the same store, as after a restart
    try:
        assert restarted.experiments.posterior("auto") == before
    finally:
        restarted.close()


def test_traffic_goes_to_the_variant_that_earns_clicks(store_url, model_dir):
    service = open_service(store_url, model_dir)
    try:
        service.experiments.create("auto", VARIANTS, allocation="bandit", holdout=0.1)
        rng = np.random.default_rng(0)
        chosen, clicks = [], []
        for n in range(160):
            shown = service.recommend(f"visitor{n}", 3)
            chosen.append(shown.variant)
            if shown.variant != HOLDOUT and rng.random() < (0.6 if shown.variant == "varied" else 0.05):
                clicks.append(shown)
            if n % 8 == 7 and clicks:  # outcomes arrive in small batches, as from a client's queue
                service.add_events(pd.DataFrame({
                    "user": [c.user for c in clicks], "item": [c.items[0].item for c in clicks],
                    "timestamp": int(time.time()), "event": "click", "request_id": [c.request_id for c in clicks]}))
                clicks = []
        late = np.asarray(chosen[80:])
        late = late[late != HOLDOUT]
        assert np.mean(late == "varied") > 0.8
        assert HOLDOUT in chosen  # the holdout stays by hash, outside the bandit
        service.impressions.flush()
        logged = service.store.impressions(experiment="auto").drop_duplicates("request_id")
        bandit = logged[logged["variant"] != HOLDOUT]["variant_propensity"]
        assert ((bandit > 0) & (bandit <= 1)).all() and bandit.nunique() > 1  # the choice probabilities
    finally:
        service.close()

