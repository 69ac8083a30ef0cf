"""Hyper-parameter search with Optuna on a validation split (in memory, or a study shared by many worker
processes through a database), and automatic model selection."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import inspect
import multiprocessing
import os
import re
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import url as sa_url

from recengine.data.split import Split
from recengine.errors import ConfigError, RecengineError
from recengine.evaluation.evaluate import Report, fit_and_evaluate, lower_is_better, metric_cutoff
from recengine.models.registry import create_model, get_model_class


@dataclass
class TuneResult:
    model: str
    metric: str
    best_params: dict[str, Any]
    best_value: float
    trials: pd.DataFrame = field(repr=False)
    seconds: float = 0.0
    study_name: str = ""


def metric_value(report: Report, metric: str) -> float:
    """The mean of `metric` (e.g. "ndcg@20", "rmse") in an evaluation report."""
    if metric not in report.metrics:
        raise ConfigError(f"metric {metric!r} is not in the report; available: {sorted(report.metrics)}")
    return float(report.metrics[metric])


def _ks_for(metric: str) -> tuple[int, ...]:
    """Evaluate only at the metric's own cut-off (checked before any fitting)."""
    k = metric_cutoff(metric)
    return (k,) if k else (10,)


def suggest(trial: optuna.Trial, model_name: str) -> dict[str, Any]:
    """Draw one configuration from the model's declared search space.

    Entries are (kind, low, high) with kind "int"/"float" (linear) or "log" (log scale), or ("cat", choices);
    a parameter whose default is an int is searched over integers.
    """
    model_cls = get_model_class(model_name)
    defaults = {p.name: p.default for p in inspect.signature(model_cls.__init__).parameters.values()}
    params: dict[str, Any] = {}
    for name, spec in model_cls.search_space.items():
        kind = spec[0]
        if kind == "cat":
            params[name] = trial.suggest_categorical(name, list(spec[1]))
        elif kind in ("int", "float", "log"):
            low, high = spec[1], spec[2]
            integer = isinstance(defaults.get(name), int) and not isinstance(defaults.get(name), bool)
            log = kind == "log"
            params[name] = (trial.suggest_int(name, int(low), int(high), log=log) if integer
                            else trial.suggest_float(name, float(low), float(high), log=log))
        else:
            raise ConfigError(f"{model_name}.search_space[{name!r}]: unknown kind {kind!r}")
    return params


def tune(
    model_name: str,
    split: Split,
    *,
    metric: str = "ndcg@20",
    n_trials: int = 30,
    timeout: float | None = None,
    fixed_params: dict[str, Any] | None = None,
    random_state: int = 42,
    storage: str | None = None,
    study_name: str | None = None,
    n_workers: int = 1,
) -> TuneResult:
    """Search the model's hyper-parameters on `split` (a validation split: never the test split).

    Without `storage` the study lives in this process's memory. With `storage`, an SQLAlchemy URL
    (postgresql+psycopg://USER:PASSWORD@HOST/DB, or sqlite:///FILE for one machine), the study (`study_name`,
    default MODEL-METRIC) is shared: a call with the same URL, name, model, metric and data — from any machine —
    joins it, and `n_trials` is the study's total across all its workers (a larger total than the study's adds
    trials; a smaller one adds none). `n_workers` > 1 runs that many worker processes here; they need a storage.
    Each worker seeds its sampler with random_state plus the number of the first trial it takes; the storage hands
    out each number once, so no two workers propose the same points. The result is read from the shared study.
    """
    model_cls = get_model_class(model_name)
    if not model_cls.search_space:
        raise ConfigError(f"{model_name} declares no search space to tune")
    for name, value in (("n_trials", n_trials), ("n_workers", n_workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    if n_workers > 1 and storage is None:
        # A temporary SQLite file would hide where the study lives, and a second machine could never join it.
        raise ConfigError(f"{n_workers} workers need a storage they share: give storage (--storage URL), e.g. "
                          "sqlite:///tuning.db on one machine or postgresql+psycopg://USER:PASSWORD@HOST/DB")
    fixed = dict(fixed_params or {})
    ks = _ks_for(metric)
    direction = "minimize" if lower_is_better(metric) else "maximize"
    job = _Job(model_name, split, metric, ks, fixed, random_state, None if timeout is None else time.time() + timeout)
    name = study_name or default_study_name(model_name, metric)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    opened = open_storage(storage)
    start = time.perf_counter()
    identity = {"model": model_name, "metric": metric, "data": _describe(split), "fixed_params": fixed}
    # Start from the shipped defaults, so tuning can only report something at least as good.
    defaults = {k: v for k, v in model_cls().get_params().items() if k in model_cls.search_space}
    _prepare_study(opened, name, identity, direction, n_trials, defaults, storage)
    _run_workers(opened, storage, name, job, n_workers)

    study = optuna.load_study(study_name=name, storage=opened)
    trials = study.trials_dataframe(attrs=("number", "value", "params", "duration", "state", "user_attrs"))
    trials = trials[trials["state"].isin([s.name for s in _FINISHED])].reset_index(drop=True)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(f"no trial of {model_name} completed in study {name!r}"
                          + (f" (the {timeout:g}s budget ran out first)" if timeout is not None else ""))
    return TuneResult(model_name, metric, {**study.best_params, **fixed}, float(study.best_value), trials,
                      time.perf_counter() - start, name)


#: Trial states that end a trial; a WAITING trial is budget not yet taken, a RUNNING one is in progress.
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
#: The study user attribute that names what the study tunes (and its total budget), checked by every joiner.
_IDENTITY_ATTR = "recengine"


@dataclass(frozen=True)
class _Job:
    """What every worker needs to run trials (pickled to worker processes)."""

    model_name: str
    split: Split
    metric: str
    ks: tuple[int, ...]
    fixed: dict[str, Any]
    random_state: int
    deadline: float | None  # time.time() after which no new trial starts (a wall clock all processes share)

    def objective(self, trial: optuna.Trial) -> float:
        params = {**suggest(trial, self.model_name), **self.fixed}
        try:
            report = fit_and_evaluate(create_model(self.model_name, **params), self.split, ks=self.ks)
        except ConfigError as error:  # e.g. a regularization too weak for this data: skip that corner
            raise optuna.TrialPruned(str(error)) from error
        return metric_value(report, self.metric)


def default_study_name(model_name: str, metric: str) -> str:
    return f"{model_name}-{metric}"


def redact_url(url: str) -> str:
    """A storage URL as it may be shown: the password replaced by ***."""
    return re.sub(r"(//[^/:@]*:)[^@/]*@", r"\1***@", url)


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """The Optuna storage at `url` (an SQLAlchemy URL), or a fresh in-memory one for None."""
    if url is None:
        return optuna.storages.InMemoryStorage()
    try:
        return optuna.storages.RDBStorage(url)
    except (sa_exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError, ValueError) as error:
        reason = redact_url(str(error).splitlines()[0] if str(error) else type(error).__name__)
        raise ConfigError(f"cannot open the tuning storage {redact_url(url)}: {reason}. Give an SQLAlchemy URL this "
                          "machine can reach, e.g. sqlite:///tuning.db or postgresql+psycopg://USER:PASSWORD@HOST/DB"
                          ) from None


def _describe(split: Split) -> str:
    """The split as a joiner must have it too: its sizes, and a digest of the train and held-out interactions."""
    digest = hashlib.sha256()
    for matrix in (split.train.matrix(), split.truth):
        digest.update(matrix.indptr.tobytes())
        digest.update(matrix.indices.tobytes())
    train = split.train
    return (f"{train.name}: {train.n_users} users, {train.n_items} items, {train.n_interactions} train "
            f"interactions, {split.n_users} evaluated users (sha256 {digest.hexdigest()[:12]})")


def _prepare_study(storage: optuna.storages.BaseStorage, name: str, identity: dict[str, Any], direction: str,
                   n_trials: int, defaults: dict[str, Any], url: str | None) -> None:
    """Create the study with its budget, or join it: check it tunes the same thing and raise its budget if asked.

    The budget is held as WAITING trials, which workers take one at a time (the storage lets only one take each),
    so the study ends with exactly its total however many workers share it. Raise a study's total from one
    machine at a time: two raising it at once would both add the difference.
    """
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=direction)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        stored = _wait_for_identity(study, name, url)
        differs = [f"{key} {stored.get(key)!r} (this run: {value!r})" for key, value in identity.items()
                   if stored.get(key) != value]
        if study.direction.name.lower() != direction:
            differs.append(f"direction {study.direction.name.lower()} (this run: {direction})")
        if differs:
            raise ConfigError(f"study {name!r} in {redact_url(url or '')} tunes something else — "
                              f"{'; '.join(differs)}. Give another study name (--study), or the same model, "
                              "metric and data to join it") from None
        added = n_trials - stored["n_trials"]
        if added > 0:
            study.set_user_attr(_IDENTITY_ATTR, {**stored, "n_trials": n_trials})
    else:
        study.set_user_attr(_IDENTITY_ATTR, {**identity, "n_trials": n_trials})
        study.enqueue_trial(defaults)
        added = n_trials - 1
    for _ in range(added):
        study.enqueue_trial({})  # no fixed parameters: the worker's sampler chooses them all


def _wait_for_identity(study: optuna.Study, name: str, url: str | None, patience: float = 3.0) -> dict[str, Any]:
    """The joined study's identity, waiting a moment for a creator that has yet to write it."""
    give_up = time.monotonic() + patience
    while (stored := study.user_attrs.get(_IDENTITY_ATTR)) is None and time.monotonic() < give_up:
        time.sleep(0.2)
    if stored is None:
        raise ConfigError(f"study {name!r} in {redact_url(url or '')} was not created by recengine tune "
                          "(it has no model, metric and budget attributes): give another study name (--study)")
    return stored


def _run_workers(storage: optuna.storages.BaseStorage, url: str | None, name: str, job: _Job,
                 n_workers: int) -> None:
    """Run the study's trials here, or in n_workers spawned processes that take them from the shared study.

    Every worker is a fresh process (spawn: no forked threads, locks or database connections), so all of them
    start alike and share the work evenly; this process waits for them.
    """
    if n_workers == 1:
        _work(storage, url, name, job)
        return
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_worker_process, args=(url, name, job), daemon=True)
               for _ in range(n_workers)]
    try:
        for process in workers:
            process.start()
        for process in workers:
            process.join()
    finally:  # interrupted: Ctrl-C reaches the workers too; give each a moment to mark its running trial failed
        for process in workers:
            if process.is_alive():
                process.join(timeout=10)
                process.terminate()
    failed = [process.exitcode for process in workers if process.exitcode != 0]
    if failed:
        raise RecengineError(f"{len(failed)} of {n_workers} tuning workers failed (exit codes {failed}); "
                             "their errors are printed above")


def _worker_process(url: str, name: str, job: _Job) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        _work(open_storage(url), url, name, job)
    except RecengineError as error:
        print(f"error: tuning worker {os.getpid()}: {error}", file=sys.stderr)
        sys.exit(2)


def _work(storage: optuna.storages.BaseStorage, url: str | None, name: str, job: _Job) -> None:
    """Take the study's waiting trials one at a time and run them, until none is left or the deadline passes."""
    study = optuna.load_study(study_name=name, storage=storage)
    # Claims go through the storage the study reads and writes with (Optuna wraps an RDB storage in a cache).
    claims = study._storage
    study_id = claims.get_study_id_from_name(name)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    seeded = False
    while job.deadline is None or time.time() < job.deadline:
        with _claims_lock(url):
            trial_id = _take(claims, study_id)
        if trial_id is None:
            break
        if not seeded:  # by the first trial's number, which the storage gives no other worker
            study.sampler = optuna.samplers.TPESampler(
                seed=job.random_state + claims.get_trial_number_from_id(trial_id))
            seeded = True
        trial = optuna.Trial(study, trial_id)
        trial.set_user_attr("worker", worker)
        try:
            value = job.objective(trial)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
        except BaseException:  # interrupted or broken: mark the trial failed rather than leave it running
            study.tell(trial, state=TrialState.FAIL)
            raise
        else:
            study.tell(trial, value)


def _take(storage: optuna.storages.BaseStorage, study_id: int) -> int | None:
    """Claim one waiting trial of the study for this worker; None when every one is taken."""
    for waiting in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
        try:
            if storage.set_trial_state_values(trial_id, TrialState.RUNNING):  # False: another worker got it first
                return trial_id
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
    return None


@contextlib.contextmanager
def _claims_lock(url: str | None) -> Iterator[None]:
    """Serialize claims on an SQLite file between this machine's processes.

    A claim reads a trial's state and updates it; PostgreSQL locks the row in between (SELECT ... FOR UPDATE),
    SQLite ignores that, so two workers could both take one trial. SQLite studies are local files, so a file
    lock beside the database closes the gap.
    """
    database = sa_url.make_url(url).database if url and url.startswith("sqlite") else None
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.claims.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes
        yield


def select_model(candidates: list[str], split: Split, *, metric: str = "ndcg@20") -> tuple[str, pd.DataFrame]:
    """Fit each candidate with its defaults on `split` (validation) and return the best name and the table."""
    rows = []
    for name in candidates:
        report = fit_and_evaluate(create_model(name), split, ks=_ks_for(metric))
        rows.append({"model": name, metric: metric_value(report, metric),
                     "fit_seconds": report.timings.get("fit_seconds")})
    table = pd.DataFrame(rows).sort_values(metric, ascending=lower_is_better(metric), ignore_index=True)
    return str(table.loc[0, "model"]), table
