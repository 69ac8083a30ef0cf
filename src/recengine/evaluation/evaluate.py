"""The evaluator: top-K lists from a fitted model on a Split, every metric at every K, with intervals."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.data.split import Split
from recengine.errors import ConfigError, DataError, NotFittedError
from recengine.evaluation import metrics as M
from recengine.evaluation.stats import MeanCI, PairedTest, mean_ci, paired_test
from recengine.models.base import Recommender

__all__ = ["ALL_METRICS", "DEFAULT_METRICS", "Report", "compare", "evaluate", "fit_and_evaluate",
           "leaderboard"]

#: Per-user metrics reported at every cut-off K ("ndcg@10"). arp = average recommended-item popularity.
PER_USER_AT_K = (*M.RANKING_METRICS, "novelty", "arp", "diversity")
#: Metrics over all lists at every cut-off K (one number each, no interval).
GLOBAL_AT_K = ("coverage", "gini")
#: Rating-prediction metrics (for models with feedback == "ratings"), over all test entries.
RATING_METRICS = ("rmse", "mae")
ALL_METRICS = (*PER_USER_AT_K, *GLOBAL_AT_K, *RATING_METRICS)
#: What evaluate computes when not told: accuracy, coverage, novelty and popularity bias (diversity needs item
#: features; rmse/mae are added for rating models).
DEFAULT_METRICS = (*M.RANKING_METRICS, "coverage", "novelty", "arp", "gini")
#: Metrics where lower is better (leaderboards sort them ascending).
LOWER_IS_BETTER = ("rmse", "mae", "arp", "gini")


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of `metric` ("rmse", "gini@10", "fit_seconds", ...) are better."""
    return metric.split("@")[0] in LOWER_IS_BETTER or metric.endswith("_seconds")


def metric_cutoff(metric: str) -> int | None:
    """The K of a metric written "name@K" (None for metrics without a cut-off); a bad K is a ConfigError."""
    name, sep, k = metric.partition("@")
    if not sep:
        return None
    if not k.isdigit() or int(k) < 1:
        raise ConfigError(f"metric {metric!r}: write it as name@K with K a positive integer")
    return int(k)


@dataclass
class Report:
    """One model evaluated on one Split.

    metrics: the mean of every metric ("ndcg@10", "coverage@10", "rmse", ...). intervals: confidence intervals
    of the per-user (or, for rmse/mae, per-entry) means. per_user: per-user arrays aligned with `users` (the
    internal index of each evaluated user; only users with at least one relevant test item), so two Reports on
    the same Split can be compared pairwise. per_entry: signed rating errors for rmse/mae. timings in seconds.
    """

    model: str
    label: str
    protocol: str
    ks: tuple[int, ...]
    metrics: dict[str, float]
    intervals: dict[str, MeanCI]
    per_user: dict[str, np.ndarray]
    users: np.ndarray
    per_entry: dict[str, np.ndarray] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return len(self.users)

    def to_dict(self, per_user: bool = False) -> dict[str, Any]:
        """JSON-ready summary (NaN becomes None); per_user=True adds the per-user arrays as lists."""
        out: dict[str, Any] = {
            "model": self.model, "label": self.label, "protocol": self.protocol, "ks": list(self.ks),
            "n_users": self.n_users, "metrics": self.metrics,
            "intervals": {k: [v.low, v.high] for k, v in self.intervals.items()},
            "confidence": next(iter(self.intervals.values())).confidence if self.intervals else None,
            "timings": self.timings, "dataset": self.dataset, "params": self.params, "info": self.info,
        }
        if per_user:
            out["users"] = self.users
            out["per_user"] = self.per_user
        return _jsonable(out)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_jsonable(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# ----------------------------------------------------------------------------------------------- evaluate
def _check_ks(ks: Iterable[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1 for k in ks):
        raise ConfigError(f"ks must be positive integers, got {ks!r}")
    return tuple(sorted({int(k) for k in ks}))


def _resolve_metrics(
    metrics: Sequence[str] | None, model: Recommender, has_features: bool
) -> tuple[str, ...]:
    if metrics is None:
        chosen = list(DEFAULT_METRICS)
        if has_features:
            chosen.append("diversity")
        if model.feedback == "ratings":
            chosen.extend(RATING_METRICS)
        return tuple(chosen)
    chosen = [metrics] if isinstance(metrics, str) else list(metrics)
    unknown = [m for m in chosen if m not in ALL_METRICS]
    if unknown:
        raise ConfigError(f"unknown metric(s) {unknown}; available: {', '.join(ALL_METRICS)}")
    if "diversity" in chosen and not has_features:
        raise ConfigError("the diversity metric needs item_features (an item-by-feature matrix)")
    if any(m in RATING_METRICS for m in chosen) and model.feedback != "ratings":
        raise ConfigError(f"rmse/mae need a rating model; {model.name or type(model).__name__} ranks items "
                          "(its feedback is implicit)")
    return tuple(dict.fromkeys(chosen))


def _relevant(truth: sp.csr_matrix, threshold: float | None) -> sp.csr_matrix:
    truth = sp.csr_matrix(truth, copy=True)
    if threshold is not None:
        truth.data = np.where(truth.data >= threshold, 1.0, 0.0).astype(np.float32)
        truth.eliminate_zeros()
    return truth


def evaluate(
    model: Recommender,
    split: Split,
    ks: Iterable[int] = (10, 20, 100),
    metrics: Sequence[str] | None = None,
    *,
    item_features: np.ndarray | sp.spmatrix | None = None,
    relevance_threshold: float | None = None,
    confidence: float = 0.95,
) -> Report:
    """Evaluate a fitted model on a Split without fitting anything.

    One ``model.recommend(split.query, k=max(ks), exclude_seen=split.exclude_seen, candidates=...)`` call gives
    the lists; every metric is computed at every K. Rating models (feedback == "ratings") also get RMSE/MAE
    from ``model.predict`` at the truth entries. relevance_threshold: a truth entry counts as relevant for the
    ranking metrics only if its value (the rating) is >= this; None = every held-out item is relevant. Users
    with no relevant item are not evaluated (their count is in info["users_without_relevant_items"]).
    """
    if not isinstance(model, Recommender):
        raise ConfigError(f"evaluate needs a Recommender, got {type(model).__name__}")
    if not model.is_fitted:
        raise NotFittedError(f"{type(model).__name__} is not fitted: call fit(split.train) first, or use "
                             "fit_and_evaluate")
    ks = _check_ks(ks)
    if item_features is not None and item_features.shape[0] != split.train.n_items:
        raise DataError(f"item_features has {item_features.shape[0]} rows for {split.train.n_items} items")
    chosen = _resolve_metrics(metrics, model, item_features is not None)
    timings: dict[str, float] = {}

    truth = _relevant(split.truth, relevance_threshold)
    rows = np.flatnonzero(np.diff(truth.indptr) > 0)
    info = {"split": split.info, "relevance_threshold": relevance_threshold,
            "users_without_relevant_items": int(split.n_users - len(rows))}
    if len(rows) == 0:
        raise DataError("no evaluated user has a relevant test item; lower relevance_threshold")
    everyone = len(rows) == split.n_users
    query = split.query if everyone else split.query[rows]
    candidates = split.candidates if everyone or split.candidates is None else split.candidates[rows]
    truth = truth if everyone else truth[rows]

    start = time.perf_counter()
    items, _ = model.recommend(query, k=max(ks), exclude_seen=split.exclude_seen, candidates=candidates)
    timings["predict_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    per_user: dict[str, np.ndarray] = {}
    scalars: dict[str, float] = {}
    ranking = [m for m in chosen if m in M.RANKING_METRICS]
    if ranking:
        per_user.update(M.ranking_metrics(items, truth, ks, ranking))
    popularity = split.train.item_popularity()
    features = None if item_features is None else sp.csr_matrix(item_features)
    n_items = split.train.n_items
    # Popularity shares are over the users who have training interactions (held-out users of `strong` have none).
    active_users = max(1, int((np.diff(split.train.indptr) > 0).sum()))
    for k in ks:
        top = items[:, :k]
        if "novelty" in chosen:
            per_user[f"novelty@{k}"] = M.novelty(top, popularity, active_users)
        if "arp" in chosen:
            per_user[f"arp@{k}"] = M.average_popularity(top, popularity)
        if "diversity" in chosen:
            per_user[f"diversity@{k}"] = M.intra_list_diversity(top, features)
        if "coverage" in chosen:
            scalars[f"coverage@{k}"] = M.catalog_coverage(top, n_items)
        if "gini" in chosen:
            scalars[f"gini@{k}"] = M.gini_index(top, n_items)

    intervals = {name: mean_ci(values, confidence) for name, values in per_user.items()}
    per_entry: dict[str, np.ndarray] = {}
    if any(m in RATING_METRICS for m in chosen):
        if not split.test.has_ratings:
            raise DataError(f"rmse/mae need explicit ratings in the test data of {split.train.name!r}")
        predict_start = time.perf_counter()
        predicted = model.predict(split.query, split.truth)
        timings["rating_predict_seconds"] = time.perf_counter() - predict_start
        errors = M.rating_errors(predicted, split.truth)
        per_entry["error"] = errors
        if "rmse" in chosen:
            sq = mean_ci(errors ** 2, confidence)
            scalars["rmse"] = M.rmse(predicted, split.truth)
            # sqrt is monotone, so the interval of the mean squared error maps onto one for RMSE.
            low, high = math.sqrt(max(sq.low, 0.0)), math.sqrt(max(sq.high, 0.0))
            intervals["rmse"] = MeanCI(scalars["rmse"], low, high, sq.n, confidence)
        if "mae" in chosen:
            intervals["mae"] = mean_ci(np.abs(errors), confidence)
            scalars["mae"] = intervals["mae"].mean
    # Metric time excludes the model's rating predictions, which are timed on their own.
    timings["metrics_seconds"] = time.perf_counter() - start - timings.get("rating_predict_seconds", 0.0)

    means = {name: interval.mean for name, interval in intervals.items() if name in per_user}
    ordered = {name: (means | scalars)[name] for name in _metric_order(chosen, ks) if name in means | scalars}
    dataset = {**split.train.stats(), "test_interactions": split.test.n_interactions,
               "evaluated_users": len(rows)}
    return Report(
        model=model.name or type(model).__name__, label=repr(model), protocol=split.protocol, ks=ks,
        metrics=ordered, intervals=intervals, per_user=per_user, users=split.test_users[rows],
        per_entry=per_entry, timings=timings, dataset=dataset, params=_jsonable(model.get_params()),
        info=info,
    )


def _metric_order(chosen: Sequence[str], ks: tuple[int, ...]) -> list[str]:
    """Report order: every metric at the first K, then at the next K, ...; rmse/mae last."""
    at_k = [f"{m}@{k}" for k in ks for m in chosen if m not in RATING_METRICS]
    return at_k + [m for m in chosen if m in RATING_METRICS]


def fit_and_evaluate(model: Recommender, split: Split, **options: Any) -> Report:
    """Fit on split.train, then evaluate (options go to evaluate); records fit_seconds in the timings."""
    start = time.perf_counter()
    model.fit(split.train)
    fit_seconds = time.perf_counter() - start
    report = evaluate(model, split, **options)
    report.timings = {"fit_seconds": fit_seconds, **report.timings}
    return report


# --------------------------------------------------------------------------------------------- comparing
def compare(a: Report, b: Report, metric: str = "ndcg@10", confidence: float = 0.95) -> PairedTest:
    """Paired test of a - b on one metric: per user for ranking metrics, per test entry for rmse/mae
    (the squared or absolute errors). Both Reports must come from the same Split."""
    if a.protocol != b.protocol or not np.array_equal(a.users, b.users):
        raise DataError("compare: the reports were not made on the same split (different users evaluated)")
    if metric in ("rmse", "mae"):
        if "error" not in a.per_entry or "error" not in b.per_entry:
            raise ConfigError(f"compare: {metric} was not computed for both reports")
        if len(a.per_entry["error"]) != len(b.per_entry["error"]):
            raise DataError("compare: the reports have different test entries")
        power = 2 if metric == "rmse" else 1
        return paired_test(np.abs(a.per_entry["error"]) ** power, np.abs(b.per_entry["error"]) ** power,
                           confidence)
    if metric not in a.per_user or metric not in b.per_user:
        available = sorted(set(a.per_user) & set(b.per_user))
        raise ConfigError(f"compare: no per-user {metric!r} in both reports; "
                          f"available: {', '.join(available)}")
    return paired_test(a.per_user[metric], b.per_user[metric], confidence)


def leaderboard(
    reports: Iterable[Report],
    sort_by: str = "ndcg@10",
    ascending: bool | None = None,
    intervals: bool = False,
) -> pd.DataFrame:
    """One row per Report (label, model, protocol, dataset, users, every metric mean, timings), best first by
    `sort_by` (ascending for error and popularity-bias metrics unless told). intervals=True adds
    "<metric> low" and "<metric> high" columns."""
    reports = list(reports)
    if not reports:
        raise ConfigError("leaderboard needs at least one report")
    rows = []
    for r in reports:
        row: dict[str, Any] = {"label": r.label, "model": r.model, "protocol": r.protocol,
                               "dataset": r.dataset.get("name"), "users": r.n_users, **r.metrics}
        if intervals:
            for name, ci in r.intervals.items():
                row[f"{name} low"], row[f"{name} high"] = ci.low, ci.high
        row.update(r.timings)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if sort_by not in frame.columns:
        metric_columns = [c for c in frame.columns if c in set().union(*(r.metrics for r in reports))]
        raise ConfigError(f"cannot sort by {sort_by!r}; the reports have: {', '.join(metric_columns)}")
    if ascending is None:
        ascending = lower_is_better(sort_by)
    frame = frame.sort_values(sort_by, ascending=ascending, kind="stable", na_position="last")
    return frame.reset_index(drop=True)
