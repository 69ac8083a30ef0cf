"""Experiments inside the service: definitions checked against the store, sticky hashed assignment, bandit
allocation, and the analysis of what the impression log holds.

Assignment: a user's bucket is a hash of (the experiment's salt, the user id) into N_BUCKETS; the experiment's
definition says which variant (or the holdout) owns each bucket. Salts are random per experiment, so
assignments are independent across experiments. A change of shares moves only as many buckets as it must,
each from a variant that shrinks to one that grows: a user keeps their variant unless theirs gave buckets
away, and nobody moves between two variants whose shares did not change.

A bandit experiment ("allocate traffic to the best variant automatically") keeps the holdout by hash and
chooses a variant for every other request by Thompson sampling (recengine.online.bandits.BetaThompson) over
the variants, rewarded by the primary metric: a pull is an impression, a success an impression that got an
outcome of the primary metric's type. Both are rows in the store (impressions, bandit_rewards), so the
posterior a restarted service reads is the one it left.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from recengine.errors import ConfigError, DataError, UnknownIdError
from recengine.online.bandits import BetaThompson
from recengine.online.experiments import SRM_THRESHOLD, analyze
from recengine.store import ExperimentRecord, Store
from recengine.store.store import ATTRIBUTION_WINDOW

#: The surface a recommendation request is on unless it names one.
DEFAULT_SURFACE = "default"
#: Hash buckets per experiment: shares are multiples of 1 / N_BUCKETS.
N_BUCKETS = 10_000
#: The name of the holdout group in impressions and analyses (the service's default serving).
HOLDOUT = "holdout"
#: Outcome event types: metrics name one, and an event answering a request must have one (or none).
OUTCOME_EVENTS = ("click", "cart", "purchase", "rating", "dwell", "value")
ALLOCATIONS = ("fixed", "bandit")
#: Shares are checked to sum to 1 within this.
_SHARE_TOLERANCE = 1e-6
#: The sequential p-value below which the dashboard's line says ship (or stop).
ALPHA = 0.05
#: Looks of the lift-over-time series.
LOOKS = 12
_NAME = re.compile(r"[A-Za-z0-9._-]{1,200}")


@dataclass(frozen=True)
class Variant:
    """One arm: a model version to serve (None: the serving model) and/or a diversity setting (None: the
    request's own)."""

    name: str
    share: float
    model_version: int | None = None
    diversity: float | None = None


@dataclass(frozen=True)
class Experiment:
    name: str
    surface: str
    variants: tuple[Variant, ...]
    holdout: float
    allocation: str
    primary_metric: str
    guardrail_metrics: tuple[str, ...]
    attribution_window: int
    salt: str
    #: The owner of every bucket: a variant's index, or -1 for the holdout.
    owners: np.ndarray = field(repr=False, compare=False)
    starts_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    stops_at: datetime | None = None

    def running(self, at: datetime) -> bool:
        return self.starts_at <= at and (self.stops_at is None or at < self.stops_at)

    def bucket(self, user: str) -> int:
        digest = hashlib.blake2b(f"{self.salt}:{user}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") % N_BUCKETS

    def assign(self, user: str) -> Variant | None:
        """The user's variant by hash; None for the holdout."""
        owner = int(self.owners[self.bucket(user)])
        return None if owner < 0 else self.variants[owner]

    def shares(self) -> dict[str, float]:
        """Each group's share of users (the holdout's included when it has one), as the buckets lay them out."""
        counts = np.bincount(self.owners + 1, minlength=len(self.variants) + 1) / N_BUCKETS
        groups = {v.name: float(counts[k + 1]) for k, v in enumerate(self.variants) if counts[k + 1]}
        return ({HOLDOUT: float(counts[0])} if counts[0] else {}) | groups

    def to_dict(self) -> dict[str, Any]:
        """The API's view (without the salt and the bucket layout)."""
        return {"name": self.name, "surface": self.surface, "variants": [asdict(v) for v in self.variants],
                "holdout": self.holdout, "allocation": self.allocation, "primary_metric": self.primary_metric,
                "guardrail_metrics": list(self.guardrail_metrics), "attribution_window": self.attribution_window,
                "starts_at": self.starts_at, "stops_at": self.stops_at}

    def definition(self) -> dict[str, Any]:
        """The stored JSON document; the layout as runs of (owner, first bucket, end)."""
        change = np.flatnonzero(np.diff(self.owners)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [N_BUCKETS]])
        runs = [[int(self.owners[a]), int(a), int(b)] for a, b in zip(starts, ends, strict=True)]
        return {"variants": [asdict(v) for v in self.variants], "holdout": self.holdout,
                "allocation": self.allocation, "primary_metric": self.primary_metric,
                "guardrail_metrics": list(self.guardrail_metrics), "attribution_window": self.attribution_window,
                "salt": self.salt, "buckets": runs}

    @classmethod
    def from_record(cls, record: ExperimentRecord) -> Experiment:
        d = record.definition
        owners = np.empty(N_BUCKETS, dtype=np.int16)
        for owner, start, end in d["buckets"]:
            owners[start:end] = owner
        return cls(record.name, record.surface, tuple(Variant(**v) for v in d["variants"]), d["holdout"],
                   d["allocation"], d["primary_metric"], tuple(d["guardrail_metrics"]), d["attribution_window"],
                   d["salt"], owners, record.starts_at, record.stops_at)


@dataclass(frozen=True)
class Assignment:
    """Where a request goes: its experiment, its variant (None: the holdout) and the probability of that."""

    experiment: Experiment
    variant: Variant | None
    propensity: float

    @property
    def variant_name(self) -> str:
        return HOLDOUT if self.variant is None else self.variant.name


# ------------------------------------------------------------------------------------------- the layout
def _targets(shares: Sequence[float], holdout: float) -> np.ndarray:
    """Buckets per owner (holdout first), summing to N_BUCKETS: largest remainders of the exact quotas."""
    quotas = np.array([holdout, *((1 - holdout) * np.asarray(shares, dtype=np.float64))]) * N_BUCKETS
    counts = np.floor(quotas).astype(np.int64)
    counts[np.argsort(-(quotas - counts), kind="stable")[:N_BUCKETS - counts.sum()]] += 1
    return counts


def _layout(shares: Sequence[float], holdout: float, previous: np.ndarray | None = None) -> np.ndarray:
    """Bucket owners for these shares (-1 the holdout, then variants by index). From a previous layout, only
    the surplus of shrinking owners (their highest buckets) moves, and only to owners that grow."""
    targets = _targets(shares, holdout)
    if previous is None:
        return np.repeat(np.arange(-1, len(shares), dtype=np.int16), targets)
    owners = previous.copy()
    freed = []
    for owner, target in zip(range(-1, len(shares)), targets, strict=True):
        mine = np.flatnonzero(owners == owner)
        if len(mine) > target:
            freed.append(mine[target:])
    pool = np.sort(np.concatenate(freed)) if freed else np.zeros(0, dtype=np.int64)
    taken = 0
    for owner, target in zip(range(-1, len(shares)), targets, strict=True):
        need = int(target - (owners == owner).sum())
        if need > 0:
            owners[pool[taken:taken + need]] = owner
            taken += need
    return owners


# ----------------------------------------------------------------------------------------- definitions
def _check_name(name: object, what: str) -> str:
    # Names travel in response headers (X-Experiment, X-Variant) and URL paths: plain characters only.
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{what} must be 1 to 200 letters, digits, '.', '_' or '-', got {name!r}")
    return name


def _check_shares(shares: Sequence[float], holdout: float, where: str) -> None:
    if not 0 <= holdout < 1:
        raise ConfigError(f"{where}: holdout must be a share in [0, 1), got {holdout}")
    for share in shares:
        if not (math.isfinite(share) and 0 <= share <= 1):
            raise ConfigError(f"{where}: a share must lie in [0, 1], got {share}")
    total = float(sum(shares))
    if abs(total - 1) > _SHARE_TOLERANCE:
        raise ConfigError(f"{where}: the variants' shares must sum to 1 (of the traffic outside the holdout); "
                          f"they sum to {total:g}")


def _check_metric(metric: object, what: str) -> str:
    if metric not in OUTCOME_EVENTS:
        raise ConfigError(f"{what} {metric!r} is not an outcome event type; use one of {', '.join(OUTCOME_EVENTS)}")
    return str(metric)


class Experiments:
    """The experiments of one store: define, reshare and stop them, route requests, reward bandits. Requests
    read `self._running` (replaced whole on every change) without a lock."""

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()
        self._all: dict[str, Experiment] = {}
        self._bandits: dict[str, BetaThompson] = {}
        #: Per surface, its experiments by start time.
        self._on_surface: dict[str, tuple[Experiment, ...]] = {}
        for record in store.experiments():
            self._publish(Experiment.from_record(record))

    # ------------------------------------------------------------------------------------------ defining
    def create(self, name: str, variants: Sequence[Mapping[str, Any]], *, surface: str = DEFAULT_SURFACE,
               holdout: float = 0.0, allocation: str = "fixed", primary_metric: str = "click",
               guardrail_metrics: Sequence[str] = (), attribution_window: int = ATTRIBUTION_WINDOW,
               starts_at: datetime | None = None, stops_at: datetime | None = None) -> Experiment:
        """Define and store an experiment; ConfigError saying why for anything that cannot run: shares not
        summing to 1, an unknown (or unservable) model version, another experiment on the surface at the
        same time, a metric that is not an outcome type."""
        name, surface = _check_name(name, "the experiment's name"), _check_name(surface, "surface")
        if allocation not in ALLOCATIONS:
            raise ConfigError(f"allocation must be one of {', '.join(ALLOCATIONS)}, got {allocation!r}")
        if len(variants) < 2:
            raise ConfigError(f"experiment {name!r}: give at least two variants, got {len(variants)}")
        arms = tuple(self._variant(name, k, v) for k, v in enumerate(variants))
        names = [v.name for v in arms]
        if len(set(names)) < len(names) or HOLDOUT in names:
            raise ConfigError(f"experiment {name!r}: variant names must be distinct and not {HOLDOUT!r}; got {names}")
        _check_shares([v.share for v in arms], holdout, f"experiment {name!r}")
        primary = _check_metric(primary_metric, "primary_metric")
        guardrails = tuple(_check_metric(m, "guard-rail metric") for m in guardrail_metrics)
        if not isinstance(attribution_window, int) or attribution_window <= 0:
            raise ConfigError(f"attribution_window must be a positive number of seconds, got {attribution_window!r}")
        starts_at = (starts_at or datetime.now(UTC)).astimezone(UTC)
        stops_at = None if stops_at is None else stops_at.astimezone(UTC)
        if stops_at is not None and stops_at <= starts_at:
            raise ConfigError(f"experiment {name!r}: stops_at {stops_at.isoformat()} is not after starts_at "
                              f"{starts_at.isoformat()}")
        experiment = Experiment(name, surface, arms, float(holdout), allocation, primary, guardrails,
                                attribution_window, secrets.token_hex(8),
                                _layout([v.share for v in arms], float(holdout)), starts_at, stops_at)
        with self._lock:
            self._check_overlap(experiment)
            record = self.store.add_experiment(name, surface, experiment.definition(), starts_at, stops_at)
            self._publish(Experiment.from_record(record))
        return self._all[name]

    def reshare(self, name: str, shares: Mapping[str, float], holdout: float | None = None) -> Experiment:
        """New traffic shares (every variant named) and optionally a new holdout; only the buckets the change
        needs move (see the module's notes)."""
        with self._lock:
            experiment = self.get(name)
            if set(shares) != {v.name for v in experiment.variants}:
                raise ConfigError(f"experiment {name!r}: give a share for each variant "
                                  f"({', '.join(v.name for v in experiment.variants)}), got {sorted(shares)}")
            holdout = experiment.holdout if holdout is None else float(holdout)
            new = [float(shares[v.name]) for v in experiment.variants]
            _check_shares(new, holdout, f"experiment {name!r}")
            arms = tuple(replace(v, share=s) for v, s in zip(experiment.variants, new, strict=True))
            changed = replace(experiment, variants=arms, holdout=holdout, owners=_layout(new, holdout,
                                                                                        experiment.owners))
            record = self.store.update_experiment(name, definition=changed.definition())
            self._publish(Experiment.from_record(record))
        return self._all[name]

    def stop(self, name: str) -> Experiment:
        with self._lock:
            experiment = self.get(name)
            now = datetime.now(UTC)
            if experiment.stops_at is not None and experiment.stops_at <= now:
                raise ConfigError(f"experiment {name!r} stopped already, at {experiment.stops_at.isoformat()}")
            self._publish(Experiment.from_record(self.store.update_experiment(name, stops_at=now)))
        return self._all[name]

    def reload(self) -> None:
        """Read the store's experiments again: others define them too (the CLI, another server process)."""
        records = self.store.experiments()  # read outside the lock, which bandit requests take
        with self._lock:
            for record in records:
                self._publish(Experiment.from_record(record))

    def get(self, name: str) -> Experiment:
        found = self._all.get(name)
        if found is None:
            raise UnknownIdError(f"no experiment named {name!r}; GET /v1/experiments lists them")
        return found

    def all(self) -> list[Experiment]:
        return list(self._all.values())

    def model_versions(self) -> set[int]:
        """The model versions of variants of experiments that have not stopped."""
        now = datetime.now(UTC)
        return {v.model_version for e in self._all.values() if e.stops_at is None or e.stops_at > now
                for v in e.variants if v.model_version is not None}

    # ------------------------------------------------------------------------------------------- serving
    def route(self, user: str, surface: str, at: datetime) -> Assignment | None:
        """The experiment running on the surface and the request's variant; None outside experiments."""
        experiment = next((e for e in self._on_surface.get(surface, ()) if e.running(at)), None)
        if experiment is None:
            return None
        variant = experiment.assign(user)
        if variant is None:
            return Assignment(experiment, None, experiment.holdout)
        if experiment.allocation == "fixed":
            return Assignment(experiment, variant, (1 - experiment.holdout) * variant.share)
        bandit = self._bandits[experiment.name]
        with self._lock:  # numpy's generator is not thread-safe; a pull also changes the posterior
            selection = bandit.select()
            bandit.failures_[selection.arm] += 1  # a pull without a reward until an outcome says otherwise
        return Assignment(experiment, experiment.variants[selection.arm], selection.propensity)

    def reward(self, events: pd.DataFrame, flush: Callable[[], None]) -> int:
        """Reward the bandits for these stored events: each event of a bandit experiment's primary metric type
        that answers (by request id, else by window) one of its impressions. flush writes the impressions that
        wait (an outcome may come before its impression's batch). Returns how many impressions were newly
        rewarded; the posterior has moved when this returns."""
        bandits = [e for e in self._all.values() if e.allocation == "bandit"]
        metrics = {e.primary_metric for e in bandits}
        if not bandits or "event" not in events.columns or not events["event"].isin(metrics).any():
            return 0
        flush()
        outcomes = events[events["event"].isin(metrics)]
        given = outcomes["request_id"].notna() if "request_id" in outcomes.columns else \
            pd.Series(False, index=outcomes.index)
        shown = self.store.impression_variants(outcomes.loc[given, "request_id"])
        own = given & outcomes.get("request_id", given).isin(set(shown))
        pairs = list(zip(outcomes.loc[own, "request_id"], outcomes.loc[own, "event"], strict=True))
        if not own.all():  # the rest by window (the slower path: a look at those users' impressions)
            window = max(e.attribution_window for e in bandits)
            attributed = self.store.attribute(outcomes[~own], window).dropna(subset=["request_id"])
            shown |= self.store.impression_variants(attributed["request_id"])
            pairs += list(zip(attributed["request_id"], attributed["event"], strict=True))
        by_name = {e.name: e for e in bandits}
        rewards = []
        for request, event in pairs:
            experiment, variant = shown.get(request, (None, None))
            e = by_name.get(experiment)
            if e is not None and event == e.primary_metric and variant != HOLDOUT:
                rewards.append((request, experiment, variant))
        with self._lock:
            fresh = self.store.add_bandit_rewards(rewards) if rewards else []
            for _, experiment, variant in fresh:
                arm = [v.name for v in by_name[experiment].variants].index(variant)
                bandit = self._bandits[experiment]
                bandit.successes_[arm] += 1
                bandit.failures_[arm] = max(bandit.failures_[arm] - 1, 0)
        return len(fresh)

    def posterior(self, name: str) -> dict[str, dict[str, float]] | None:
        """A bandit experiment's posterior per variant: Beta(1 + successes, 1 + failures) and its mean."""
        bandit = self._bandits.get(name)
        if bandit is None:
            return None
        experiment = self.get(name)
        return {v.name: {"successes": float(s), "failures": float(f),
                         "mean": float((bandit.alpha + s) / (bandit.alpha + bandit.beta + s + f))}
                for v, s, f in zip(experiment.variants, bandit.successes_, bandit.failures_, strict=True)}

    # ---------------------------------------------------------------------------------------- internals
    def _variant(self, experiment: str, k: int, spec: Mapping[str, Any]) -> Variant:
        where = f"experiment {experiment!r}, variants[{k}]"
        unknown = set(spec) - {"name", "share", "model_version", "diversity"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; a variant has name, share, "
                              f"model_version and diversity")
        name = _check_name(spec.get("name"), f"{where}: name")
        share = spec.get("share")
        if isinstance(share, bool) or not isinstance(share, int | float):
            raise ConfigError(f"{where}: share must be a number in [0, 1], got {share!r}")
        version, diversity = spec.get("model_version"), spec.get("diversity")
        if version is not None:
            try:
                found = self.store.version(int(version))
            except UnknownIdError:
                raise ConfigError(f"{where}: unknown model version {version}; GET /v1/models lists them") from None
            if found.status not in ("ready", "active") or not found.artifact_path:
                raise ConfigError(f"{where}: model version {version} is {found.status}; only a ready or active "
                                  f"version with an artifact can be served")
        if diversity is not None and not (isinstance(diversity, int | float) and 0 <= diversity <= 1):
            raise ConfigError(f"{where}: diversity must lie in [0, 1], got {diversity!r}")
        return Variant(name, float(share), None if version is None else int(version),
                       None if diversity is None else float(diversity))

    def _check_overlap(self, new: Experiment) -> None:
        end = new.stops_at or datetime.max.replace(tzinfo=UTC)
        for other in self._all.values():
            other_end = other.stops_at or datetime.max.replace(tzinfo=UTC)
            if other.surface == new.surface and other.starts_at < end and new.starts_at < other_end:
                raise ConfigError(f"experiment {other.name!r} runs on surface {new.surface!r} at the same time "
                                  f"(from {other.starts_at.isoformat()}"
                                  f"{' until ' + other.stops_at.isoformat() if other.stops_at else ', not stopped'}); "
                                  f"stop it, or start this one after it ends or on another surface")

    def _publish(self, experiment: Experiment) -> None:
        self._all[experiment.name] = experiment
        if experiment.allocation == "bandit" and experiment.name not in self._bandits:
            bandit = BetaThompson(len(experiment.variants), seed=int(experiment.salt, 16) % 2**32)
            counts = self.store.bandit_counts(experiment.name)
            for arm, variant in enumerate(experiment.variants):
                pulls, rewards = counts.get(variant.name, (0, 0))
                bandit.successes_[arm] = rewards
                bandit.failures_[arm] = max(pulls - rewards, 0)
            self._bandits[experiment.name] = bandit
        surfaces: dict[str, list[Experiment]] = {}
        for e in sorted(self._all.values(), key=lambda e: e.starts_at):
            surfaces.setdefault(e.surface, []).append(e)
        self._on_surface = {s: tuple(found) for s, found in surfaces.items()}


# -------------------------------------------------------------------------------------------- analysis
def analyze_experiment(store: Store, experiment: Experiment, looks: int = LOOKS) -> dict[str, Any]:
    """Per metric (primary, then guard-rails): recengine.online.experiments.analyze over units (users under
    hashed assignment; requests under a bandit, which assigns each anew) with exposures = impressions and
    conversions = impressions with an attributed outcome of the metric's type; the primary metric's lift over
    time (cumulative, at `looks` evenly spaced times); and the line: ship, keep running or stop."""
    shown = store.impressions(experiment=experiment.name).drop_duplicates("request_id")[
        ["request_id", "user", "created_at", "variant"]]
    events = store.events()
    events = events[events["user"].isin(set(shown["user"]))]
    attributed = store.attribute(events[events["event"].isin(OUTCOME_EVENTS)], experiment.attribution_window)
    # Outcomes of these users that no impression explains are counted, not dropped (they may answer another
    # surface's slates, or come from outside recommendations).
    unattributed = int(attributed["request_id"].isna().sum())
    outcomes = attributed[attributed["request_id"].isin(set(shown["request_id"]))]
    bandit = experiment.allocation == "bandit"
    shares = None if bandit else experiment.shares()
    metrics = {}
    for metric in (experiment.primary_metric, *experiment.guardrail_metrics):
        metrics[metric] = _analysis(_units(experiment, shown, outcomes, metric), shares, bandit)
    timeline = []
    if len(shown):
        first, last = shown["created_at"].min(), shown["created_at"].max()
        for at in pd.date_range(first, last, periods=looks) if last > first else [last]:
            outcome_time = pd.to_datetime(outcomes["timestamp"], unit="s", utc=True)
            units = _units(experiment, shown[shown["created_at"] <= at], outcomes[outcome_time <= at],
                           experiment.primary_metric)
            result = _analysis(units, shares, bandit)
            timeline.append({"at": at.isoformat(), "variants": {
                name: {k: row.get(k) for k in ("lift", "ci_low", "ci_high", "p_value_sequential")}
                for name, row in result.get("variants", {}).items()}})
    exposures = shown.groupby("variant").size().to_dict()
    return {"experiment": experiment.to_dict(), "exposures": {str(k): int(v) for k, v in exposures.items()},
            "outcomes": {"attributed": int(len(outcomes)), "unattributed": unattributed}, "metrics": metrics,
            "timeline": timeline, "decision": decide(experiment, metrics)}


def _units(experiment: Experiment, shown: pd.DataFrame, outcomes: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The unit table of analyze(), in the experiment's variant order then the holdout (analyze takes the
    first variant as the control unless one is named control)."""
    converted = set(outcomes.loc[outcomes["event"] == metric, "request_id"])
    frame = shown.assign(conversions=shown["request_id"].isin(converted).astype(np.int64), exposures=1)
    unit = "request_id" if experiment.allocation == "bandit" else "user"
    units = frame.groupby([unit, "variant"], as_index=False)[["exposures", "conversions"]].sum()
    order = {name: k for k, name in enumerate([*(v.name for v in experiment.variants), HOLDOUT])}
    units = units.iloc[np.argsort(units["variant"].map(order).to_numpy(), kind="stable")]
    return units.rename(columns={unit: "unit"})[["unit", "variant", "exposures", "conversions"]]


def _analysis(units: pd.DataFrame, shares: dict[str, float] | None, bandit: bool) -> dict[str, Any]:
    """analyze() of the units, or why there is nothing to say yet (too few units or no conversions)."""
    if units["variant"].nunique() < 2:
        return {"status": "insufficient", "reason": "fewer than two groups have exposures yet"}
    present = set(units["variant"])
    design = None if shares is None or set(shares) != present else shares
    try:
        result = analyze(units, shares=design)
    except DataError as error:
        return {"status": "insufficient", "reason": str(error)}
    if bandit or design is None:
        # Traffic follows the posterior (or not every group has units yet): no designed split to check.
        result |= {"srm_p_value": None, "srm_flag": False}
    return {"status": "ok"} | result


def decide(experiment: Experiment, metrics: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The dashboard's line from the always-valid (sequential) p-values, which stay valid however often the
    dashboard is read: stop on a broken split or a guard-rail hurt, ship a significant gain in the primary
    metric, stop a significant loss, else keep running."""
    primary = metrics[experiment.primary_metric]
    if primary.get("status") != "ok":
        return {"decision": "keep running", "reason": primary.get("reason", "not enough data yet")}
    if primary.get("srm_flag"):
        return {"decision": "stop", "reason": f"sample ratio mismatch (p = {primary['srm_p_value']:.2g} < "
                                              f"{SRM_THRESHOLD:g}): the split is broken, the results cannot be trusted"}
    for metric in experiment.guardrail_metrics:
        for name, row in metrics[metric].get("variants", {}).items():
            if (row.get("ci_high") or 0) < 0 and (row.get("p_value_sequential") or 1) < ALPHA:
                return {"decision": "stop", "reason": f"guard-rail {metric} falls under {name} "
                                                      f"(lift {row['lift']:+.1%})"}
    significant = {name: row for name, row in primary["variants"].items()
                   if (row.get("p_value_sequential") or 1) < ALPHA}
    winners = {name: row for name, row in significant.items() if row["lift"] > 0}
    if winners:
        best = max(winners, key=lambda n: winners[n]["lift"])
        return {"decision": "ship", "reason": f"{best}: {experiment.primary_metric} lift "
                                              f"{winners[best]['lift']:+.1%} (sequential p = "
                                              f"{winners[best]['p_value_sequential']:.2g})"}
    if significant and len(significant) == len(primary["variants"]):
        return {"decision": "stop", "reason": f"every variant does worse than {primary['control']['variant']} "
                                              f"on {experiment.primary_metric}"}
    return {"decision": "keep running", "reason": f"no significant difference in {experiment.primary_metric} "
                                                  f"yet (sequential p ≥ {ALPHA})"}
