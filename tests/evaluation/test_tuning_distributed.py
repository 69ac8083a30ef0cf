"""Tuning shared through a database: worker processes and later joiners fill one study up to its total, and
wrong studies or storages are refused. Runs over an SQLite file and, when RECENGINE_TEST_POSTGRES_URL is set,
PostgreSQL (as the store's tests)."""

import json
import os
import uuid

import optuna
import pytest

from recengine.cli import main
from recengine.data.sources import load_events_file
from recengine.data.splits import split, validation_split
from recengine.errors import ConfigError
from recengine.evaluation.tuning import redact_url, tune
from recengine.models.itemknn import ItemKNN
from recengine.testing import contract_dataset

POSTGRES_URL = os.environ.get("RECENGINE_TEST_POSTGRES_URL")
TRIALS = 6
#: Every study this module makes is named PREFIX…, so that only those are deleted from the PostgreSQL database.
PREFIX = f"test-{uuid.uuid4().hex[:8]}-"


def run(*argv) -> int:
    return main([str(a) for a in argv])


def study_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """Every trial the storage holds for the study, in any state (waiting ones included)."""
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


@pytest.fixture(scope="module")
def events_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("tuning") / "events.csv"
    contract_dataset().to_frame()[["user", "item", "timestamp", "rating"]].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def storage(request, tmp_path_factory):
    """A storage URL; the studies the tests made there are deleted afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('storage') / 'studies.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tuning tests are off: set RECENGINE_TEST_POSTGRES_URL=postgresql+psycopg://USER:"
                    "PASSWORD@HOST/DB (.ci/run starts a server and sets it)")
    yield POSTGRES_URL
    for summary in optuna.get_all_study_summaries(POSTGRES_URL, include_best_trial=False):
        if summary.study_name.startswith(PREFIX):
            optuna.delete_study(study_name=summary.study_name, storage=POSTGRES_URL)


@pytest.fixture(scope="module")
def shared_study(storage, events_csv, tmp_path_factory):
    """A study filled by `recengine tune ... --workers 2`: (storage URL, study name, the CLI's JSON output)."""
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    out = tmp_path_factory.mktemp("out") / "best.json"
    assert run("tune", "itemknn", "--events", events_csv, "--trials", TRIALS, "--storage", storage,
               "--study", name, "--workers", 2, "--out", out) == 0
    return storage, name, json.loads(out.read_text())


@pytest.fixture(scope="module")
def validation(events_csv):
    return validation_split(split(load_events_file(str(events_csv)), "temporal-user", random_state=42),
                            random_state=42)


def test_two_workers_share_exactly_the_requested_total(shared_study):
    url, name, best = shared_study
    trials = study_trials(url, name)
    assert len(trials) == TRIALS
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2 and str(os.getpid()) not in {w.rsplit(":", 1)[1] for w in workers}
    assert best["value"] == max(t.value for t in trials)
    assert set(best["params"]) == set(ItemKNN.search_space)
    # Trial 0 holds the shipped defaults; distinct worker seeds keep the sampled points apart.
    assert trials[0].params == {k: v for k, v in ItemKNN().get_params().items() if k in ItemKNN.search_space}
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == TRIALS


def test_joining_adds_trials_up_to_the_new_total(storage, validation):
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    first = tune("popular", validation, n_trials=2, storage=storage, study_name=name)
    joined = tune("popular", validation, n_trials=4, storage=storage, study_name=name)
    assert len(first.trials) == 2 and len(joined.trials) == 4 and len(study_trials(storage, name)) == 4
    assert joined.trials["value"][:2].tolist() == first.trials["value"].tolist()
    assert joined.best_value == max(joined.trials["value"])
    again = tune("popular", validation, n_trials=3, storage=storage, study_name=name)  # total already met
    assert len(again.trials) == 4 and again.best_value == joined.best_value


@pytest.mark.parametrize("argv, differs", [
    (["popular"], "model 'itemknn' (this run: 'popular')"),
    (["itemknn", "--metric", "recall@10"], "metric 'ndcg@20' (this run: 'recall@10')"),
    (["itemknn", "--protocol", "loo"], "data "),
])
def test_a_study_of_something_else_is_refused(shared_study, events_csv, capsys, argv, differs):
    url, name, _ = shared_study
    capsys.readouterr()
    assert run("tune", *argv, "--events", events_csv, "--trials", TRIALS + 2, "--storage", url,
               "--study", name) == 2
    message = capsys.readouterr().err
    assert "tunes something else" in message and differs in message
    assert len(study_trials(url, name)) == TRIALS


def test_a_study_not_made_by_tune_is_refused(storage, validation):
    name = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    optuna.create_study(storage=storage, study_name=name, direction="maximize")
    with pytest.raises(ConfigError, match="not created by recengine tune"):
        tune("popular", validation, n_trials=2, storage=storage, study_name=name)


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg://recengine:s3cret@localhost:1/nowhere", "postgresql+psycopg://recengine:***@localhost:1"),
    ("no-such-scheme", "no-such-scheme"),
    ("sqlite:////no/such/folder/studies.db", "sqlite:////no/such/folder/studies.db"),
])
def test_an_unusable_storage_is_named_without_its_password(events_csv, capsys, url, shown):
    assert run("tune", "popular", "--events", events_csv, "--trials", 2, "--storage", url) == 2
    message = capsys.readouterr().err
    assert "cannot open the tuning storage" in message and shown in message and "s3cret" not in message


def test_workers_without_a_storage_and_bad_counts_are_refused(validation):
    with pytest.raises(ConfigError, match="need a storage they share"):
        tune("popular", validation, n_trials=4, n_workers=2)
    for bad in ({"n_workers": 0}, {"n_trials": 0}, {"n_workers": 1.5}):
        with pytest.raises(ConfigError, match="must be a positive integer"):
            tune("popular", validation, **bad)


def test_redact_url_hides_only_the_password():
    assert redact_url("postgresql://u:p%40ss@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert redact_url("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact_url("sqlite:///a/b.db") == "sqlite:///a/b.db"
