"""Event preparation: event-type weights, rating threshold, duplicate policy and k-core filtering.

Every step is vectorized and counted: the report says how many events each step removed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from recengine.errors import ConfigError, DataError

DUPLICATE_POLICIES = ("keep", "first", "last", "sum", "max")


def prepare_events(
    events: pd.DataFrame,
    *,
    event_weights: Mapping[str, float] | None = None,
    unknown_events: str = "error",
    duplicates: str = "keep",
    min_rating: float | None = None,
    k_core: int | None = None,
    user_core: int | None = None,
    item_core: int | None = None,
) -> tuple[pd.DataFrame, dict[str, int | float | list[str]]]:
    """Prepare a canonical event frame for Dataset.from_events; returns (events, report).

    Steps, in order:
    1. event_weights (e.g. {"view": 1, "click": 2, "cart": 4, "purchase": 8}): each event's weight becomes
       its type's weight (times any weight already there). A type without a weight is an error naming it,
       unless unknown_events="drop", which removes those events and counts them.
    2. min_rating: keep events with rating >= min_rating.
    3. duplicates, for repeated (user, item) pairs: "keep" all; "first"/"last" keep the earliest/latest
       event; "sum" keeps one event (the latest) with the weights summed (no weight column: the count);
       "max" keeps the event with the largest weight (ties: the latest).
    4. k_core (or user_core / item_core separately): repeatedly drop users with fewer than user_core
       distinct items and items with fewer than item_core distinct users until none is left.
    The report has input and output counts and, per step, how many events it removed.
    """
    if unknown_events not in ("error", "drop"):
        raise ConfigError(f"unknown_events must be 'error' or 'drop', got {unknown_events!r}")
    if duplicates not in DUPLICATE_POLICIES:
        raise ConfigError(f"duplicates must be one of {list(DUPLICATE_POLICIES)}, got {duplicates!r}")
    user_core = _core(user_core if user_core is not None else k_core, "user_core")
    item_core = _core(item_core if item_core is not None else k_core, "item_core")
    for column in ("user", "item", "timestamp"):
        if column not in events.columns:
            raise DataError(f"prepare_events: the event frame has no {column!r} column; it has "
                            f"{list(events.columns)}")

    report: dict[str, int | float | list[str]] = {"input": len(events)}
    events = events.reset_index(drop=True)

    if event_weights is not None:
        events, dropped, types = _apply_event_weights(events, event_weights, unknown_events)
        report["unknown_events"] = dropped
        if types:
            report["unknown_event_types"] = types

    if min_rating is not None:
        if "rating" not in events.columns:
            raise DataError("min_rating needs a rating column, and these events have none; map one when "
                            "reading or drop min_rating")
        keep = events["rating"].to_numpy(dtype=np.float64) >= float(min_rating)
        report["below_min_rating"] = int((~keep).sum())
        events = events[keep].reset_index(drop=True)

    if duplicates != "keep" or user_core > 1 or item_core > 1:
        # Dense codes once, shared by both steps (factorizing strings is the expensive part).
        u, i, n_items = _codes(events)
        if duplicates != "keep":
            before = len(events)
            events, rows = _deduplicate(events, duplicates, u.astype(np.int64) * max(1, n_items) + i)
            u, i = u[rows], i[rows]
            report["duplicates"] = before - len(events)
        if user_core > 1 or item_core > 1:
            before = len(events)
            events, rounds = _k_core(events, u, i, n_items, user_core, item_core)
            report["k_core"] = before - len(events)
            report["k_core_rounds"] = rounds

    report["output"] = len(events)
    return events, report


def _core(value: int | None, name: str) -> int:
    if value is None:
        return 1
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _apply_event_weights(
    events: pd.DataFrame, event_weights: Mapping[str, float], unknown_events: str,
) -> tuple[pd.DataFrame, int, list[str]]:
    if "event" not in events.columns:
        raise DataError("event_weights needs an event column, and these events have none; map the event type "
                        "column when reading (ColumnMapping(event=...)) or drop event_weights")
    bad_weights = {k: v for k, v in event_weights.items()
                   if not isinstance(v, int | float) or isinstance(v, bool) or not np.isfinite(v)}
    if bad_weights:
        raise ConfigError(f"event_weights must be finite numbers; got {bad_weights}")
    # Map the few distinct types, not every event.
    codes, types = pd.factorize(events["event"].astype(str), sort=True)
    by_type = {str(k): float(v) for k, v in event_weights.items()}
    type_weight = np.array([by_type.get(str(t), np.nan) for t in types], dtype=np.float64)
    weight_of = type_weight[codes]
    unknown = np.isnan(weight_of)
    unknown_types = [str(t) for t in types[np.isnan(type_weight)]]
    if unknown.any() and unknown_events == "error":
        raise DataError(
            f"event type(s) {unknown_types} have no weight in event_weights ({int(unknown.sum())} events); "
            f"add them to event_weights, or pass unknown_events='drop' to remove those events")
    events = events[~unknown].copy()
    w = weight_of[~unknown]
    if "weight" in events.columns:
        w = w * events["weight"].to_numpy(dtype=np.float64)
    events["weight"] = w
    return events.reset_index(drop=True), int(unknown.sum()), unknown_types


def _codes(events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, int]:
    """Dense user and item codes, and the number of distinct items."""
    u, _ = pd.factorize(events["user"], sort=False)
    i, items = pd.factorize(events["item"], sort=False)
    return u.astype(np.int64), i.astype(np.int64), len(items)


def _deduplicate(events: pd.DataFrame, policy: str, key: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """One event per (user, item) key under the policy; also the kept row positions (in input order)."""
    n = len(events)
    if n == 0:
        return events, np.arange(0)
    ts = events["timestamp"].to_numpy()
    has_weight = "weight" in events.columns
    weight = events["weight"].to_numpy(dtype=np.float64) if has_weight else np.ones(n)
    if policy == "max":
        # Within a pair: largest weight last, then latest time, then input order; keep each pair's last row.
        order = np.lexsort((ts, weight, key))  # lexsort is stable: ties keep input order
    else:
        order = _stable_order(key, ts)
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    ends = np.r_[starts[1:], n] - 1
    chosen = order[starts] if policy == "first" else order[ends]
    # Back to input order without another sort: chosen rows are distinct positions.
    kept = np.zeros(n, dtype=bool)
    kept[chosen] = True
    rows = np.flatnonzero(kept)
    out = events.iloc[rows].copy()
    if policy == "sum":
        totals = np.empty(n)
        totals[chosen] = np.add.reduceat(weight[order], starts)
        out["weight"] = totals[rows]
    return out.reset_index(drop=True), rows


def _stable_order(key: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """Positions sorted by (key, ts), ties in input order; one sort of a combined key when it fits int64."""
    ts = ts.astype(np.int64)
    lo, span = int(ts.min()), int(ts.max()) - int(ts.min()) + 1
    if int(key.max()) < (2**62) // span:
        return np.argsort(key * span + (ts - lo), kind="stable")
    return np.lexsort((ts, key))


def _k_core(
    events: pd.DataFrame, u: np.ndarray, i: np.ndarray, n_items: int, user_core: int, item_core: int,
) -> tuple[pd.DataFrame, int]:
    """Iterate until every user has >= user_core distinct items and every item >= item_core distinct users.

    A round removes whole users or items, so a pair's first occurrence stays its first occurrence: the
    distinct counts are bincounts over first occurrences, one pass per round (not per user)."""
    n = len(events)
    if n == 0:
        return events, 0
    first = np.zeros(n, dtype=bool)
    first[np.unique(u * max(1, n_items) + i, return_index=True)[1]] = True
    keep = np.ones(n, dtype=bool)
    n_users = int(u.max()) + 1
    rounds = 0
    while True:
        counted = keep & first
        user_count = np.bincount(u[counted], minlength=n_users)
        item_count = np.bincount(i[counted], minlength=n_items)
        new_keep = keep & (user_count[u] >= user_core) & (item_count[i] >= item_core)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
        rounds += 1
    return events[keep].reset_index(drop=True), rounds
