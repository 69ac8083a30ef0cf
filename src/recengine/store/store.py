"""Store: events, items, users, model versions and API keys in SQLite or PostgreSQL, behind one class.

Every write is one transaction, committed before the method returns: what a call reports as added is in the
store, even if the process is killed right after. Users and items are referred to by external id (a string);
the integer keys inside are the store's own.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from recengine.data.dataset import Dataset
from recengine.data.readers import split_lists
from recengine.data.vocab import Vocabulary
from recengine.errors import ConfigError, DataError, UnknownIdError
from recengine.store import schema
from recengine.store.schema import MODEL_STATUSES

logger = logging.getLogger(__name__)

#: The store used when none is named: $RECENGINE_STORE, else this file in the working directory.
DEFAULT_URL = "sqlite:///recengine.db"
#: Columns add_events accepts: the readers' canonical event frame, plus the request an event answers.
EVENT_COLUMNS = ("user", "item", "timestamp", "event", "rating", "weight", "request_id")
#: Item fields with a column of their own; every other item column is kept in attributes.
ITEM_FIELDS = ("title", "text", "categories", "price")
#: Status changes set_status allows; activating a version makes the active one ready.
TRANSITIONS = {"training": {"ready", "failed"}, "ready": {"active", "failed"}, "active": {"ready"},
               "failed": set()}
_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}
#: Ids per IN (...) query: under SQLite's and PostgreSQL's limits on bound parameters.
_CHUNK = 5_000
_KEY_PREFIX = "rk_"
#: Every request's key check, as text: half the CPU of the same select built per call (its cache key and
#: coercions), and a revoked key is refused on the next request, whichever process revoked it.
_VERIFY_KEY = sa.text("SELECT scopes FROM api_keys WHERE key_hash = :key_hash AND revoked_at IS NULL"
                      ).columns(schema.api_keys.c.scopes)
#: Columns of impressions(): one row per shown item.
IMPRESSION_COLUMNS = ("request_id", "user", "created_at", "policy", "experiment", "variant", "variant_propensity",
                      "position", "item", "score", "propensity")
#: Seconds after an impression within which an outcome without a request id is attributed to it.
ATTRIBUTION_WINDOW = 24 * 3600


def default_url() -> str:
    return os.environ.get("RECENGINE_STORE") or DEFAULT_URL


@dataclass(frozen=True)
class ModelVersion:
    """One trained (or training) model: what it is, how well it did, where its artifact lies."""

    id: int
    name: str
    params: dict[str, Any]
    metrics: dict[str, Any] | None
    artifact_path: str | None
    status: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Impression:
    """One recommendation response as shown: its slate in rank order (position 1 first), the policy's score of
    each item, and for a stochastic policy the probability of each item at its position (None: deterministic)."""

    request_id: str
    user: str
    created_at: datetime
    policy: str
    items: Sequence[str]
    scores: Sequence[float]
    propensities: Sequence[float] | None = None
    experiment: str | None = None
    variant: str | None = None
    #: The probability this request had of its variant (its share, or the bandit's choice probability).
    variant_propensity: float | None = None


@dataclass(frozen=True)
class ExperimentRecord:
    """An experiment as stored: its definition is recengine.serving.experiments' JSON document."""

    name: str
    surface: str
    definition: dict[str, Any]
    starts_at: datetime
    stops_at: datetime | None
    created_at: datetime
    updated_at: datetime


class Store:
    """The SQL store. Open with Store.open(url); use as a context manager or call close()."""

    def __init__(self, engine: Engine, url: str):
        self.engine = engine
        self.url = url
        self._insert = _INSERTS[engine.dialect.name]

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """Open (creating or migrating the schema) the store at url: ``sqlite:///path.db`` or
        ``postgresql+psycopg://user:password@host/db``; default: $RECENGINE_STORE or sqlite:///recengine.db."""
        url = url or default_url()
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise ConfigError(f"{url!r} is not a store URL ({exc}); use sqlite:///PATH.db or "
                              f"postgresql+psycopg://USER:PASSWORD@HOST/DB") from exc
        shown = parsed.render_as_string(hide_password=True)
        if parsed.get_backend_name() not in _INSERTS:
            raise ConfigError(f"{shown}: the store runs on SQLite or PostgreSQL, not {parsed.get_backend_name()}")
        try:
            engine = sa.create_engine(parsed)
        except sa.exc.NoSuchModuleError as exc:
            raise ConfigError(f"{shown}: unknown database driver ({exc}); use postgresql+psycopg://") from exc
        if engine.dialect.name == "sqlite":
            schema.configure_sqlite(engine)
        try:
            schema.migrate(engine, shown)
        except sa.exc.OperationalError as exc:
            engine.dispose()
            raise ConfigError(f"cannot open the store {shown}: {exc.orig}; check the URL (--store or "
                              f"RECENGINE_STORE) and that the database is reachable") from exc
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, shown)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    # ------------------------------------------------------------------------------------------- events
    def add_events(self, frame: pd.DataFrame) -> int:
        """Add events (the readers' canonical frame: user, item, timestamp, optional event, rating, weight,
        request_id) in one transaction; returns how many. Unknown users and items are created (bare: no
        attributes, no title), so an event is never refused for arriving before its catalogue entry."""
        columns = _check_events(frame)
        if not len(frame):
            return 0
        with self._writing() as conn:
            user_codes, user_ids = pd.factorize(frame["user"].astype(str))
            item_codes, item_ids = pd.factorize(frame["item"].astype(str))
            values: dict[str, np.ndarray | pd.Series] = {
                "user_id": self._ensure(conn, schema.users, np.asarray(user_ids, dtype=object))[user_codes],
                "item_id": self._ensure(conn, schema.items, np.asarray(item_ids, dtype=object))[item_codes],
                "timestamp": frame["timestamp"].to_numpy(np.int64),
            }
            for name in columns:
                if name in ("event", "request_id"):
                    text = frame[name].astype(object)
                    values[name] = text.where(text.notna(), None) if name == "event" else \
                        text.where(text.notna() & (text != ""), None)  # an empty request id is none
                elif name in ("rating", "weight"):
                    values[name] = frame[name].to_numpy(np.float64)
            # In (user, time) order the index on it is appended to page by page instead of at random places.
            order = np.lexsort((values["timestamp"], values["user_id"]))
            values = {name: v[order] if isinstance(v, np.ndarray) else v.iloc[order] for name, v in values.items()}
            if self.engine.dialect.name == "postgresql":
                _copy_rows(conn, schema.events.name, values)
            else:
                _executemany_rows(conn, schema.events.name, values)
        return len(frame)

    def events(self, since: int | None = None) -> pd.DataFrame:
        """Events (with timestamp >= since, in seconds, if given) in time order: user, item, timestamp, event,
        rating, weight, request_id; missing values are None or NaN."""
        e, u, i = schema.events, schema.users, schema.items
        query = (sa.select(u.c.external_id.label("user"), i.c.external_id.label("item"), e.c.timestamp, e.c.event,
                           e.c.rating, e.c.weight, e.c.request_id)
                 .join(u, u.c.id == e.c.user_id).join(i, i.c.id == e.c.item_id).order_by(e.c.timestamp, e.c.id))
        if since is not None:
            query = query.where(e.c.timestamp >= int(since))
        with self.engine.connect() as conn:
            return _events_frame(_fetch(conn, query))

    # -------------------------------------------------------------------------------------- impressions
    def add_impressions(self, shown: Sequence[Impression]) -> int:
        """Add impressions (each a slate shown to a user) in one transaction; returns how many. DataError names
        the impression for a slate whose parts differ in length, repeat an item, or a propensity outside (0, 1]."""
        for n, impression in enumerate(shown):
            _check_impression(n, impression)
        if not shown:
            return 0
        head, slate = schema.impressions, schema.impression_items
        with self._writing() as conn:
            created = [_bind_value(conn, head.c.created_at, i.created_at) for i in shown]
            _executemany_rows(conn, head.name, {
                "request_id": np.asarray([i.request_id for i in shown], dtype=object),
                "user": np.asarray([i.user for i in shown], dtype=object),
                "created_at": np.asarray(created, dtype=object),
                "policy": np.asarray([i.policy for i in shown], dtype=object),
                "experiment": np.asarray([i.experiment for i in shown], dtype=object),
                "variant": np.asarray([i.variant for i in shown], dtype=object),
                "variant_propensity": np.asarray([i.variant_propensity for i in shown], dtype=object)})
            rows = [(i.request_id, position, str(item), float(score),
                     None if i.propensities is None else float(i.propensities[position - 1]))
                    for i in shown for position, (item, score) in enumerate(zip(i.items, i.scores, strict=True), 1)]
            if rows:
                _executemany_rows(conn, slate.name, {name: np.asarray(column, dtype=object) for name, column in
                                                     zip(("request_id", "position", "item", "score", "propensity"),
                                                         zip(*rows, strict=True), strict=True)})
        return len(shown)

    def impressions(self, since: datetime | None = None, *, users: Iterable[str] | None = None,
                    experiment: str | None = None) -> pd.DataFrame:
        """Impressions (shown at or after since, to these users, in this experiment, where given), one row per
        shown item, in time order then by position: request_id, user, created_at, policy, experiment, variant,
        variant_propensity, position, item, score, propensity (NaN for a deterministic policy). A slate with
        no items has no row."""
        head, slate = schema.impressions, schema.impression_items
        query = (sa.select(*(head.c[name] for name in IMPRESSION_COLUMNS[:7]), slate.c.position, slate.c.item,
                           slate.c.score, slate.c.propensity)
                 .join(slate, slate.c.request_id == head.c.request_id)
                 .order_by(head.c.created_at, head.c.request_id, slate.c.position))
        if since is not None:
            query = query.where(head.c.created_at >= since)
        if experiment is not None:
            query = query.where(head.c.experiment == experiment)
        with self.engine.connect() as conn:
            if users is None:
                rows = conn.execute(query).all()
            else:
                wanted = sorted({str(u) for u in users})
                rows = [row for start in range(0, len(wanted), _CHUNK) for row in conn.execute(
                    query.where(head.c.user.in_(wanted[start:start + _CHUNK]))).all()]
        frame = pd.DataFrame(rows, columns=list(IMPRESSION_COLUMNS))
        if users is not None:  # chunks come back one after the other: the whole in time order again
            frame = frame.sort_values(["created_at", "request_id", "position"], kind="stable", ignore_index=True)
        frame["position"] = frame["position"].astype(np.int64)
        for column in ("variant_propensity", "score", "propensity"):
            frame[column] = frame[column].astype(np.float64)
        return frame

    def known_requests(self, request_ids: Iterable[str]) -> set[str]:
        """The request ids among these that have an impression in the store."""
        ids = sorted({str(r) for r in request_ids})
        column = schema.impressions.c.request_id
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                found.update(conn.execute(sa.select(column).where(column.in_(ids[start:start + _CHUNK]))).scalars())
        return found

    def attributed_outcomes(self, window_seconds: int = ATTRIBUTION_WINDOW) -> pd.DataFrame:
        """Every event (as events() gives them) with the impression it answers: see attribute. Computed at read
        time, so a changed window applies to the whole log."""
        return self.attribute(self.events(), window_seconds)

    def attribute(self, events: pd.DataFrame, window_seconds: int = ATTRIBUTION_WINDOW) -> pd.DataFrame:
        """These events (user, item, timestamp and optional request_id columns) with the impression each
        answers: request_id is the event's own when an impression has it, else the latest impression of that
        user showing that item at most window_seconds before the event, else None (unattributed: still a row).
        attribution says which: "request", "window" or None."""
        events = events.reset_index(drop=True)
        if "request_id" not in events.columns:
            events = events.assign(request_id=None)
        users = set(events["user"].astype(str))
        shown = self.impressions(users=users if len(users) <= _CHUNK else None)[
            ["request_id", "user", "item", "created_at"]]
        own = events["request_id"].isin(set(shown["request_id"]))
        # Event times are whole seconds (an event posted without one gets the truncated time of arrival), so an
        # impression counts from the start of its second: a click in the second it was shown is attributed.
        shown = shown.assign(shown=np.asarray([int(t.timestamp()) for t in shown["created_at"]], dtype=np.int64))
        rest = events.loc[~own, ["user", "item", "timestamp"]].astype({"user": object, "item": object}) \
            .sort_values("timestamp", kind="stable")  # merge_asof's order
        matched = pd.merge_asof(rest.reset_index(), shown.drop(columns="created_at").astype(
            {"user": object, "item": object}), left_on="timestamp", right_on="shown", by=["user", "item"],
            direction="backward", tolerance=int(window_seconds)).set_index("index")["request_id"]
        request = np.where(own, events["request_id"].to_numpy(object), None)
        found = matched.to_numpy(object)
        request[events.index.get_indexer(matched.index)] = np.where(pd.isna(found), None, found)
        attribution = np.where(own, "request", np.where(pd.isna(request), None, "window"))
        return events.assign(request_id=request, attribution=attribution)

    # -------------------------------------------------------------------------------------- experiments
    def add_experiment(self, name: str, surface: str, definition: dict[str, Any], starts_at: datetime,
                       stops_at: datetime | None = None) -> ExperimentRecord:
        """Record an experiment (a name not used before; ConfigError otherwise)."""
        now = _now()
        try:
            with self._writing() as conn:
                conn.execute(schema.experiments.insert().values(
                    name=name, surface=surface, definition=definition, starts_at=starts_at, stops_at=stops_at,
                    created_at=now, updated_at=now))
        except sa.exc.IntegrityError:
            raise ConfigError(f"an experiment named {name!r} exists already; choose another name") from None
        return self.experiment(name)

    def update_experiment(self, name: str, *, definition: dict[str, Any] | None = None,
                          stops_at: datetime | None = None) -> ExperimentRecord:
        """Replace an experiment's definition and/or set its stop time."""
        t = schema.experiments
        changes: dict[str, Any] = {"updated_at": _now()}
        if definition is not None:
            changes["definition"] = definition
        if stops_at is not None:
            changes["stops_at"] = stops_at
        with self._writing() as conn:
            if conn.execute(t.update().where(t.c.name == name).values(**changes)).rowcount == 0:
                raise UnknownIdError(f"no experiment named {name!r}; experiments() lists them")
        return self.experiment(name)

    def experiment(self, name: str) -> ExperimentRecord:
        found = self._experiments(schema.experiments.c.name == name)
        if not found:
            raise UnknownIdError(f"no experiment named {name!r}; experiments() lists them")
        return found[0]

    def experiments(self) -> list[ExperimentRecord]:
        """Every experiment, oldest first."""
        return self._experiments(sa.true())

    def _experiments(self, where: sa.ColumnElement[bool]) -> list[ExperimentRecord]:
        t = schema.experiments
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*(t.c[f] for f in ExperimentRecord.__dataclass_fields__))
                                .where(where).order_by(t.c.id)).all()
        return [ExperimentRecord(**row._asdict()) for row in rows]

    def impression_variants(self, request_ids: Iterable[str]) -> dict[str, tuple[str | None, str | None]]:
        """Per request id with an impression: its (experiment, variant)."""
        ids = sorted({str(r) for r in request_ids})
        head = schema.impressions
        found: dict[str, tuple[str | None, str | None]] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), _CHUNK):
                found.update({r: (e, v) for r, e, v in conn.execute(
                    sa.select(head.c.request_id, head.c.experiment, head.c.variant)
                    .where(head.c.request_id.in_(ids[start:start + _CHUNK])))})
        return found

    def add_bandit_rewards(self, rewards: Sequence[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
        """Record (request_id, experiment, variant) rewards; returns those that are new (an impression is
        rewarded once however many outcomes it has)."""
        t = schema.bandit_rewards
        with self._writing() as conn:
            seen = set(conn.execute(sa.select(t.c.request_id).where(
                t.c.request_id.in_(sorted({r for r, _, _ in rewards})))).scalars())
            fresh = {r: (r, e, v) for r, e, v in rewards if r not in seen}
            if fresh:
                now = _now()
                conn.execute(t.insert(), [{"request_id": r, "experiment": e, "variant": v, "created_at": now}
                                          for r, e, v in fresh.values()])
        return list(fresh.values())

    def bandit_counts(self, experiment: str) -> dict[str, tuple[int, int]]:
        """Per variant of an experiment: (pulls, rewards), its impressions and its rewarded impressions."""
        head, t = schema.impressions, schema.bandit_rewards
        with self.engine.connect() as conn:
            pulls = dict(conn.execute(sa.select(head.c.variant, sa.func.count()).where(
                head.c.experiment == experiment).group_by(head.c.variant)).all())
            rewards = dict(conn.execute(sa.select(t.c.variant, sa.func.count()).where(
                t.c.experiment == experiment).group_by(t.c.variant)).all())
        return {str(v): (int(pulls.get(v, 0)), int(rewards.get(v, 0))) for v in set(pulls) | set(rewards)}

    # -------------------------------------------------------------------------------------- items, users
    def upsert_items(self, frame: pd.DataFrame) -> int:
        """Insert or update items from a frame indexed by item id (as read_items returns). Columns title, text,
        categories (a list, or "|"-separated text) and price have fields of their own; the others are kept as
        attributes. A field the frame has replaces the stored one; fields it lacks are kept."""
        return self._upsert(schema.items, frame, "item", ITEM_FIELDS)

    def upsert_users(self, frame: pd.DataFrame) -> int:
        """Insert or update users from a frame indexed by user id (as read_users returns); every column is an
        attribute. When the frame has columns, they replace the stored attributes."""
        return self._upsert(schema.users, frame, "user", ())

    def items(self, ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Every item's features (or those of the items with these ids that exist), indexed by item id (index
        name "item"), in the order they were added."""
        t = schema.items
        query = sa.select(t.c.external_id, *(t.c[f] for f in ITEM_FIELDS), t.c.attributes).order_by(t.c.id)
        with self.engine.connect() as conn:
            if ids is None:
                rows = conn.execute(query).all()
            else:
                wanted = [str(i) for i in ids]
                rows = [row for start in range(0, len(wanted), _CHUNK) for row in conn.execute(
                    query.where(t.c.external_id.in_(wanted[start:start + _CHUNK]))).all()]
        return _features_frame(rows, "item", ITEM_FIELDS)

    def users(self) -> pd.DataFrame:
        """Every user's attributes, indexed by user id (index name "user"), in the order they were added."""
        t = schema.users
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.external_id, t.c.attributes).order_by(t.c.id)).all()
        return _features_frame(rows, "user", ())

    def delete_user(self, user: str) -> int:
        """Delete a user and all their events, and record the deletion (see deleted_users) in the same
        transaction; returns how many events went. UnknownIdError when the store has no such user."""
        return self._delete(schema.users, schema.events.c.user_id, "user", user, tombstone=True)

    def forget_user(self, user: str) -> int:
        """delete_user for a user the store need not have (one a model was trained on elsewhere): the deletion
        is recorded either way; returns how many events went (0 without the user)."""
        try:
            return self.delete_user(user)
        except UnknownIdError:
            with self._writing() as conn:
                self._forget_impressions(conn, str(user))
                self._record_deletion(conn, str(user))
            return 0

    def deleted_users(self) -> dict[str, datetime]:
        """Every deleted user's id with the time of their latest deletion (UTC)."""
        t = schema.deleted_users
        with self.engine.connect() as conn:
            return {str(user): at for user, at in conn.execute(sa.select(t.c.external_id, t.c.deleted_at))}

    def delete_item(self, item: str) -> int:
        """Delete an item and all events with it; returns how many events went."""
        return self._delete(schema.items, schema.events.c.item_id, "item", item)

    # ------------------------------------------------------------------------------------------- reading
    def snapshot(self, name: str = "store") -> Dataset:
        """Everything as a Dataset, read in one transaction: every event in time order (a user's events at the
        same time in the order they were added), with item and user features. The vocabularies hold every user
        and item: those with events first, in order of first event, then the others (cold items and users) in
        the order they were added."""
        e = schema.events
        with self.engine.connect() as conn, conn.begin():
            rows = _fetch(conn, sa.select(e.c.user_id, e.c.item_id, e.c.timestamp, e.c.event, e.c.rating,
                                          e.c.weight).order_by(e.c.timestamp, e.c.id))
            users = conn.execute(sa.select(schema.users.c.id, schema.users.c.external_id,
                                           schema.users.c.attributes).order_by(schema.users.c.id)).all()
            it = schema.items
            items = conn.execute(sa.select(it.c.id, it.c.external_id, *(it.c[f] for f in ITEM_FIELDS),
                                           it.c.attributes).order_by(it.c.id)).all()
        frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "event", "rating", "weight"])
        user_vocab, frame["user"] = _vocabulary(frame["user"], users)
        item_vocab, frame["item"] = _vocabulary(frame["item"], items)
        frame["weight"] = frame["weight"].astype(np.float64).fillna(1.0)  # the Dataset's default weight
        for column in ("rating", "event"):
            missing = int(frame[column].isna().sum())
            if missing == len(frame):
                frame = frame.drop(columns=column)
            elif missing:
                logger.warning("%s: %d of %d events have no %s; the snapshot leaves %ss out", self.url, missing,
                               len(frame), column, column)
                frame = frame.drop(columns=column)
        item_features = _features_frame([r[1:] for r in items], "item", ITEM_FIELDS)
        user_features = _features_frame([r[1:] for r in users], "user", ())
        return Dataset.from_events(
            frame, item_features if len(item_features.columns) else None,
            user_features if len(user_features.columns) else None,
            users=user_vocab, items=item_vocab, name=name)

    def export(self, path: str | Path, what: str = "events", format: str | None = None) -> int:
        """Write events, items or users to CSV or Parquet (format from the extension unless given) in the form
        the readers read back; returns how many rows. In CSV, list values are "|"-joined."""
        path = Path(path)
        fmt = format or {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(path.suffix.lower())
        if fmt not in ("csv", "parquet"):
            raise ConfigError(f"{path}: export writes csv or parquet; name the file .csv or .parquet or "
                              f"pass format=")
        if what == "events":
            frame = self.events()
            frame = frame.drop(columns=[c for c in EVENT_COLUMNS[3:] if frame[c].isna().all()])
        elif what in ("items", "users"):
            frame = (self.items() if what == "items" else self.users()).reset_index()
        else:
            raise ConfigError(f"export what={what!r}: choose events, items or users")
        if fmt == "csv":
            for column in frame.columns:
                if frame[column].map(lambda v: isinstance(v, list)).any():
                    frame[column] = frame[column].map(lambda v: "|".join(map(str, v)) if isinstance(v, list) else v)
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        return len(frame)

    def counts(self) -> dict[str, int]:
        """How many users, items, events, model versions and API keys the store holds."""
        tables = (schema.users, schema.items, schema.events, schema.model_versions, schema.api_keys)
        with self.engine.connect() as conn:
            return {t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in tables}

    # ------------------------------------------------------------------------------------ model versions
    def register_model_version(self, name: str, params: dict[str, Any], artifact_path: str | None = None,
                               metrics: dict[str, Any] | None = None) -> ModelVersion:
        """Record a model version as training; set_status moves it on once it is trained."""
        now = _now()
        with self._writing() as conn:
            version_id = conn.execute(schema.model_versions.insert().values(
                name=name, params=params, metrics=metrics, artifact_path=artifact_path, status="training",
                created_at=now, updated_at=now).returning(schema.model_versions.c.id)).scalar_one()
        return self.version(version_id)

    def set_status(self, version_id: int, status: str, metrics: dict[str, Any] | None = None,
                   artifact_path: str | None = None) -> ModelVersion:
        """Move a version to another status (training → ready | failed, ready → active | failed, active →
        ready), recording metrics and the artifact's path if given. Activating a version makes the one active
        before it ready."""
        mv = schema.model_versions
        if status not in MODEL_STATUSES:
            raise ConfigError(f"unknown model status {status!r}; use one of {', '.join(MODEL_STATUSES)}")
        with self._writing() as conn:
            current = conn.execute(sa.select(mv.c.status).where(mv.c.id == version_id)).scalar_one_or_none()
            if current is None:
                raise UnknownIdError(f"no model version {version_id}; versions() lists them")
            if status not in TRANSITIONS[current]:
                allowed = ", ".join(sorted(TRANSITIONS[current])) or "nothing"
                raise ConfigError(f"model version {version_id} is {current}; it can become {allowed}, "
                                  f"not {status}")
            now = _now()
            if status == "active":
                conn.execute(mv.update().where(mv.c.status == "active").values(status="ready", updated_at=now))
            changes: dict[str, Any] = {"status": status, "updated_at": now}
            if metrics is not None:
                changes["metrics"] = metrics
            if artifact_path is not None:
                changes["artifact_path"] = artifact_path
            conn.execute(mv.update().where(mv.c.id == version_id).values(**changes))
        return self.version(version_id)

    def version(self, version_id: int) -> ModelVersion:
        found = self._versions(schema.model_versions.c.id == version_id)
        if not found:
            raise UnknownIdError(f"no model version {version_id}; versions() lists them")
        return found[0]

    def versions(self) -> list[ModelVersion]:
        """Every model version, oldest first."""
        return self._versions(sa.true())

    def active_version(self) -> ModelVersion | None:
        found = self._versions(schema.model_versions.c.status == "active")
        return found[0] if found else None

    def _versions(self, where: sa.ColumnElement[bool]) -> list[ModelVersion]:
        mv = schema.model_versions
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(*(mv.c[f] for f in ModelVersion.__dataclass_fields__))
                                .where(where).order_by(mv.c.id)).all()
        return [ModelVersion(**row._asdict()) for row in rows]

    # ------------------------------------------------------------------------------------------ API keys
    def create_api_key(self, name: str, scopes: Sequence[str]) -> str:
        """A new API key with the given scopes. The key is returned once and never stored (only its SHA-256):
        keep it; a lost key is revoked and replaced."""
        if isinstance(scopes, str) or not scopes or not all(isinstance(s, str) and s for s in scopes):
            raise ConfigError(f"scopes must be a non-empty list of names, e.g. ['read'], got {scopes!r}")
        key = _KEY_PREFIX + secrets.token_urlsafe(32)
        with self._writing() as conn:
            conn.execute(schema.api_keys.insert().values(
                name=name, scopes=list(scopes), key_hash=_hash_key(key), prefix=key[:len(_KEY_PREFIX) + 6],
                created_at=_now()))
        return key

    def verify_api_key(self, key: str) -> list[str] | None:
        """The scopes of a valid, unrevoked key; None for any other string."""
        with self.engine.connect() as conn:
            return conn.execute(_VERIFY_KEY, {"key_hash": _hash_key(key)}).scalar_one_or_none()

    def revoke_api_key(self, key_id: int) -> None:
        """Revoke a key by its id (see api_keys()); verify_api_key refuses it from then on."""
        k = schema.api_keys
        with self._writing() as conn:
            result = conn.execute(k.update().where(k.c.id == key_id, k.c.revoked_at.is_(None))
                                  .values(revoked_at=_now()))
            if result.rowcount == 0 and conn.execute(sa.select(k.c.id).where(k.c.id == key_id)).first() is None:
                raise UnknownIdError(f"no API key {key_id}; api_keys() lists them")

    def api_keys(self) -> pd.DataFrame:
        """Every key's id, name, scopes, first characters, creation and revocation time (never the key)."""
        k = schema.api_keys
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(k.c.id, k.c.name, k.c.scopes, k.c.prefix, k.c.created_at,
                                          k.c.revoked_at).order_by(k.c.id)).all()
        return pd.DataFrame(rows, columns=["id", "name", "scopes", "prefix", "created_at", "revoked_at"])

    # ------------------------------------------------------------------------------------------ internals
    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction. On SQLite it takes the write lock at BEGIN (IMMEDIATE): a deferred one that
        reads before it writes fails at once with "database is locked" when another connection (the impression
        writer) commits in between, where waiting at BEGIN honours the busy timeout."""
        with self.engine.connect().execution_options(**{schema.WRITE_TRANSACTION: True}) as conn, conn.begin():
            yield conn

    def _ensure(self, conn: Connection, table: sa.Table, external_ids: np.ndarray) -> np.ndarray:
        """The internal ids of these external ids (distinct), creating the rows that do not exist yet. Through
        the driver: SQLAlchemy's per-row parameter handling took a third of a bulk load's time."""
        now = _bind_value(conn, table.c.created_at, _now())
        ids = external_ids.tolist()
        _executemany_rows(conn, table.name, {"external_id": external_ids, "created_at": np.full(len(ids), now),
                                             "updated_at": np.full(len(ids), now)},
                          suffix=" ON CONFLICT (external_id) DO NOTHING")
        mark = _mark(conn)
        found: list[tuple[str, int]] = []
        with _cursor(conn) as cursor:
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start:start + _CHUNK]
                cursor.execute(f"SELECT external_id, id FROM {table.name} WHERE external_id IN "
                               f"({', '.join([mark] * len(chunk))})", chunk)
                found += cursor.fetchall()
        positions = pd.Index([ext for ext, _ in found]).get_indexer(external_ids)
        return np.asarray([internal for _, internal in found], dtype=np.int64)[positions]

    def _upsert(self, table: sa.Table, frame: pd.DataFrame, kind: str, fields: tuple[str, ...]) -> int:
        records, present = _feature_records(frame, kind, fields)
        if not records:
            return 0
        now = _now()
        for record in records:
            record["created_at"] = record["updated_at"] = now
        statement = self._insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=["external_id"],
            set_={name: statement.excluded[name] for name in (*present, "updated_at")})
        with self._writing() as conn:
            conn.execute(statement, records)
        return len(records)

    def _delete(self, table: sa.Table, event_column: sa.Column, kind: str, external_id: str, *,
                tombstone: bool = False) -> int:
        with self._writing() as conn:
            internal = conn.execute(sa.select(table.c.id).where(table.c.external_id == str(external_id))
                                    ).scalar_one_or_none()
            if internal is None:
                raise UnknownIdError(f"unknown {kind} {external_id!r}: it is not in the store")
            deleted = conn.execute(schema.events.delete().where(event_column == internal)).rowcount
            conn.execute(table.delete().where(table.c.id == internal))
            if tombstone:
                self._forget_impressions(conn, str(external_id))
                self._record_deletion(conn, str(external_id))
        return deleted

    @staticmethod
    def _forget_impressions(conn: Connection, user: str) -> None:
        """What was shown to a deleted user is their data too: their impressions and slates go with them."""
        shown = schema.impressions
        requests = sa.select(shown.c.request_id).where(shown.c.user == user)
        conn.execute(schema.impression_items.delete().where(schema.impression_items.c.request_id.in_(requests)))
        conn.execute(schema.bandit_rewards.delete().where(schema.bandit_rewards.c.request_id.in_(requests)))
        conn.execute(shown.delete().where(shown.c.user == user))

    def _record_deletion(self, conn: Connection, user: str) -> None:
        """Upsert: a second deletion moves deleted_at on (a model trained between the two must forget too)."""
        statement = self._insert(schema.deleted_users).values(external_id=user, deleted_at=_now())
        conn.execute(statement.on_conflict_do_update(index_elements=["external_id"],
                                                     set_={"deleted_at": statement.excluded.deleted_at}))


# ------------------------------------------------------------------------------------------ event rows
def _check_events(frame: pd.DataFrame) -> list[str]:
    """The optional columns the frame has; DataError naming the row and problem for anything malformed."""
    missing = [c for c in EVENT_COLUMNS[:3] if c not in frame.columns]
    unknown = [c for c in frame.columns if c not in EVENT_COLUMNS]
    if missing or unknown:
        raise DataError(f"events frame: {'missing column(s) ' + str(missing) if missing else ''}"
                        f"{'; ' if missing and unknown else ''}{'unknown column(s) ' + str(unknown) if unknown else ''}"
                        f"; it needs user, item, timestamp and may have {', '.join(EVENT_COLUMNS[3:])} (read files "
                        f"with recengine.data.readers.read_events)")
    for column in ("user", "item", "timestamp", "event", "rating", "weight"):
        if column in frame.columns and frame[column].isna().any():
            row = int(np.flatnonzero(frame[column].isna().to_numpy())[0])
            raise DataError(f"events frame, row {row}: missing {column}")
    if not pd.api.types.is_integer_dtype(frame["timestamp"]):
        raise DataError(f"events frame: timestamp must be integer seconds since the epoch (or a sequence number), "
                        f"got {frame['timestamp'].dtype}")
    for column in ("rating", "weight"):
        if column in frame.columns:
            values = pd.to_numeric(frame[column], errors="coerce").to_numpy(np.float64)
            if not np.isfinite(values).all():
                row = int(np.flatnonzero(~np.isfinite(values))[0])
                value = frame[column].iloc[row]
                value = value.item() if isinstance(value, np.generic) else value
                raise DataError(f"events frame, row {row}: {column} {value!r} is not a number")
    return [c for c in EVENT_COLUMNS[3:] if c in frame.columns]


def _check_impression(n: int, impression: Impression) -> None:
    label = f"impression {n} ({impression.request_id!r})"
    lengths = {len(impression.items), len(impression.scores)} | \
        (set() if impression.propensities is None else {len(impression.propensities)})
    if len(lengths) > 1:
        raise DataError(f"{label}: items, scores and propensities differ in length")
    if len(set(impression.items)) < len(impression.items):
        raise DataError(f"{label}: the slate shows an item twice")
    for position, p in enumerate(impression.propensities or (), 1):
        if not 0.0 < p <= 1.0:
            raise DataError(f"{label}, position {position}: propensity {p} is outside (0, 1]")


def _row_lists(values: dict[str, np.ndarray | pd.Series]) -> Iterable[tuple]:
    # tolist() turns whole columns into Python objects at C speed; NaN becomes NULL in both databases.
    return zip(*(v.tolist() for v in values.values()), strict=True)


def _executemany_rows(conn: Connection, table: str, values: dict[str, np.ndarray | pd.Series],
                      suffix: str = "") -> None:
    """One prepared INSERT run by the driver for every row, inside the transaction (SQLite's bulk path)."""
    names = ", ".join(f'"{name}"' for name in values)
    marks = ", ".join(_mark(conn) for _ in values)
    with _cursor(conn) as cursor:
        cursor.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks}){suffix}", _row_lists(values))


@contextmanager
def _cursor(conn: Connection) -> Iterator[Any]:
    """A cursor of the driver's connection, in the transaction of conn."""
    cursor = conn.connection.driver_connection.cursor()
    try:
        yield cursor
    finally:
        cursor.close()


def _mark(conn: Connection) -> str:
    """The driver's positional parameter marker: sqlite3 takes ?, psycopg %s."""
    return "?" if conn.dialect.paramstyle == "qmark" else "%s"


def _bind_value(conn: Connection, column: sa.Column, value: Any) -> Any:
    """A value as SQLAlchemy would hand it to the driver for this column (SQLite keeps times as text)."""
    processor = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    return processor(value) if processor else value


def _copy_rows(conn: Connection, table: str, values: dict[str, np.ndarray | pd.Series],
               chunk: int = 200_000) -> None:
    r"""The PostgreSQL fast path: COPY in CSV, written by pandas in chunks. \N marks NULL, so an empty string
    stays an empty string."""
    names = ", ".join(f'"{name}"' for name in values)
    frame = pd.DataFrame({name: np.asarray(v) if isinstance(v, np.ndarray) else v.to_numpy(dtype=object)
                          for name, v in values.items()})
    with conn.connection.driver_connection.cursor() as cursor, \
            cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv, NULL '\\N')") as copy:
        for start in range(0, len(frame), chunk):
            buffer = io.StringIO()
            frame.iloc[start:start + chunk].to_csv(buffer, header=False, index=False, na_rep="\\N")
            copy.write(buffer.getvalue())


def _fetch(conn: Connection, query: sa.Select) -> list[tuple]:
    """All rows of a query as plain tuples from the driver: pandas builds a frame from a million tuples in
    half a second, from SQLAlchemy Row objects in ten times that. Bound values must be literals (ints)."""
    with _cursor(conn) as cursor:
        cursor.execute(str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})))
        return cursor.fetchall()


def _events_frame(rows: Sequence[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(EVENT_COLUMNS))
    frame["timestamp"] = frame["timestamp"].astype(np.int64)
    for column in ("rating", "weight"):
        frame[column] = frame[column].astype(np.float64)
    return frame


# --------------------------------------------------------------------------------------------- features
def _feature_records(frame: pd.DataFrame, kind: str, fields: tuple[str, ...]) -> tuple[list[dict], list[str]]:
    """Rows to upsert (external_id, the fields, attributes) and the columns the frame sets."""
    label = f"{kind}s frame"
    index = frame.index
    if isinstance(index, pd.RangeIndex) and kind in frame.columns:
        raise DataError(f"{label}: index it by {kind} id (frame.set_index({kind!r}), as read_{kind}s returns it)")
    if index.isna().any():
        raise DataError(f"{label}, row {int(np.flatnonzero(index.isna())[0])}: missing {kind} id")
    ids = index.astype(str)
    if not ids.is_unique:
        raise DataError(f"{label}: duplicate {kind} id {ids[ids.duplicated()][0]!r}; give each {kind} one row")
    columns: dict[str, list] = {}
    for name in fields:
        if name not in frame.columns:
            continue
        col = frame[name]
        if name == "price":
            prices = pd.to_numeric(col, errors="coerce")
            bad = (prices.isna() & col.notna()).to_numpy() | np.isinf(prices.to_numpy(np.float64, na_value=0))
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DataError(f"{label}, {kind} {ids[row]!r}: price {col.iloc[row]!r} is not a number")
            columns[name] = [None if np.isnan(p) else float(p) for p in prices.to_numpy(np.float64, na_value=np.nan)]
        elif name == "categories":
            columns[name] = [[str(c) for c in v] for v in split_lists(col)]
        else:
            columns[name] = [None if pd.isna(v) else str(v) for v in col]
    extra = [c for c in frame.columns if c not in fields]
    attributes = [_attributes(frame, extra, row, label, ids[row]) for row in range(len(frame))] if extra else None
    records = [{"external_id": ext, **{name: values[row] for name, values in columns.items()}}
               for row, ext in enumerate(ids)]
    if attributes is not None:
        for record, attrs in zip(records, attributes, strict=True):
            record["attributes"] = attrs
    return records, [*columns, *(["attributes"] if extra else [])]


def _attributes(frame: pd.DataFrame, columns: list[str], row: int, label: str, external_id: str) -> dict | None:
    out = {}
    for column in columns:
        try:
            value = _json_value(frame[column].iat[row])
        except TypeError as exc:
            raise DataError(f"{label}, {external_id!r}: column {column!r} holds {exc}; store numbers, text, "
                            f"booleans or lists of them (convert the column first)") from None
        if value is not None:
            out[str(column)] = value
    return out or None


def _json_value(value: Any) -> Any:
    """A JSON-ready value; None for a missing one."""
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_value(v) for v in value]
    if value is None or value is pd.NA or (isinstance(value, float | np.floating) and np.isnan(value)):
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str | bool | int | float):
        return value
    raise TypeError(f"a {type(value).__name__} ({value!r})")


def _features_frame(rows: Sequence[Sequence[Any]], kind: str, fields: tuple[str, ...]) -> pd.DataFrame:
    """(external_id, *fields, attributes) rows as a frame indexed by id: the fields any row has, then the
    attributes as columns in alphabetical order (PostgreSQL's JSONB keeps no key order)."""
    index = pd.Index([r[0] for r in rows], dtype=object, name=kind)
    frame = pd.DataFrame({name: [r[1 + k] for r in rows] for k, name in enumerate(fields)}, index=index)
    frame = frame[[c for c in fields if frame[c].notna().any()]]
    if "price" in frame.columns:
        frame["price"] = frame["price"].astype(np.float64)
    attributes = pd.DataFrame.from_records([r[-1] or {} for r in rows], index=index)
    attributes = attributes[sorted(attributes.columns)]
    return pd.concat([frame, attributes], axis=1) if len(attributes.columns) else frame


def _vocabulary(internal: pd.Series, rows: Sequence[Sequence[Any]]) -> tuple[Vocabulary, np.ndarray]:
    """The vocabulary of a snapshot (ids with events by first event, then the rest by id) and the external
    id of every event."""
    internal_ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    external = np.asarray([r[1] for r in rows], dtype=object)
    with_events = pd.unique(internal.to_numpy(np.int64))
    order = np.concatenate([with_events, internal_ids[~np.isin(internal_ids, with_events)]])
    position = pd.Index(internal_ids).get_indexer(order)
    return Vocabulary(external[position]), external[pd.Index(internal_ids).get_indexer(internal.to_numpy())]


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)
