"""Neural collaborative filtering and Mult-VAE (issue 5), beside the classical models on the same splits.

(a) lastfm-ncf with its 99 given negatives per test user: GMF, MLP, NeuMF (with and without pre-training). Each
    model carves a leave-one-out validation split out of the training data inside `fit` and keeps the epoch with
    the best validation NDCG@10, so every choice is made on validation only; the test split is scored once.
(b) Mult-VAE on the `strong` protocol (held-out users, 80% of each history folded in) of ml-100k, beside EASE
    with its l2 tuned on `validation_split` of the same split. Mult-VAE holds out 10% of the training users
    inside `fit` for its epoch choice.

    python benchmarks/neural.py                                   # both parts
    python benchmarks/neural.py --part ncf --models gmf,neumf --epochs 10 --param batch_size=1024
    python benchmarks/neural.py --part vae --dataset ml-latest-small
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from recengine.data.movielens import load_movielens
from recengine.data.ncf import load_ncf
from recengine.data.splits import split, validation_split
from recengine.evaluation import evaluate
from recengine.evaluation.tuning import tune
from recengine.models.registry import create_model

DATA = Path(os.environ.get("RECENGINE_DATASETS", Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"))
NCF_MODELS = {"gmf": {}, "mlp": {}, "neumf": {}, "neumf-pretrain": {"pretrain": True}}


def measured(name: str, model, test_split, metrics: tuple[str, ...], ks: tuple[int, ...], seconds: float) -> dict:
    report = evaluate(model, test_split, ks=ks)
    row = {"model": name, "params": model.get_params(), "fit_seconds": seconds, "users": report.n_users}
    for metric in metrics:
        ci = report.intervals[metric]
        row[metric], row[f"{metric} ci"] = report.metrics[metric], [ci.low, ci.high]
    if hasattr(model, "validation_ndcg_"):
        row.update(validation_ndcg10=max(model.validation_ndcg_, default=None), best_epoch=model.best_epoch_,
                   epochs_run=len(model.validation_ndcg_), seconds_per_epoch=model.seconds_per_epoch_)
        if hasattr(model, "pretrain_best_epochs_"):
            row["pretrain_best_epochs"] = model.pretrain_best_epochs_
    text = "  ".join(f"{m} {row[m]:.4f} [{row[m + ' ci'][0]:.4f}, {row[m + ' ci'][1]:.4f}]" for m in metrics)
    extra = (f", val NDCG@10 {row['validation_ndcg10']:.4f}, best epoch {row['best_epoch']} of "
             f"{row['epochs_run']}, {row['seconds_per_epoch']:.1f} s/epoch") if "best_epoch" in row else ""
    print(f"{name:15s} {text}  ({seconds:.0f} s{extra})", flush=True)
    return row


def ncf_part(models: list[str], epochs: int | None, overrides: dict[str, object]) -> list[dict]:
    test_split = load_ncf(DATA / "lastfm-ncf" / "lastfm")
    rows = []
    for name in models:
        params = {**NCF_MODELS[name], **overrides}
        if epochs:
            params["epochs"] = epochs
        start = time.perf_counter()
        model = create_model(name.removesuffix("-pretrain"), **params).fit(test_split.train)
        rows.append(measured(name, model, test_split, ("hr@10", "ndcg@10"), (10,), time.perf_counter() - start))
    return rows


def vae_part(dataset: str, epochs: int | None, trials: int) -> list[dict]:
    test_split = split(load_movielens(DATA / dataset), "strong")
    validation = validation_split(test_split)
    start = time.perf_counter()
    best = tune("ease", validation, metric="ndcg@20", n_trials=trials).best_params
    ease = create_model("ease", **best).fit(test_split.train)
    rows = [measured(f"ease {best}", ease, test_split, ("ndcg@20", "recall@20"), (20,), time.perf_counter() - start)]
    start = time.perf_counter()
    vae = create_model("multvae", **({"epochs": epochs} if epochs else {})).fit(test_split.train)
    rows.append(measured("multvae", vae, test_split, ("ndcg@20", "recall@20"), (20,), time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("ncf", "vae", "both"), default="both")
    parser.add_argument("--models", default=",".join(NCF_MODELS), help="NCF models (part ncf)")
    parser.add_argument("--dataset", default="ml-100k", help="MovieLens dataset for Mult-VAE (part vae)")
    parser.add_argument("--epochs", type=int, help="cap on the neural models' epochs (default: theirs)")
    parser.add_argument("--trials", type=int, default=10, help="Optuna trials for EASE's l2 (part vae)")
    parser.add_argument("--param", action="append", default=[],
                        help="KEY=VALUE for every NCF model, repeatable (values read as JSON)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "neural.json"))
    args = parser.parse_args()
    results = {}
    if args.part in ("ncf", "both"):
        overrides = {key: json.loads(value) for key, _, value in (p.partition("=") for p in args.param)}
        results["lastfm-ncf"] = ncf_part(args.models.split(","), args.epochs, overrides)
    if args.part in ("vae", "both"):
        results[f"{args.dataset}-strong"] = vae_part(args.dataset, args.epochs, args.trials)
    print(f"\nmachine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    for key, rows in results.items():
        previous.setdefault(key, {}).update({r["model"].split(" ")[0]: r for r in rows})
    Path(args.out).write_text(json.dumps(previous, indent=2, default=float))


if __name__ == "__main__":
    main()
