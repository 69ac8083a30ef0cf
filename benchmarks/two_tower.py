"""Two-tower retrieval (issue 5) beside iALS and EASE on the temporal-user protocol, and the effect of log-Q.

For each dataset: split temporal-user; carve a validation split out of the training part; tune iALS and EASE
with Optuna on validation; for the two-tower model, fit each temperature with and without log-Q correction on
the validation split's train part and keep the best validation NDCG@20 per setting; refit every chosen model on
the full training part and score the test split once. Two-tower fits also stop early on their own leave-one-out
hold-out of whatever they are fitted on, so no choice sees the test split.

    python benchmarks/two_tower.py                                  # ml-latest-small
    python benchmarks/two_tower.py --datasets ml-latest-small,amazon-beauty --trials 10 --temperatures 0.05,0.1
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import time
from pathlib import Path

from recengine.data.movielens import load_movielens
from recengine.data.sequences import load_s3rec
from recengine.data.splits import split, validation_split
from recengine.evaluation import evaluate
from recengine.evaluation.tuning import tune
from recengine.models.registry import create_model

DATA = Path(os.environ.get("RECENGINE_DATASETS", Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"))
LOADERS = {"ml-latest-small": load_movielens, "amazon-beauty": load_s3rec}
METRICS = ("ndcg@20", "recall@20")


def scored(name: str, model, on, seconds: float) -> dict:
    report = evaluate(model, on, ks=(20,))
    row = {"model": name, "params": model.get_params(), "fit_seconds": round(seconds, 1), "users": report.n_users}
    for metric in METRICS:
        ci = report.intervals[metric]
        row[metric], row[f"{metric} ci"] = report.metrics[metric], [ci.low, ci.high]
    if hasattr(model, "best_epoch_"):
        row.update(best_epoch=model.best_epoch_, epochs_run=len(model.validation_ndcg_),
                   seconds_per_epoch=model.seconds_per_epoch_)
    return row


def fitted(name: str, params: dict, data) -> tuple[object, float]:
    start = time.perf_counter()
    model = create_model(name, **params).fit(data)
    return model, time.perf_counter() - start


def run(dataset: str, trials: int, temperatures: list[float], overrides: dict) -> dict:
    test_split = split(LOADERS[dataset](DATA / dataset), "temporal-user")
    validation = validation_split(test_split)
    rows, chosen = [], []
    for name in ("ials", "ease"):
        best = tune(name, validation, metric="ndcg@20", n_trials=trials).best_params
        chosen.append((name, name, best))
    picks = []
    for logq in (True, False):
        best_value, best_params = -1.0, None
        for temperature in temperatures:
            params = {"temperature": temperature, "logq_correction": logq, **overrides}
            model, seconds = fitted("two-tower", params, validation.train)
            value = evaluate(model, validation, ks=(20,)).metrics["ndcg@20"]
            picks.append({"logq_correction": logq, "temperature": temperature, "validation ndcg@20": value,
                          "fit_seconds": round(seconds, 1)})
            print(f"  validation two-tower logq={logq} temperature={temperature}: NDCG@20 {value:.4f} "
                  f"({seconds:.0f} s)", flush=True)
            if value > best_value:
                best_value, best_params = value, params
        chosen.append((f"two-tower ({'with' if logq else 'without'} log-Q)", "two-tower", best_params))
    for label, name, params in chosen:
        model, seconds = fitted(name, params, test_split.train)
        row = scored(label, model, test_split, seconds)
        rows.append(row)
        text = "  ".join(f"{m} {row[m]:.4f} [{row[m + ' ci'][0]:.4f}, {row[m + ' ci'][1]:.4f}]" for m in METRICS)
        print(f"{dataset:16s} {label:28s} {text}  ({seconds:.0f} s) {params}", flush=True)
    return {"dataset": dataset, "protocol": "temporal-user", "rows": rows, "two_tower_validation": picks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ml-latest-small")
    parser.add_argument("--trials", type=int, default=10, help="Optuna trials for iALS and EASE")
    parser.add_argument("--temperatures", default="0.05,0.1,0.2")
    parser.add_argument("--param", action="append", default=[], help="two-tower KEY=VALUE (a Python literal)")
    args = parser.parse_args()
    overrides = {k: ast.literal_eval(v) for k, v in (p.split("=", 1) for p in args.param)}
    temperatures = [float(t) for t in args.temperatures.split(",")]
    results = [run(d, args.trials, temperatures, overrides) for d in args.datasets.split(",")]
    out = Path(__file__).parent / "results" / "two_tower.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": f"{platform.machine()} {os.cpu_count()} CPUs, measured under load",
                               "results": results}, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
