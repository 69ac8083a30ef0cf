"""Assignment: a hash of (salt, user) into buckets owned by variants: deterministic, sticky across restarts and
share changes, independent across experiments, and definitions that cannot run are refused saying why."""

import re

import numpy as np
import pytest
from scipy import stats

from recengine.errors import ConfigError
from recengine.serving.experiments import HOLDOUT, Experiments
from recengine.store import Store

USERS = [f"user{k}" for k in range(20_000)]


def variants(*shares):
    return [{"name": name, "share": share} for name, share in zip("abc", shares, strict=False)]


def assigned(experiments: Experiments, name: str) -> np.ndarray:
    experiment = experiments.get(name)
    return np.asarray([HOLDOUT if (v := experiment.assign(u)) is None else v.name for u in USERS])


@pytest.fixture()
def store(store_url):
    with Store.open(store_url) as opened:
        yield opened


def test_assignment_is_deterministic_sticky_and_independent(store):
    experiments = Experiments(store)
    experiments.create("first", variants(0.5, 0.5), surface="home", holdout=0.1)
    experiments.create("second", variants(0.5, 0.5), surface="search")
    first, second = assigned(experiments, "first"), assigned(experiments, "second")
    # Sticky: the same users in the same groups when read back from the store (a restart).
    reread = Experiments(store)
    np.testing.assert_array_equal(assigned(reread, "first"), first)
    # The design's shares, within sampling error.
    assert np.mean(first == HOLDOUT) == pytest.approx(0.1, abs=0.01)
    assert np.mean(first == "a") == pytest.approx(0.45, abs=0.02)
    # Independent across experiments: a user's group in one says nothing about the other.
    table = np.array([[np.sum((first == f) & (second == s)) for s in ("a", "b")] for f in ("a", "b", HOLDOUT)])
    assert stats.chi2_contingency(table).pvalue > 1e-6  # the salts are random: a test at 1e-3 fails one run in 1,000


def test_changing_shares_moves_only_users_of_shrinking_variants(store):
    experiments = Experiments(store)
    experiments.create("grow", variants(0.5, 0.3, 0.2), holdout=0.05)
    before = assigned(experiments, "grow")
    experiments.reshare("grow", {"a": 0.3, "b": 0.3, "c": 0.4})
    after = assigned(Experiments(store), "grow")  # as a restarted service reads it
    moved = before != after
    # Only a shrank; only c grew: every move is a -> c, b and c and the holdout keep all their users.
    assert set(zip(before[moved], after[moved], strict=True)) == {("a", "c")}
    assert np.mean(moved) == pytest.approx(0.2 * 0.95, abs=0.015)
    # Back again: c gives back buckets, nobody else moves.
    experiments.reshare("grow", {"a": 0.5, "b": 0.3, "c": 0.2})
    again = assigned(experiments, "grow")
    assert set(zip(after[again != after], again[again != after], strict=True)) == {("c", "a")}


@pytest.mark.parametrize(("change", "message"), [
    ({"variants": variants(0.5, 0.4)}, "they sum to 0.9"),
    ({"variants": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "model_version": 99}]},
     "unknown model version 99"),
    ({"primary_metric": "view"}, "'view' is not an outcome event type"),
    ({"variants": variants(1.0)}, "at least two variants"),
    ({"variants": [{"name": "holdout", "share": 0.5}, {"name": "b", "share": 0.5}]}, "not 'holdout'"),
    ({"holdout": 1.0}, "holdout must be a share in [0, 1)"),
    ({"allocation": "greedy"}, "allocation must be one of fixed, bandit"),
])
def test_definitions_that_cannot_run_are_refused(store, change, message):
    spec = {"variants": variants(0.5, 0.5)} | change
    with pytest.raises(ConfigError, match=re.escape(message)):
        Experiments(store).create("bad", spec.pop("variants"), **spec)
    assert store.experiments() == []


def test_overlapping_experiments_on_a_surface_are_refused(store):
    experiments = Experiments(store)
    experiments.create("running", variants(0.5, 0.5), surface="home")
    with pytest.raises(ConfigError, match="experiment 'running' runs on surface 'home' at the same time"):
        experiments.create("clash", variants(0.5, 0.5), surface="home")
    experiments.create("elsewhere", variants(0.5, 0.5), surface="search")
    experiments.stop("running")
    experiments.create("after", variants(0.5, 0.5), surface="home")  # once the first stopped
    assert [e.name for e in experiments.all()] == ["running", "elsewhere", "after"]


def test_the_cli_defines_lists_and_stops_experiments_a_service_reads(store, store_url, capsys):
    from recengine.cli import main

    serving = Experiments(store)  # as a running service holds them
    assert main(["experiment", "create", "promo", "--variant", "control=0.5", "--variant",
                 "varied=0.5,diversity=0.3", "--holdout", "0.1", "--surface", "home", "--store", store_url]) == 0
    assert main(["experiment", "create", "bad", "--variant", "a=0.5", "--variant", "b=0.6", "--surface", "x",
                 "--store", store_url]) != 0
    assert "they sum to 1.1" in capsys.readouterr().err
    serving.reload()  # what the service does every few seconds
    assert [(v.name, v.share, v.diversity) for v in serving.get("promo").variants] == \
        [("control", 0.5, None), ("varied", 0.5, 0.3)]
    assert main(["experiment", "list", "--store", store_url]) == 0 and "promo" in capsys.readouterr().out
    assert main(["experiment", "stop", "promo", "--store", store_url]) == 0
    serving.reload()
    assert serving.get("promo").stops_at is not None
