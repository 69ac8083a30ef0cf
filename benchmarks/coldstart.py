"""Targets of the content issue: item cold start, user cold start and warm users, hybrids against single models.

    python benchmarks/coldstart.py                       # every section
    python benchmarks/coldstart.py --only items          # items | users | warm

* items: the cold-items protocol (ml-latest-small: the newest 10% of items by first rating, train before that
  cut; amazon-beauty, which has no time: a random 10% of items) ranks all cold items for each user who
  interacts with them. Random, popularity within the item's categories (plain popularity scores every cold
  item 0), content and a weighted hybrid; Recall@20 and NDCG@20.
* users: the cold-users protocol, held-out users known by their first 1, 3 or 5 interactions; single models at
  their shipped defaults (and an asymmetric itemknn), the hybrid's weights chosen on a validation split carved
  from the training users with the same protocol; NDCG@10 on test.
* warm: temporal-user on ml-100k and ml-latest-small; the best hybrid (chosen on validation) against EASE, the
  best single model of the core issue, at its tuned parameters.

Every choice is made on validation data; each test split is measured once per model. Results go to
benchmarks/results/coldstart.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from pathlib import Path

from recengine.data.movielens import load_movielens
from recengine.data.sequences import load_s3rec
from recengine.data.splits import split, validation_split
from recengine.evaluation import evaluate, fit_and_evaluate
from recengine.models.registry import create_model

DATA = Path(os.environ.get("RECENGINE_DATASETS", Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"))
OUT = Path(__file__).with_name("results") / "coldstart.json"
#: EASE as the core issue's accuracy benchmark tuned it on validation (docs/benchmarks.md).
TUNED_EASE = {"ml-100k": {"l2": 943.0, "history_half_life": 5.0}, "ml-latest-small": {}}


def _load(name: str):
    return load_s3rec(DATA / "amazon-beauty") if name == "amazon-beauty" else load_movielens(DATA / name)


def _row(report, metrics: tuple[str, ...]) -> dict:
    out = {"fit_seconds": round(report.timings.get("fit_seconds", 0.0), 1)}
    for metric in metrics:
        ci = report.intervals[metric]
        out[metric] = report.metrics[metric]
        out[f"{metric}_ci"] = [ci.low, ci.high]
    return out


def _print(rows: dict[str, dict], metrics: tuple[str, ...]) -> None:
    for label, row in rows.items():
        cells = "  ".join(f"{m} {row[m]:.4f} [{row[m + '_ci'][0]:.4f}, {row[m + '_ci'][1]:.4f}]" for m in metrics)
        print(f"    {label:34s} {cells}", flush=True)


# ------------------------------------------------------------------------------------------------ items
CATEGORY_POPULAR = {"name": "popular", "params": {"category_prior": True, "tie_break": "random"}}
ITEM_MODELS = {
    "random": ("random", {}),
    # Plain popularity scores every cold item 0: its ranking of them is a (seeded) random permutation.
    "popular": ("popular", {"tie_break": "random"}),
    # Items of one category tie under the prior: ties broken at random, or the data's item numbering (order of
    # first appearance) would rank them, which leaks.
    "popular in category": ("popular", CATEGORY_POPULAR["params"]),
    "content (tf-idf)": ("content", {"text_encoder": "tfidf"}),
    "content (MiniLM)": ("content", {"text_encoder": "minilm"}),
}
#: Weights (content, popular in category) of the hybrid tried on validation.
ITEM_BLEND_GRID = [(1.0, 0.0), (1.0, 0.25), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0), (0.25, 1.0)]


def _pick_item_blend(validation) -> tuple[tuple[float, float], float]:
    model = create_model("weighted", models=["content", CATEGORY_POPULAR], weights=[1.0, 1.0]).fit(validation.train)
    best = None
    for weights in ITEM_BLEND_GRID:
        model.set_params(weights=list(weights))
        value = evaluate(model, validation, ks=(20,), metrics=["recall"]).metrics["recall@20"]
        if best is None or value > best[1]:
            best = (weights, value)
    return best


def cold_items() -> dict:
    metrics = ("recall@20", "ndcg@20")
    results = {}
    # ml-latest-small's newest items were rated by few users (20): a random 10% of items as well, with more.
    for name, selection in (("ml-latest-small", "newest"), ("ml-latest-small", "random"), ("amazon-beauty", "random")):
        test = split(_load(name), "cold-items", selection=selection)
        validation = split(test.train, "cold-items", selection=selection)
        print(f"  {name}, {selection}: {test.info['cold_items']} cold items, {test.n_users} users, "
              f"{test.truth.nnz} held-out interactions; validation {validation.n_users} users", flush=True)
        rows = {}
        for label, (model, params) in ITEM_MODELS.items():
            if name == "amazon-beauty" and "MiniLM" in label:
                continue  # amazon-beauty's items carry attribute ids only: no text to embed
            rows[label] = _row(fit_and_evaluate(create_model(model, **params), test, ks=(20,)), metrics)
            _print({label: rows[label]}, metrics)
        weights, value = _pick_item_blend(validation)
        label = f"hybrid: weighted content/popular-in-category {weights[0]:g}/{weights[1]:g}"
        hybrid = create_model("weighted", models=["content", CATEGORY_POPULAR], weights=list(weights))
        rows[label] = {**_row(fit_and_evaluate(hybrid, test, ks=(20,)), metrics), "validation_recall@20": value}
        _print({label: rows[label]}, metrics)
        best = max((r for label, r in rows.items() if label.startswith(("content", "hybrid"))),
                   key=lambda r: r["recall@20"])
        info = {k: test.info[k] for k in ("cold_items", "evaluated_users", "truth_entries")}
        results[f"{name}, {selection}"] = {"info": info, "models": rows, "hybrid": label,
                                           "best_over_popular": best["recall@20"] / rows["popular"]["recall@20"],
                                           "best_over_random": best["recall@20"] / rows["random"]["recall@20"]}
    return results


# ------------------------------------------------------------------------------------------------ users
#: Item-to-item co-occurrence normalized mostly by the candidate's own count ("people who liked this also
#: liked", alpha 0.3 leaning to popularity): picked on the ml-100k cold-users validation split over alpha 0–1.
ASYMMETRIC_KNN = {"name": "itemknn",
                  "params": {"similarity": "asymmetric", "asymmetric_alpha": 0.3, "shrink": 0.0, "neighbors": 1000}}
USER_SINGLES = {"popular": "popular", "itemknn": "itemknn", "itemknn (asymmetric 0.3)": ASYMMETRIC_KNN,
                "ease": "ease", "ials": "ials", "content": "content"}
#: Weighted blends tried on validation for cold users: weights (popular, asymmetric itemknn, EASE, content).
USER_COMPONENTS = ["popular", ASYMMETRIC_KNN, "ease", "content"]
USER_GRID = list(itertools.product((1.0,), (0.0, 0.25, 0.5, 1.0, 2.0), (0.0, 0.1, 0.25, 0.5, 1.0), (0.0, 0.25)))
#: Weighted blends tried on validation for warm users: weights (EASE, popular, content).
WARM_GRID = list(itertools.product((0.25, 0.5, 1.0), (0.0, 0.25, 0.5, 1.0), (0.0, 0.25, 0.5)))


def _model(spec):
    return create_model(spec) if isinstance(spec, str) else create_model(spec["name"], **spec["params"])


def _pick_blend(validation, metric: str, components: list, grid: list[tuple[float, ...]]):
    """Fit the weighted hybrid once on the validation train part; score every weight tuple (weights act at
    scoring time only); return the best tuple and its validation value."""
    model = create_model("weighted", models=components, weights=[1.0] * len(components)).fit(validation.train)
    best = None
    for weights in grid:
        model.set_params(weights=list(weights))
        value = evaluate(model, validation, ks=(int(metric.split("@")[1]),), metrics=[metric.split("@")[0]])
        value = value.metrics[metric]
        if best is None or value > best[1]:
            best = (weights, value)
    return best


def cold_users() -> dict:
    metric = "ndcg@10"
    results = {}
    for name in ("ml-latest-small", "ml-100k"):
        data = _load(name)
        results[name] = {}
        for n_known in (1, 3, 5):
            test = split(data, "cold-users", n_known=n_known, test_users_fraction=0.2)
            validation = validation_split(test)
            print(f"  {name}, {n_known} known: {test.n_users} test users, {validation.n_users} validation users",
                  flush=True)
            rows = {label: _row(fit_and_evaluate(_model(spec), test, ks=(10,)), (metric,))
                    for label, spec in USER_SINGLES.items()}
            _print(rows, (metric,))
            weights, value = _pick_blend(validation, metric, USER_COMPONENTS, USER_GRID)
            label = "hybrid: weighted popular/asymmetric itemknn/EASE/content " + "/".join(f"{w:g}" for w in weights)
            hybrid = create_model("weighted", models=USER_COMPONENTS, weights=list(weights))
            rows[label] = {**_row(fit_and_evaluate(hybrid, test, ks=(10,)), (metric,)), "validation": value}
            _print({label: rows[label]}, (metric,))
            best_single = max(USER_SINGLES, key=lambda m: rows[m][metric])
            results[name][n_known] = {"models": rows, "best_single": best_single, "hybrid": label,
                                      "hybrid_beats_best_single": rows[label][metric] > rows[best_single][metric]}
    return results


# ------------------------------------------------------------------------------------------------- warm
def warm_users() -> dict:
    metric = "ndcg@20"
    results = {}
    for name in ("ml-100k", "ml-latest-small"):
        test = split(_load(name), "temporal-user")
        validation = validation_split(test)
        ease_params = TUNED_EASE[name]
        rows = {"ease (tuned)": _row(fit_and_evaluate(create_model("ease", **ease_params), test, ks=(20,)),
                                     (metric,))}
        ease = {"name": "ease", "params": ease_params}
        weights, value = _pick_blend(validation, metric, [ease, "popular", "content"], WARM_GRID)
        label = f"hybrid: weighted EASE/popular/content {weights[0]:g}/{weights[1]:g}/{weights[2]:g}"
        hybrid = create_model("weighted", models=[ease, "popular", "content"], weights=list(weights))
        rows[label] = {**_row(fit_and_evaluate(hybrid, test, ks=(20,)), (metric,)), "validation": value}
        print(f"  {name}:", flush=True)
        _print(rows, (metric,))
        results[name] = {"models": rows, "hybrid": label,
                         "hybrid_at_least_single": rows[label][metric] >= rows["ease (tuned)"][metric]}
    return results


SECTIONS = {"items": cold_items, "users": cold_users, "warm": warm_users}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated sections of {', '.join(SECTIONS)} (default all)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(SECTIONS)
    print(f"machine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.is_file() else {}
    for name in names:
        start = time.perf_counter()
        print(f"{name}:", flush=True)
        results[name] = SECTIONS[name]()
        print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
