"""Distributed tuning: wall time of the same number of iALS trials with 1 and with 2 worker processes sharing one
study (an SQLite file), on the ml-latest-small temporal-user validation split.

    python benchmarks/tuning_workers.py                  # 8 trials, 1 and 2 workers
    python benchmarks/tuning_workers.py --trials 16 --workers 1,2,4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from recengine.data.movielens import load_movielens
from recengine.data.splits import split, validation_split
from recengine.evaluation.tuning import tune

DATA = Path(os.environ.get("RECENGINE_DATASETS", Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ials")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", default="1,2", help="worker counts to compare, comma-separated")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "tuning_workers.json"))
    args = parser.parse_args()

    validation = validation_split(split(load_movielens(DATA / "ml-latest-small"), "temporal-user"))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for n_workers in (int(n) for n in args.workers.split(",")):
            storage = f"sqlite:///{Path(folder) / f'workers-{n_workers}.db'}"
            start = time.perf_counter()
            result = tune(args.model, validation, n_trials=args.trials, storage=storage, n_workers=n_workers)
            wall = time.perf_counter() - start
            per_worker = sorted(result.trials["user_attrs_worker"].value_counts().tolist(), reverse=True)
            rows.append({"workers": n_workers, "trials": len(result.trials), "wall_seconds": round(wall, 1),
                         "mean_trial_seconds": round(result.trials["duration"].dt.total_seconds().mean(), 2),
                         "trials_per_worker": per_worker, "best_ndcg@20": round(result.best_value, 4)})
    print(f"{args.model}, ml-latest-small temporal-user validation, {args.trials} trials (measured under load)")
    print(f"{'workers':>7} {'trials':>6} {'wall s':>7} {'s/trial':>8} {'best ndcg@20':>12}  trials per worker")
    for row in rows:
        print(f"{row['workers']:>7} {row['trials']:>6} {row['wall_seconds']:>7.1f} {row['mean_trial_seconds']:>8.2f} "
              f"{row['best_ndcg@20']:>12.4f}  {row['trials_per_worker']}")
    machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}; load average at the end {os.getloadavg()[0]:.1f}")
    Path(args.out).write_text(json.dumps({"model": args.model, "dataset": "ml-latest-small",
                                          "protocol": "temporal-user (validation split)", "machine": machine,
                                          "note": "measured under load", "results": rows}, indent=2))


if __name__ == "__main__":
    main()
