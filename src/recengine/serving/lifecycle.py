"""Model lifecycle: train a version from the store, promote it only if it is not worse, roll back, retrain in the
background.

A version is registered as training, then trained from one snapshot of the store: evaluated on a
global-temporal split of that snapshot (fit on the part before the cut, NDCG@20, Recall@20 and coverage@20 on
the part after it), then fitted on the whole snapshot and saved to models_root/<version id> (written aside and
renamed, so the directory is complete or absent). Only then does it become ready, with its metrics and artifact
path: a training or failed version has no artifact path, so nothing can load it, and a process killed mid-way
leaves a version that stays training and is never served.

Promotion is a fair comparison on one split: the active version's configuration (model name and parameters) is
refitted on the candidate's split and evaluated on the same test events. Comparing with the metrics the active
version was given when it was trained would compare different test periods (the store has grown since), and
evaluating its trained artifact on the new split would not be fair either: it was fitted on events that are now
test events. A refit costs one more training on the train part; when the candidate has the very configuration of
the active version (a scheduled retrain on fresh data), the two would be the same fit, so it is skipped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from recengine.data.split import Split
from recengine.data.splits import split as make_split
from recengine.errors import ConfigError, RecengineError
from recengine.evaluation.evaluate import evaluate, fit_and_evaluate
from recengine.models.base import Recommender
from recengine.models.registry import create_model
from recengine.serving.service import Service
from recengine.store import ModelVersion, Store
from recengine.trained import TrainedModel

logger = logging.getLogger(__name__)

#: The cut-off of every lifecycle metric; the metrics each version is given.
K = 20
METRICS = (f"ndcg@{K}", f"recall@{K}", f"coverage@{K}")
#: The newest share of the snapshot's events held out for the evaluation.
TEST_FRACTION = 0.2
#: A candidate may score this much lower (relative) than the active version and still be promoted: a retrain on
#: a few more events moves NDCG by about this much from noise alone, and refusing it would freeze the model.
DEFAULT_TOLERANCE = 0.01


@dataclass
class TrainedVersion:
    """A version that finished training: its store record, the model fitted on the whole snapshot, and the split
    it was evaluated on (promote_if_not_worse evaluates the active configuration on the same one)."""

    version: ModelVersion
    trained: TrainedModel
    split: Split


@dataclass(frozen=True)
class Decision:
    """Whether a candidate was promoted, and the numbers it was decided on (champion: the active version's
    configuration on the candidate's split; None when there was no active version)."""

    version: int
    promoted: bool
    metric: str
    candidate: float
    champion: float | None
    champion_version: int | None
    tolerance: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_models_root(store_url: str) -> Path:
    """Where versions are saved when no directory is given: beside a SQLite file (demo.db → demo-models/), else
    recengine-models/ in the working directory."""
    url = sa.make_url(store_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        db = Path(url.database).resolve()
        return db.with_name(f"{db.stem}-models")
    return Path("recengine-models").resolve()


def register_version(store: Store, model_name: str, params: dict[str, Any] | None = None) -> ModelVersion:
    """Record a version as training. The model is built first, so an unknown model or parameter name is a
    ConfigError here, not a failed version; it is recorded with all its parameters, defaults included."""
    model = create_model(model_name, **(params or {}))
    return store.register_model_version(model_name, model.get_params())


def train_version(store: Store, model_name: str, params: dict[str, Any] | None, models_root: str | Path, *,
                  version: ModelVersion | None = None) -> TrainedVersion:
    """Train a version from a snapshot of the store (see the module docstring); returns it ready. version: one
    register_version recorded already (the Retrainer registers on trigger, to answer with its id at once).

    Any failure, an interruption included, marks the version failed with the error's message and re-raises; the
    active version is never touched here."""
    version = version or register_version(store, model_name, params)
    try:
        snapshot = store.snapshot()
        test_split = make_split(snapshot, "global-temporal", test_fraction=TEST_FRACTION)
        report = fit_and_evaluate(create_model(version.name, **version.params), test_split, ks=(K,),
                                  metrics=[m.split("@")[0] for m in METRICS])
        trained = TrainedModel.fit(create_model(version.name, **version.params), snapshot)
        path = Path(models_root).resolve() / str(version.id)
        trained.save(path)
        metrics = {**{m: float(report.metrics[m]) for m in METRICS},
                   "evaluation": {"protocol": "global-temporal", "cut": int(test_split.info["cut"]),
                                  "test_fraction": TEST_FRACTION, "users": report.n_users,
                                  "train_events": test_split.train.n_interactions,
                                  "test_events": test_split.test.n_interactions},
                   "trained_on": {"events": snapshot.n_interactions, "users": snapshot.n_users,
                                  "items": snapshot.n_items},
                   "fit_seconds": trained.info["fit_seconds"]}
        ready = store.set_status(version.id, "ready", metrics=metrics, artifact_path=str(path))
    except BaseException as error:
        message = str(error) or type(error).__name__
        store.set_status(version.id, "failed", metrics={"error": message})
        logger.warning("model version %d (%s) failed: %s", version.id, version.name, message)
        raise
    logger.info("model version %d (%s) ready: %s", ready.id, ready.name,
                ", ".join(f"{m}={metrics[m]:.4f}" for m in METRICS))
    return TrainedVersion(ready, trained, test_split)


def promote_if_not_worse(store: Store, candidate: TrainedVersion, metric: str = METRICS[0],
                         tolerance: float = DEFAULT_TOLERANCE) -> Decision:
    """Make the candidate the active version if its metric is not worse than the active version's configuration
    on the candidate's split (refitted there: see the module docstring), allowing `tolerance` (relative). The
    active version before it becomes ready. Returns the decision with both numbers."""
    if metric not in METRICS:
        raise ConfigError(f"promotion compares one of {', '.join(METRICS)}, not {metric!r}")
    if not 0 <= tolerance < 1:
        raise ConfigError(f"tolerance is a relative margin in [0, 1), got {tolerance}")
    version = candidate.version
    value = float(version.metrics[metric])
    active = store.active_version()

    def decide(promoted: bool, champion: float | None, reason: str) -> Decision:
        if promoted:
            store.set_status(version.id, "active")
        decision = Decision(version.id, promoted, metric, value, champion, active and active.id, tolerance,
                            reason)
        logger.info("model version %d %s: %s", version.id, "promoted" if promoted else "not promoted", reason)
        return decision

    if active is None:
        return decide(True, None, "there is no active version")
    if (active.name, active.params) == (version.name, version.params):
        champion = value  # the same configuration on the same split: the same fit
    else:
        model: Recommender = create_model(active.name, **active.params)
        model.fit(candidate.split.train)
        champion = float(evaluate(model, candidate.split, ks=(K,), metrics=[metric.split("@")[0]]).metrics[metric])
    bound = champion * (1 - tolerance)  # every lifecycle metric is higher-is-better
    not_worse = value >= bound
    reason = (f"{metric} {value:.4f} against {champion:.4f} for version {active.id} ({active.name}) on the same "
              f"split; {'at or above' if not_worse else 'below'} the bound {bound:.4f} ({tolerance:.0%} tolerance)")
    return decide(not_worse, champion, reason)


def rollback(store: Store, version_id: int) -> tuple[ModelVersion, TrainedModel]:
    """Make an earlier (ready) version active again; the active one becomes ready. Its artifact is loaded first,
    so a version whose directory is gone or damaged is refused and nothing changes. Returns the version and its
    model (for Service.swap)."""
    version = store.version(version_id)
    if version.status != "ready" or not version.artifact_path:
        raise ConfigError(f"model version {version_id} is {version.status}; only a ready version (trained, with "
                          f"an artifact) can be activated")
    trained = TrainedModel.load(version.artifact_path)
    return store.set_status(version_id, "active"), trained


def source_of(version: ModelVersion) -> dict[str, Any]:
    """What Service.model_info reports as the model's source, as Service.open sets it."""
    return {"model_dir": version.artifact_path, "version": version.id}


@dataclass
class Job:
    """One retraining: its version (registered as training when it was asked for), then the outcome. done is set
    when it finished, one way or the other."""

    version: ModelVersion
    done: threading.Event = field(default_factory=threading.Event)
    decision: Decision | None = None
    error: str | None = None


class Retrainer:
    """Retrains in a background thread, every `interval` seconds (None: only when triggered) and on trigger():
    train → promote_if_not_worse → on promotion, service.swap, so requests switch to the new model atomically. A
    training that fails or crashes leaves the serving model as it was.

    model, params: what to train; by default the configuration of the model being served at that moment."""

    def __init__(self, service: Service, models_root: str | Path, *, model: str | None = None,
                 params: dict[str, Any] | None = None, interval: float | None = None, metric: str = METRICS[0],
                 tolerance: float = DEFAULT_TOLERANCE):
        if interval is not None and interval <= 0:
            raise ConfigError(f"the retraining interval must be a positive number of seconds, got {interval}")
        self.service = service
        self.models_root = Path(models_root)
        self.model, self.params = model, dict(params or {})
        self.interval, self.metric, self.tolerance = interval, metric, tolerance
        #: The latest job, finished or not.
        self.last: Job | None = None
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="recengine-retrainer", daemon=True)
        # Promotions and activations both change the active version and then swap: one at a time, so the store's
        # active version and the served one end up the same.
        self._switch = threading.Lock()

    def start(self) -> Retrainer:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop after the running job (a fit cannot be interrupted); queued jobs are marked failed."""
        self._stop.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def trigger(self, model: str | None = None, params: dict[str, Any] | None = None) -> Job:
        """Queue a retraining now; returns its job, whose version is already registered (status training)."""
        if self._stop.is_set():
            raise ConfigError("the retrainer is stopped")
        job = self._register(model, params)
        self._queue.put(job)
        return job

    def activate(self, version_id: int) -> ModelVersion:
        """Roll back to (or activate) a ready version and serve it."""
        with self._switch:
            version, trained = rollback(self.service.store, version_id)
            self.service.swap(trained, source_of(version))
        return version

    def _register(self, model: str | None, params: dict[str, Any] | None) -> Job:
        if model is None:
            if self.model is not None:
                model, base = self.model, self.params
            else:
                info = self.service.model_info()
                model, base = str(info["model"]), {**info.get("params", {}), **self.params}
            params = {**base, **(params or {})}
        job = Job(register_version(self.service.store, model, params))
        self.last = job
        return job

    def _work(self) -> None:
        due = None if self.interval is None else time.monotonic() + self.interval
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=None if due is None else max(0.0, due - time.monotonic()))
            except queue.Empty:  # the schedule is due
                due = time.monotonic() + (self.interval or 0)
                try:
                    job = self._register(None, None)
                except RecengineError as error:
                    logger.error("scheduled retraining not started: %s", error)
                    continue
            if job is None:
                break
            self._run(job)
        while True:  # jobs asked for after the stop: never trained, so not left looking as if in training
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self.service.store.set_status(job.version.id, "failed",
                                              metrics={"error": "the retrainer stopped before training it"})
                job.error = "stopped"
                job.done.set()

    def _run(self, job: Job) -> None:
        store = self.service.store
        try:
            result = train_version(store, job.version.name, job.version.params, self.models_root,
                                   version=job.version)
            with self._switch:
                job.decision = promote_if_not_worse(store, result, self.metric, self.tolerance)
                if job.decision.promoted:
                    self.service.swap(result.trained, source_of(result.version))
        except Exception as error:  # the worker outlives any one failed job; the version says why it failed
            job.error = str(error) or type(error).__name__
            logger.exception("retraining model version %d failed", job.version.id)
        finally:
            job.done.set()
