"""Service: the active model and every user's live history, answering one request in about a millisecond.

A user's live history is their training history plus the events that arrived after training: read from the
store at start (events newer than the newest training event) and extended as events are posted. A user whose
history changed is scored by fold-in (Histories.users = -1), so a posted event changes their next
recommendation without retraining. Per request the work is one 1-row Histories, one model.score row, masks by
index arrays and one top-K; nothing proportional to the number of users is rebuilt.

Items upserted after training with content (a title, text or categories) are recommendable at once:
recengine.serving.new_items gives them served indices after the model's (n_items, n_items + 1, ...) and
scores them by content on the model's z-scale. Every index array of a request (history, exclude, candidates,
categories, deleted items) is in served indices; the model's own rows cover the first n_items. Items that
arrive only through events (no content) wait for the next retrain.

A deleted user is forgotten for good: the deletion is recorded in the store (deleted_users) and read again at
start, so a model trained before it never uses its learned state for them, not even after a restart.

Experiments (recengine.serving.experiments) route a request on their surface to a variant: the serving model,
another model version (kept loaded as a state of its own, which every write reaches like the serving one) or a
serving configuration (diversity). The impression records the experiment, the variant and its probability.
"""

from __future__ import annotations

import gc
import logging
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.data.histories import Histories
from recengine.errors import ConfigError, DataError, UnknownIdError
from recengine.models.hybrid import row_affine
from recengine.models.rerank import mmr
from recengine.models.topk import PAD_ITEM, topk
from recengine.serving.ann import EXACT_BELOW
from recengine.serving.experiments import DEFAULT_SURFACE, OUTCOME_EVENTS, Assignment, Experiments
from recengine.serving.impressions import ImpressionWriter
from recengine.serving.new_items import CatalogueContent, NewItems
from recengine.serving.retrieval import VectorRetrieval
from recengine.serving.score_cache import DEFAULT_MAX_BYTES, ScoreCache
from recengine.serving.settings import Settings
from recengine.store import ModelVersion, Store
from recengine.store.store import Impression
from recengine.trained import TrainedModel

logger = logging.getLogger(__name__)

#: Diversity re-ranks this many of the model's best candidates per requested item (at least _MIN_POOL).
_POOL_FACTOR, _MIN_POOL = 5, 50
#: Group popularities kept per model (one per distinct set of user attributes asked for).
_GROUP_CACHE = 1_024
_EXPLAIN_TOP = 3
#: Seconds between reads of the store's experiments (defined elsewhere too: the CLI, another process).
EXPERIMENT_REFRESH_SECONDS = 5.0
#: The service's request ids (uuid4 hex). Only these are checked against the impression log: clients may put
#: ids of their own in an event's request_id (batch tags, say), which are stored and attributed by window.
_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


def refreeze_heap() -> None:
    """In a process that froze its heap (`recengine serve` does once loaded, so that the collector's full scans
    skip the long-lived model), freeze it again after a model change: unfreeze, collect, so that cycles of the
    model let go are freed rather than kept frozen, and freeze what now lives. One collection per change, on the
    thread that changed the model, instead of full scans of the new model's objects while serving. A process
    that never froze is left alone."""
    if gc.get_freeze_count():
        gc.unfreeze()
        gc.collect()
        gc.freeze()


@dataclass(frozen=True)
class LiveHistory:
    """One user's history as the service scores it, oldest first (replaced whole, never changed in place);
    items are served indices, so new items (>= the model's n_items) are there too."""

    items: np.ndarray
    weights: np.ndarray
    timestamps: np.ndarray
    ratings: np.ndarray | None


@dataclass(frozen=True)
class Recommendation:
    item: str
    rank: int
    score: float
    title: str
    reason: str | None = None
    text: str | None = None


@dataclass(frozen=True)
class Recommendations:
    """A user's top-k. source: "model" (their history, folded in when it changed since training),
    "popular-in-group" (no history; popular among training users with the same attributes) or "popular"."""

    user: str
    source: str
    items: list[Recommendation]
    #: Names this response in the impression log; outcome events that carry it are attributed to it.
    request_id: str
    #: Candidate ids the service cannot rank (never seen, or added after training without content).
    unknown_candidates: list[str] = field(default_factory=list)
    #: The experiment and variant that served this response (None outside experiments).
    experiment: str | None = None
    variant: str | None = None


@dataclass(frozen=True)
class IngestReport:
    accepted: int
    #: Accepted events whose item the service does not serve: stored, used by the next retrain.
    unknown_items: int


class _State:
    """Everything that belongs to one model. A swap builds a new one whole and publishes it by one assignment;
    a request reads self._state once and works on that object throughout."""

    def __init__(self, trained: TrainedModel, source: dict[str, Any], retrieval: VectorRetrieval | None,
                 score_cache_bytes: int):
        data = trained.dataset
        self.trained = trained
        self.source = source
        #: The item index of a factor model over a large catalogue (None: requests score every item).
        self.retrieval = retrieval
        #: The model's scores of recently served users, valid while their history stays the same.
        self.scores = ScoreCache(score_cache_bytes)
        #: What the impression log records as the policy: the model, and its store version when it has one.
        self.policy = str(trained.info.get("model", "model")) + \
            (f"/v{source['version']}" if source.get("version") is not None else "")
        self.training = data.histories()
        # The hot path's lookups, made once: Vocabulary and titles go through pandas (Arrow-backed strings),
        # a millisecond a request that these plain arrays and this dict do not cost.
        self.item_ids = data.items.ids
        self.titles = np.asarray(trained.titles(list(self.item_ids)), dtype=object)
        self.user_index = {user: index for index, user in enumerate(data.users.ids)}
        self.members = trained.category_members()
        self.category_matrix = data.category_matrix() if self.members else None
        # Rating models need a rating on every history entry; an event posted without one counts as average.
        self.mean_rating = float(np.mean(data.rating)) if data.has_ratings and data.n_interactions else None
        self.newest = int(data.timestamp.max()) if data.n_interactions else None
        #: Users whose history differs from their training one (set before the state is published).
        self.live: dict[str, LiveHistory] = {}
        #: Deleted users whose learned state this model must not use (it knows them and was trained before
        #: their latest deletion).
        self.forgotten: set[str] = set()
        #: Internal indices of items deleted since training: never recommended.
        self.blocked = np.zeros(0, dtype=np.int64)
        self.groups: dict[tuple, np.ndarray | None] = {}
        #: Built at the first new item (an O(catalogue) step that most states never need), set before new.
        self.content: CatalogueContent | None = None
        #: Items served through content; replaced whole on every change (requests read it once).
        self.new: NewItems | None = None


class Service:
    """The online side of recengine: open with Service.open(settings), or around an open store and a model."""

    def __init__(self, store: Store, trained: TrainedModel, source: dict[str, Any] | None = None, *,
                 ann_min_items: int = EXACT_BELOW, ann_search: str = "hnsw",
                 score_cache_bytes: int = DEFAULT_MAX_BYTES):
        """ann_min_items, ann_search: when a factor model answers through an item index, and how it searches;
        score_cache_bytes: the bound on each model's cache of users' scores (Settings)."""
        self.store = store
        self._ann = {"min_items": ann_min_items, "search": ann_search}
        self._score_cache_bytes = score_cache_bytes
        # Serializes writes (store commit + live update, deletes, swaps), so the live state follows the store's
        # commit order; reads take no lock.
        self._lock = threading.Lock()
        #: Every recorded deletion; each state forgets those that concern it (_State.forgotten).
        self._deletions = store.deleted_users()
        self._removed_items: set[str] = set()
        self._attributes = _attributes(store.users())
        self.impressions = ImpressionWriter(store)
        self.experiments = Experiments(store)
        #: Model versions that experiment variants serve, by version id (the serving model is self._state).
        self._variants: dict[int, _State] = {}
        self._state: _State
        self.swap(trained, source)
        self.load_variant_models()
        self._closing = threading.Event()
        self._refresher = threading.Thread(target=self._refresh_experiments, name="experiment-refresh", daemon=True)
        self._refresher.start()

    @classmethod
    def open(cls, settings: Settings) -> Service:
        """Open the store and load the model: settings.model_dir, else the store's active model version."""
        store = Store.open(settings.store)
        try:
            path, source = settings.model_dir, {"model_dir": settings.model_dir}
            if path is None:
                version = store.active_version()
                if version is None or not version.artifact_path:
                    raise ConfigError(f"{store.url} has no active model version with an artifact; pass a model "
                                      f"directory (--model-dir or RECENGINE_MODEL_DIR) written by `recengine fit`")
                path, source = version.artifact_path, {"model_dir": version.artifact_path, "version": version.id}
            return cls(store, TrainedModel.load(Path(path)), source, ann_min_items=settings.ann_min_items,
                       ann_search=settings.ann_search, score_cache_bytes=settings.score_cache_mb * 2**20)
        except BaseException:
            store.close()
            raise

    def close(self) -> None:
        self._closing.set()
        self._refresher.join()
        self.impressions.close()
        self.store.close()

    # ------------------------------------------------------------------------------------------ the model
    def swap(self, trained: TrainedModel, source: dict[str, Any] | None = None) -> None:
        """Serve another model from now on. The new state (with live histories re-read from the store) is
        built whole first, the item index of a factor model over a large catalogue included; requests already
        running finish on the old model."""
        state = self._new_state(trained, dict(source or {}))
        with self._lock:
            self._prepare(state)
            self._state = state
            # A deleted item no served model knows needs no blocking any more.
            self._removed_items = {i for i in self._removed_items
                                   if any(i in s.trained.dataset.items for s in self._states())}
        refreeze_heap()

    def load_variant_models(self) -> None:
        """Load the model versions that experiments not yet stopped serve, and let go of those no longer
        needed. Called at start and after an experiment is defined or stopped."""
        wanted = self.experiments.model_versions()
        loaded = {}
        for version in sorted(wanted - set(self._variants)):
            record: ModelVersion = self.store.version(version)
            assert record.artifact_path  # Experiments.create checks that the version has one
            loaded[version] = self._new_state(TrainedModel.load(Path(record.artifact_path)),
                                              {"model_dir": record.artifact_path, "version": version})
        with self._lock:
            for state in loaded.values():
                self._prepare(state)
            self._variants = {v: s for v, s in (self._variants | loaded).items() if v in wanted}
        if loaded:
            refreeze_heap()

    def _new_state(self, trained: TrainedModel, source: dict[str, Any]) -> _State:
        return _State(trained, source, VectorRetrieval.build(trained.model, **self._ann), self._score_cache_bytes)

    def _refresh_experiments(self) -> None:
        while not self._closing.wait(EXPERIMENT_REFRESH_SECONDS):
            try:
                self.experiments.reload()
                self.load_variant_models()
            except Exception:  # the store away for a moment: serve on with what is known, try again later
                logger.exception("could not read the experiments of %s", self.store)

    def _prepare(self, state: _State) -> None:
        """Fill a new state from the store (under the lock): forgotten users, new items, posted events."""
        trained = state.trained
        # A deleted user needs forgetting only by a model that knows them and began training before their
        # (latest) deletion.
        began = self._training_began(state)
        state.forgotten = {u for u, at in self._deletions.items()
                           if u in trained.dataset.users and (began is None or began <= at)}
        stored = self.store.items()
        self._add_new_items(state, stored[~stored.index.isin(trained.dataset.items.ids)])
        events = self.store.events(since=None if state.newest is None else state.newest + 1)
        self._extend(state, events)
        state.blocked = self._blocked(state)

    def _states(self) -> list[_State]:
        """Every state a write must reach: the serving model's and the experiment variants'."""
        return [self._state, *self._variants.values()]

    def model_info(self) -> dict[str, Any]:
        state = self._state
        data = state.trained.dataset
        new = state.new
        return {**state.trained.info, "source": state.source, "users": data.n_users, "items": data.n_items,
                "new_items": 0 if new is None else int(new.active.sum()), "live_users": len(state.live),
                "retrieval": None if state.retrieval is None else state.retrieval.info(),
                "score_cache": state.scores.info(),
                "categories": sorted(set(state.members) | set({} if new is None else new.members))}

    # -------------------------------------------------------------------------------------------- reading
    def history(self, user: str) -> Histories:
        """The user's live history as one row: marked with their training index only when it is exactly their
        training history (so models may use learned per-user state), else -1 (folded in)."""
        return self._history(self._state, str(user))

    def recommend(self, user: str, k: int = 10, *, exclude: Sequence[str] = (),
                  candidates: Sequence[str] | None = None, categories: Sequence[str] = (),
                  exclude_seen: bool = True, diversity: float = 0.0, explain: bool = False,
                  surface: str = DEFAULT_SURFACE) -> Recommendations:
        """Top-k for a user from their live history; a user without one gets the cold-start chain (popular in
        their attribute group, else popular). exclude: item ids never to return; candidates: rank only these;
        categories: only items in any of them; diversity in [0, 1]: MMR over category vectors among the best
        candidates (0 = relevance order); explain: a reason and a sentence per item. surface: where the slate is
        shown; an experiment running there picks the variant (its model version and diversity win)."""
        user = str(user)
        if not 0.0 <= diversity <= 1.0:
            raise ConfigError(f"diversity must lie in [0, 1], got {diversity}")
        now = datetime.now(UTC)
        assignment = self.experiments.route(user, surface, now)
        state = self._state
        if assignment is not None and assignment.variant is not None:
            variant = assignment.variant
            if variant.model_version is not None:
                state = self._variants.get(variant.model_version, state)
            if variant.diversity is not None:
                diversity = variant.diversity
        result = self._rank(state, user, k, exclude, candidates, categories, exclude_seen, diversity, explain)
        # Deterministic ranking: no per-item propensities. Only enqueued here; the writer's thread commits it.
        self.impressions.log(self._impression(result, state, now, assignment))
        if assignment is None:
            return result
        return replace(result, experiment=assignment.experiment.name, variant=assignment.variant_name)

    @staticmethod
    def _impression(result: Recommendations, state: _State, now: datetime,
                    assignment: Assignment | None) -> Impression:
        return Impression(result.request_id, result.user, now, state.policy, [r.item for r in result.items],
                          [r.score for r in result.items],
                          experiment=None if assignment is None else assignment.experiment.name,
                          variant=None if assignment is None else assignment.variant_name,
                          variant_propensity=None if assignment is None else assignment.propensity)

    def _rank(self, state: _State, user: str, k: int, exclude: Sequence[str], candidates: Sequence[str] | None,
              categories: Sequence[str], exclude_seen: bool, diversity: float, explain: bool) -> Recommendations:
        """The slate of one model state, with a fresh request id; nothing routed, nothing logged."""
        # One request is one row: numba's parallel top-K threads would only contend with the other requests
        # (7 ms instead of 0.6 ms a request on a loaded 2-core machine); requests are the parallelism. The
        # setting is per thread, so it is made on the thread that serves the request.
        numba.set_num_threads(1)
        new = state.new
        live = state.live.get(user)
        h = self._history_from(state, user, live)
        if diversity > 0 and state.category_matrix is None:
            raise ConfigError("diversity needs item categories (genres), and this model's data has none")
        parts = [state.blocked] + ([] if new is None else [new.blocked])
        if exclude_seen:
            parts.append(h.items if live is None else live.items)
        if exclude:
            served = self._served(state, exclude)
            parts.append(served[served >= 0])
        excluded = np.unique(np.concatenate(parts).astype(np.int64))
        allowed, unknown = None, []
        if candidates is not None:
            found = self._served(state, candidates)
            unknown = [str(c) for c, i in zip(candidates, found, strict=True) if i < 0]
            allowed = np.unique(found[found >= 0])
        if categories:
            members = self._category_items(state, categories)
            allowed = members if allowed is None else np.intersect1d(allowed, members)
        # Diversity re-ranks a pool of the best candidates; without it the pool is the slate.
        pool = max(_MIN_POOL, _POOL_FACTOR * k) if diversity > 0 else k
        if len(h.items) and state.retrieval is not None:
            (items, values), source = self._retrieve(state, h, pool, excluded, allowed), "model"
        else:
            items, values, source = self._score_all(state, user, live, h, pool, excluded, allowed)
        if diversity > 0:
            vectors = state.category_matrix if new is None or not len(new) else \
                sp.vstack([state.content.vectors.categories, new.vectors.categories], format="csr")
            items, values = mmr(items, values, vectors, k, lambda_=1.0 - diversity)
        valid = items[0] != PAD_ITEM
        chosen, chosen_scores = items[0][valid], values[0][valid]
        ids, titles = self._describe(state, chosen)
        reasons = [self._explain(state, user, h, int(i)) for i in chosen] if explain else [{}] * len(chosen)
        shown = [Recommendation(str(i), rank, float(s), title, r.get("reason"), r.get("text"))
                 for rank, (i, s, title, r) in enumerate(zip(ids, chosen_scores, titles, reasons, strict=True), 1)]
        return Recommendations(user, source, shown, uuid.uuid4().hex, unknown)

    def _score_all(self, state: _State, user: str, live: LiveHistory | None, h: Histories, k: int,
                   excluded: np.ndarray, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, str]:
        """Top-k (1-row items, scores) and the source, by scoring every served item (`h`, the user's history,
        was built from `live`)."""
        new = state.new
        if len(h.items):
            scores, source = self._model_scores(state, user, live, h).copy(), "model"
        else:
            scores, source = self._popularity(state, user, h)
        if new is not None and len(new):
            # New items after the model's: one row over every served item, so that all masks below index it.
            scores = np.concatenate([scores[0], new.scores(h, row_affine(scores, "zscore")).astype(np.float32)]
                                    )[None, :]
        scores[0, excluded] = -np.inf
        if allowed is not None:
            kept = np.full_like(scores, -np.inf)
            kept[0, allowed] = scores[0, allowed]
            scores = kept
        return *topk(scores, k), source

    def _model_scores(self, state: _State, user: str, live: LiveHistory | None, h: Histories) -> np.ndarray:
        """The model's (1, n_items) float32 scores of `h`, from the cache while the user's history is the one
        `h` was built from (read-only: copy before changing)."""
        scores = state.scores.get(user, live)
        if scores is None:
            scores = np.array(state.trained.model.score(h), dtype=np.float32, copy=True)
            state.scores.put(user, live, scores)
            # An event or a deletion may have landed while this request scored; what it kept must not outlive
            # that history (the writers drop entries after changing the history, so one side always sees it).
            if state.live.get(user) is not live or (live is None and user in state.forgotten):
                state.scores.forget(user, live)
        return scores

    def _retrieve(self, state: _State, h: Histories, k: int, excluded: np.ndarray, allowed: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (1-row items, scores) of a factor model from its item index, new items scored by content."""
        retrieval = state.retrieval
        assert retrieval is not None  # the caller checks
        query = retrieval.query(h)
        items, values = retrieval.top(query, k, excluded, allowed)
        new = state.new
        if new is not None and len(new):
            served = new.offset + np.arange(len(new))
            scores = new.scores(h, retrieval.affine(query)).astype(np.float32)
            unwanted = np.isin(served, excluded)
            if allowed is not None:
                unwanted |= ~np.isin(served, allowed)
            scores[unwanted] = -np.inf
            items, values = np.concatenate([items, served]), np.concatenate([values, scores])
        # In served-index order, so that ties fall to the lower index as when every item is scored.
        order = np.argsort(items, kind="stable")
        best, scores = topk(values[order][None, :], k)
        chosen = np.full(best.shape, PAD_ITEM, dtype=np.int64)
        found = best != PAD_ITEM
        chosen[found] = items[order][best[found]]
        return chosen, scores

    def similar_items(self, item: str, k: int = 10) -> list[Recommendation]:
        """The k items most similar to `item` by the model (deleted items left out). A new item's are the items
        nearest by content; a catalogue item's list takes in the new items among its content neighbours, each
        at the place its content similarity has among the catalogue's (scored as the item it displaces)."""
        state = self._state
        new = state.new
        item = str(item)
        index = self._item_index(state, item)
        n_items = state.trained.dataset.n_items
        if index >= n_items:
            assert new is not None  # served indices past the model's are new items
            pairs = new.similar(index, k, state.blocked)
        else:
            frame = state.trained.similar_items([item], k + len(state.blocked))
            if len(state.blocked):
                frame = frame[~frame["similar"].isin(state.trained.dataset.items.lookup(state.blocked))]
            frame = frame.head(k)
            pairs = list(zip(state.trained.dataset.items.index(list(frame["similar"])).tolist(),
                             frame["score"].astype(float), strict=True))
            # near() is in rank order, so the new items placed before this one are all ahead of its place.
            for placed, (rank, served) in enumerate([] if new is None else new.near(index)):
                if rank < k and pairs:
                    at = rank + placed
                    pairs.insert(at, (served, pairs[min(at, len(pairs) - 1)][1]))
            pairs = pairs[:k]
        ids, titles = self._describe(state, np.asarray([i for i, _ in pairs], dtype=np.int64))
        return [Recommendation(str(i), rank, float(s), title) for rank, (i, (_, s), title) in
                enumerate(zip(ids, pairs, titles, strict=True), 1)]

    def profile(self, user: str) -> dict[str, Any]:
        """Who a training user is (recengine.profiles): it describes the training history; events_since_training
        says how many posted events it does not cover yet."""
        state = self._state
        user = str(user)
        if user in state.forgotten or user not in state.trained.dataset.users:
            raise UnknownIdError(f"no profile for user {user!r}: profiles describe the users the model was "
                                 f"trained on (a new user has one after the next retrain)")
        live = state.live.get(user)
        index = state.trained.dataset.users.index(user)
        since = 0 if live is None else len(live.items) - int(state.training.lengths[index])
        return {**state.trained.profile(user).to_dict(), "events_since_training": since}

    # -------------------------------------------------------------------------------------------- writing
    def add_events(self, frame: pd.DataFrame) -> IngestReport:
        """Commit events (the readers' canonical frame) to the store, then extend the live histories: when this
        returns, the events are durable and the users' next recommendations see them. A request_id of the
        service's form must name a recommendation response (DataError naming the row otherwise)."""
        if "request_id" in frame.columns:
            self._check_requests(frame)
        with self._lock:
            self.store.add_events(frame)
            unknown = self._extend(self._state, frame)
            for state in self._variants.values():
                self._extend(state, frame)
        # After the commit: a bandit's posterior moves only for outcomes that are stored.
        self.experiments.reward(frame, flush=self.impressions.flush)
        return IngestReport(len(frame), unknown)

    def delete_user(self, user: str) -> int:
        """Delete a user's events from the store and their live state; from now on they are an unknown user (the
        model's learned state for them is never used again: the deletion is recorded in the store, so this holds
        across restarts, until a model trained after it is served). Returns how many events went."""
        user = str(user)
        with self._lock:
            states = self._states()
            # A model's training data need not come from this store: a user only it knows is deleted too.
            known = any(user in s.live or user in s.trained.dataset.users for s in states)
            deleted = self.store.forget_user(user) if known else self.store.delete_user(user)
            self._deletions[user] = datetime.now(UTC)
            self._attributes.pop(user, None)
            for state in states:
                state.live.pop(user, None)
                if user in state.trained.dataset.users:
                    state.forgotten.add(user)
                state.scores.forget(user)
        return deleted

    def upsert_users(self, frame: pd.DataFrame) -> None:
        """Insert or update users (a frame indexed by user id; columns are attributes, used for the cold start)."""
        with self._lock:
            self.store.upsert_users(frame)
            if len(frame.columns):
                self._attributes.update(_attributes(frame))

    def upsert_items(self, frame: pd.DataFrame) -> list[str | None]:
        """Insert or update items (a frame indexed by item id, as Store.upsert_items takes); returns, per item,
        how it is recommended: "model" (the model knows it), "content" (new since training, served through its
        content until the next retrain learns it) or None (new, with no title, text or categories to go by).
        Metadata changes of items the model knows reach recommendations with the next retrain."""
        ids = frame.index.astype(str)
        with self._lock:
            self.store.upsert_items(frame)
            self._removed_items -= set(ids)
            for state in reversed(self._states()):  # the serving model's last: its answer is the one returned
                state.blocked = self._blocked(state)
                fresh = [i for i in ids if i not in state.trained.dataset.items]
                # The stored rows, not the frame: an update carries only the fields it changes.
                served = self._add_new_items(state, self.store.items(fresh)) if fresh else {}
        return ["model" if i in state.trained.dataset.items else "content" if served.get(i) else None for i in ids]

    def delete_item(self, item: str) -> int:
        """Delete an item and its events from the store; it is never recommended again. Returns how many events
        went. (Its place in training histories stays until the next retrain.)"""
        item = str(item)
        with self._lock:
            states = self._states()
            try:
                deleted = self.store.delete_item(item)
            except UnknownIdError:
                if not any(item in s.trained.dataset.items for s in states):
                    raise
                deleted = 0
            for state in states:
                if item in state.trained.dataset.items:
                    self._removed_items.add(item)
                    state.blocked = self._blocked(state)
                elif state.new is not None and item in state.new.index:
                    state.new = state.new.remove(item)
        return deleted

    # ------------------------------------------------------------------------------------------ internals
    def _check_requests(self, frame: pd.DataFrame) -> None:
        """Events answering one of the service's requests are outcomes: the request must exist and the event
        type (when given) be an outcome type; DataError naming the row otherwise."""
        ours = [(row, r) for row, r in enumerate(frame["request_id"])
                if isinstance(r, str) and _REQUEST_ID.fullmatch(r)]
        if not ours:
            return
        if "event" in frame.columns:
            types = frame["event"].to_numpy(object)
            bad = next((row for row, _ in ours if types[row] is not None and types[row] not in OUTCOME_EVENTS), None)
            if bad is not None:
                raise DataError(f"events[{bad}]: event type {types[bad]!r} is not an outcome type; an event with "
                                f"a request_id is an outcome: {', '.join(OUTCOME_EVENTS)}")
        wanted = {r for _, r in ours}
        known = self.store.known_requests(wanted)
        if known != wanted:
            # An outcome can arrive before the writer's next batch: write what is waiting, then look again.
            self.impressions.flush()
            known |= self.store.known_requests(wanted - known)
        row, request = next(((row, r) for row, r in ours if r not in known), (None, None))
        if row is not None:
            raise DataError(f"events[{row}]: unknown request_id {request!r}: no recommendation response had it "
                            f"(give the request_id of a GET /v1/users/{{id}}/recommendations answer, or none)")

    def _history(self, state: _State, user: str) -> Histories:
        return self._history_from(state, user, state.live.get(user))

    def _history_from(self, state: _State, user: str, live: LiveHistory | None) -> Histories:
        """The model's view of the user's history (`live`, their entry in state.live, or the training one when
        None): its items in the model's vocabulary (new items have no column there; they count as seen all the
        same)."""
        n_items = state.trained.dataset.n_items
        if live is not None:
            keep = live.items < n_items
            return Histories(np.array([0, int(keep.sum())]), live.items[keep], n_items, live.weights[keep],
                             live.timestamps[keep], None if live.ratings is None else live.ratings[keep],
                             users=np.array([-1]))
        index = self._training_index(state, user)
        if index >= 0:
            return state.training[index:index + 1]
        return Histories(np.zeros(2, dtype=np.int64), np.zeros(0, dtype=np.int32), n_items,
                         np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64),
                         None if state.mean_rating is None else np.zeros(0, dtype=np.float32),
                         users=np.array([-1]))

    def _training_index(self, state: _State, user: str) -> int:
        """The user's row in the training data; -1 for an unknown or deleted user."""
        return -1 if user in state.forgotten else state.user_index.get(user, -1)

    def _extend(self, state: _State, frame: pd.DataFrame) -> int:
        """Append events to the live histories of their users; returns how many have items the service lacks."""
        if not len(frame):
            return 0
        items = self._served(state, frame["item"].astype(str).to_numpy())
        known = items >= 0
        frame = frame[known]
        weights = (frame["weight"].fillna(1.0) if "weight" in frame else pd.Series(1.0, index=frame.index))
        ratings = None
        if state.mean_rating is not None:
            ratings = frame["rating"].fillna(state.mean_rating) if "rating" in frame else \
                pd.Series(state.mean_rating, index=frame.index)
        codes, users = pd.factorize(frame["user"].astype(str))
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(users) + 1))
        new = {"items": items[known].astype(np.int32), "weights": weights.to_numpy(np.float32),
               "timestamps": frame["timestamp"].to_numpy(np.int64),
               "ratings": None if ratings is None else ratings.to_numpy(np.float32)}
        for u, user in enumerate(users):
            rows = order[bounds[u]:bounds[u + 1]]
            base = state.live.get(user) or self._training_row(state, user)
            parts = {name: None if getattr(base, name) is None else
                     np.concatenate([getattr(base, name), values[rows]]) for name, values in new.items()}
            # Posted events may be older than training ones (late arrivals): keep the history in time order.
            chrono = np.argsort(parts["timestamps"], kind="stable")
            state.live[user] = LiveHistory(**{name: None if v is None else v[chrono] for name, v in parts.items()})
            state.scores.forget(user)
        return int((~known).sum())

    def _training_row(self, state: _State, user: str) -> LiveHistory:
        """The user's training history (empty for an unknown or deleted user)."""
        index = self._training_index(state, user)
        h = state.training[index:index + 1] if index >= 0 else state.training[0:0]
        return LiveHistory(h.items.astype(np.int32), h.entry_weights().astype(np.float32),
                           h.timestamps.astype(np.int64), None if state.mean_rating is None else h.ratings)

    def _popularity(self, state: _State, user: str, h: Histories) -> tuple[np.ndarray, str]:
        """Scores for a user without history: popular among training users with their attributes, else popular."""
        features = state.trained.dataset.user_features
        attributes = self._attributes.get(user) or {}
        wanted = {k: v for k, v in attributes.items() if features is not None and k in features.columns}
        if wanted:
            key = tuple(sorted((k, str(v)) for k, v in wanted.items()))
            if key not in state.groups:
                if len(state.groups) >= _GROUP_CACHE:
                    state.groups.clear()
                try:
                    state.groups[key] = state.trained.group_popularity(wanted)[0].astype(np.float32)
                except DataError:  # nobody in the training data has these attributes: everyone's popularity
                    state.groups[key] = None
            group = state.groups[key]
            if group is not None:
                return group[None, :].copy(), "popular-in-group"
        return np.array(state.trained.fallback.score(h), dtype=np.float32, copy=True), "popular"

    def _category_items(self, state: _State, categories: Sequence[str]) -> np.ndarray:
        """Served indices of the items in any of these categories, new items included."""
        new = {} if state.new is None else state.new.members
        if not state.members and not new:
            raise ConfigError("this model's data has no item categories (genres) to filter by")
        unknown = [c for c in categories if c not in state.members and c not in new]
        if unknown:
            raise DataError(f"unknown categories {unknown}; known: {', '.join(sorted(set(state.members) | set(new)))}")
        empty = np.zeros(0, dtype=np.int64)
        return np.unique(np.concatenate([part for c in categories
                                         for part in (state.members.get(c, empty), new.get(c, empty))]))

    def _item_index(self, state: _State, item: str) -> int:
        """The served index of an item that is recommended (not deleted)."""
        index = int(self._served(state, [item])[0])
        new = state.new
        deleted = item in self._removed_items or (new is not None and index in new.blocked)
        if index < 0 or deleted:
            raise UnknownIdError(f"unknown item {item!r}: the service does not serve it (an item added since "
                                 f"training is served once it has a title, text or categories)")
        return index

    def _served(self, state: _State, ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Served indices of item ids: the model's, then the new items' (deleted ones included, as the model's
        deleted items keep theirs); -1 for an id the service does not know."""
        found = np.asarray(state.trained.dataset.items.index(list(ids), missing="negative"), dtype=np.int64)
        new = state.new
        if new is not None and len(new) and (found < 0).any():
            for r in np.flatnonzero(found < 0):
                j = new.index.get(str(ids[r]), -1)
                found[r] = new.offset + j if j >= 0 else -1
        return found

    def _describe(self, state: _State, served: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids and titles of served indices."""
        n_items = state.trained.dataset.n_items
        if state.new is None or not (served >= n_items).any():
            return state.item_ids[served], state.titles[served]
        ids = np.concatenate([state.item_ids, state.new.ids])
        return ids[served], np.concatenate([state.titles, state.new.titles])[served]

    def _explain(self, state: _State, user: str, h: Histories, served: int) -> dict:
        """The reason and sentence for one recommended item: the model's, or for a new item, its content's."""
        if served < state.trained.dataset.n_items:
            return state.trained.explain_history(user, h, served, _EXPLAIN_TOP)
        assert state.new is not None  # served indices past the model's are new items
        why = state.new.explain(h, served, _EXPLAIN_TOP)
        titles = state.titles[why["because"][:2]].tolist()
        # TrainedModel's sentence for an item nobody has interacted with yet.
        text = f"New item matching your interest in {', '.join(why['interest'][:3])}" if why["interest"] else \
            f"New item similar to {' and '.join(titles)}" if titles else "New item"
        return {"reason": why["reason"], "text": text}

    def _add_new_items(self, state: _State, stored: pd.DataFrame) -> dict[str, bool]:
        """Serve these stored items (unknown to the model) through content; per id, whether it is served."""
        if not len(stored):
            return {}
        if state.content is None:
            state.content = CatalogueContent(state.trained)
        new, served = (state.new or NewItems(state.content)).upsert(stored)
        state.new = new
        return dict(zip(stored.index.astype(str), served, strict=True))

    def _training_began(self, state: _State) -> datetime | None:
        """When the model's training data was read at the latest: a store version's registration time (the
        snapshot comes after it), else the fit's start from the bundle; None when the bundle does not say."""
        version = state.source.get("version")
        if version is not None:
            return self.store.version(int(version)).created_at
        try:
            finished = datetime.strptime(str(state.trained.info["trained_at"]), "%Y-%m-%dT%H:%M:%SZ")
            return finished.replace(tzinfo=UTC) - timedelta(seconds=float(state.trained.info["fit_seconds"]))
        except (KeyError, ValueError):
            return None

    def _blocked(self, state: _State) -> np.ndarray:
        return np.sort(state.trained.dataset.items.index(sorted(self._removed_items), missing="negative")) \
            if self._removed_items else np.zeros(0, dtype=np.int64)


def _attributes(frame: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per user id, the attributes that are set (a users frame: indexed by id, one column per attribute)."""
    if not len(frame.columns):
        return {}
    records = frame.to_dict(orient="index")
    return {str(user): {k: v for k, v in values.items() if not _missing(v)} for user, values in records.items()}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
