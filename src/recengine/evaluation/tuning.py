"""Hyper-parameter search with Optuna on a validation split, and automatic model selection."""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any

import optuna
import pandas as pd

from recengine.data.split import Split
from recengine.errors import ConfigError
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
) -> TuneResult:
    """Search the model's hyper-parameters on `split` (a validation split: never the test split)."""
    model_cls = get_model_class(model_name)
    if not model_cls.search_space:
        raise ConfigError(f"{model_name} declares no search space to tune")
    fixed = dict(fixed_params or {})
    ks = _ks_for(metric)
    direction = "minimize" if lower_is_better(metric) else "maximize"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=random_state)
    study = optuna.create_study(direction=direction, sampler=sampler)
    # Start from the shipped defaults, so tuning can only report something at least as good.
    study.enqueue_trial({k: v for k, v in model_cls().get_params().items() if k in model_cls.search_space})

    def objective(trial: optuna.Trial) -> float:
        params = {**suggest(trial, model_name), **fixed}
        try:
            report = fit_and_evaluate(create_model(model_name, **params), split, ks=ks)
        except ConfigError as error:  # e.g. a regularization too weak for this data: skip that corner
            raise optuna.TrialPruned(str(error)) from error
        return metric_value(report, metric)

    start = time.perf_counter()
    study.optimize(objective, n_trials=n_trials, timeout=timeout, show_progress_bar=False)
    trials = study.trials_dataframe(attrs=("number", "value", "params", "duration"))
    return TuneResult(model_name, metric, {**study.best_params, **fixed}, float(study.best_value), trials,
                      time.perf_counter() - start)


def select_model(candidates: list[str], split: Split, *, metric: str = "ndcg@20") -> tuple[str, pd.DataFrame]:
    """Fit each candidate with its defaults on `split` (validation) and return the best name and the table."""
    rows = []
    for name in candidates:
        report = fit_and_evaluate(create_model(name), split, ks=_ks_for(metric))
        rows.append({"model": name, metric: metric_value(report, metric),
                     "fit_seconds": report.timings.get("fit_seconds")})
    table = pd.DataFrame(rows).sort_values(metric, ascending=lower_is_better(metric), ignore_index=True)
    return str(table.loc[0, "model"]), table
