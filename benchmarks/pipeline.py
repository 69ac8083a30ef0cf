"""CTR rankers (DeepFM, Wide&Deep) and the two-stage pipeline (issue 5), on temporal-user splits of MovieLens.

Per dataset and ranker:
(a) validation: `validation_split` of the test split's train data (the same protocol, on the older part only);
    one Pipeline(EASE -> ranker) is fitted on its train part and n_candidates is picked from CANDIDATES by
    validation NDCG@10 (EASE alone measured beside it). The ranker's epoch is picked inside its `fit` by AUC on
    a leave-one-out hold-out of the data it is given. Nothing here looks at the test split.
(b) test: the pipeline with that n_candidates fitted on the full train part; NDCG@10/20 of the pipeline and of
    EASE alone (the same fitted retrieval stage) with 95% intervals and a paired test; the ranker's AUC and
    log-loss on each test user's held-out items against N_NEGATIVES sampled unseen items per user.

    python benchmarks/pipeline.py                                       # both datasets, both rankers
    python benchmarks/pipeline.py --datasets ml-100k --rankers deepfm --epochs 5

torch runs one thread: on the shared 2-core machine its OpenMP threads spin against other processes' work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from recengine.data.movielens import load_movielens
from recengine.data.splits import sampled_candidates, split, validation_split
from recengine.evaluation import evaluate
from recengine.evaluation.evaluate import compare
from recengine.evaluation.metrics import auc, log_loss
from recengine.models.pipeline import Pipeline

DATA = Path(os.environ.get("RECENGINE_DATASETS", Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"))
CANDIDATES = (20, 50, 100, 200)
N_NEGATIVES = 4


def ranked(model, data_split, ks=(10, 20)) -> dict:
    report = evaluate(model, data_split, ks=ks, metrics=("ndcg",))
    return {"report": report, **{m: report.metrics[m] for m in report.metrics if m.startswith("ndcg")}}


def click_metrics(ranker, test_split) -> dict:
    """AUC and log-loss of the ranker's logits on held-out positives vs N_NEGATIVES unseen items per user."""
    pairs = sampled_candidates(test_split, n_negatives=N_NEGATIVES, random_state=7)
    pairs.sort_indices()
    logits = ranker.predict(test_split.query, pairs)
    truth = test_split.truth.astype(bool)
    labels = np.asarray(truth[pairs.nonzero()]).ravel().astype(float)
    return {"auc": auc(labels, logits.data), "log_loss": log_loss(labels, 1 / (1 + np.exp(-logits.data))),
            "pairs": int(pairs.nnz), "positive_share": float(labels.mean())}


def run(dataset: str, ranker_name: str, params: dict) -> dict:
    test_split = split(load_movielens(DATA / dataset), "temporal-user")
    validation = validation_split(test_split)
    ranker = {"name": ranker_name, "params": params}
    start = time.perf_counter()
    chosen = Pipeline(ranker=ranker, n_candidates=CANDIDATES[0]).fit(validation.train)
    fit_seconds = time.perf_counter() - start
    retrieval_val = ranked(chosen.components_[0], validation, ks=(10,))["ndcg@10"]
    by_candidates = {}
    for n in CANDIDATES:
        by_candidates[n] = ranked(chosen.set_params(n_candidates=n), validation, ks=(10,))["ndcg@10"]
    best = max(by_candidates, key=by_candidates.get)
    print(f"{dataset} {ranker_name}: validation NDCG@10 ease {retrieval_val:.4f}, pipeline "
          + ", ".join(f"{n}: {v:.4f}" for n, v in by_candidates.items()) + f" -> n_candidates {best} "
          f"(fit {fit_seconds:.0f} s, measured under load)", flush=True)

    start = time.perf_counter()
    pipeline = Pipeline(ranker=ranker, n_candidates=best).fit(test_split.train)
    fit_seconds = time.perf_counter() - start
    retrieval, fitted_ranker = pipeline.components_
    two_stage, alone = ranked(pipeline, test_split), ranked(retrieval, test_split)
    row = {"dataset": dataset, "protocol": "temporal-user", "ranker": ranker_name, "params": fitted_ranker.get_params(),
           "features": fitted_ranker.feature_fields_, "validation_ndcg10": {"ease": retrieval_val, **by_candidates},
           "n_candidates": best, "ranker_best_epoch": fitted_ranker.best_epoch_,
           "ranker_validation_auc": fitted_ranker.validation_scores_,
           "seconds_per_epoch_under_load": fitted_ranker.seconds_per_epoch_, "fit_seconds_under_load": fit_seconds,
           "users": two_stage["report"].n_users, **click_metrics(fitted_ranker, test_split)}
    row["ease_auc"] = click_metrics(retrieval, test_split)["auc"]
    for metric in ("ndcg@10", "ndcg@20"):
        test = compare(two_stage["report"], alone["report"], metric)
        ci = two_stage["report"].intervals[metric]
        row[metric] = {"pipeline": two_stage[metric], "pipeline ci": [ci.low, ci.high], "ease": alone[metric],
                       "difference": test.mean_difference, "difference ci": [test.low, test.high],
                       "t_pvalue": test.t_pvalue}
    print(f"{dataset} {ranker_name}: test AUC {row['auc']:.4f} log-loss {row['log_loss']:.4f} (EASE AUC "
          f"{row['ease_auc']:.4f}); NDCG@10 pipeline {row['ndcg@10']['pipeline']:.4f} vs ease "
          f"{row['ndcg@10']['ease']:.4f} (diff {row['ndcg@10']['difference']:+.4f}, "
          f"p {row['ndcg@10']['t_pvalue']:.3g}); NDCG@20 {row['ndcg@20']['pipeline']:.4f} vs "
          f"{row['ndcg@20']['ease']:.4f}; best epoch "
          f"{row['ranker_best_epoch']}, {row['seconds_per_epoch_under_load']:.0f} s/epoch under load", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="ml-latest-small,ml-100k")
    parser.add_argument("--rankers", default="deepfm,wide-deep")
    parser.add_argument("--epochs", type=int, help="cap on the rankers' epochs (default: theirs)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "pipeline.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    params = {"epochs": args.epochs} if args.epochs else {}
    rows = [run(dataset, name, params) for dataset in args.datasets.split(",") for name in args.rankers.split(",")]
    print(f"\nmachine: {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    for row in rows:
        previous.setdefault(row["dataset"], {})[row["ranker"]] = row
    Path(args.out).write_text(json.dumps(previous, indent=2, default=float))


if __name__ == "__main__":
    main()
