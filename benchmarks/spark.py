"""What Spark costs on one machine, and how it scales: issue 8's Spark targets.

  equivalence  Spark MLlib ALS vs recengine iALS, NDCG@20 on the temporal-user split of ml-latest-small; Spark's
               regParam and alpha picked on the same validation split that tuned iALS's defaults
  speed        on the synthetic ML-20M-shaped set (benchmarks/synthetic.py, --scale of its 138k users and 10M
               interactions): seconds per ALS iteration and top-20 for every user (seen excluded) for Spark
               local[2], recengine and the `implicit` library, same factors
  scaling      the same Spark ALS fit on a standalone cluster of 1 and then 2 workers (1 core each), and on
               local[2] with 1x, 2x and 4x the data

Per-iteration seconds are (time of N iterations - time of 1) / (N - 1): Spark's job setup is not an iteration.
Each measurement runs in its own process (its own JVM for Spark).

    .venv/bin/python benchmarks/spark.py [--scale 0.1] [--factors 64] [--parts equivalence,speed,scaling]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import ml20m_like  # noqa: E402

from recengine.data.dataset import Dataset  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "spark.json"
GRID = [(0.03, 0.5), (0.03, 1.0), (0.05, 0.5), (0.05, 1.0), (0.1, 1.0), (0.1, 2.0)]


def synthetic(scale: float) -> Dataset:
    cache = Path(f"/tmp/recengine-ml20m-like-{scale}")
    if (cache / "dataset.json").is_file():
        return Dataset.load(cache)
    data = ml20m_like(int(138_000 * scale), 20_000, int(10_000_000 * scale), seed=0)
    data.save(cache)
    return data


def session(master: str):
    from recengine.engines.spark.cluster import quiet_session

    warnings.filterwarnings("ignore")
    return quiet_session(master, "/tmp/recengine-spark-benchmark.log")[0]


def indexed(spark, data: Dataset):
    from recengine.engines.spark.scoring import dataset_interactions

    return dataset_interactions(spark, data).select("u", "i", "weight").cache()


def spark_fit_seconds(spark, interactions, data: Dataset, factors: int, iterations: int):
    from recengine.engines.spark.als import SparkImplicitALS

    start = time.perf_counter()
    trainer = SparkImplicitALS(factors=factors, iterations=iterations).fit(interactions, data.n_users, data.n_items)
    return time.perf_counter() - start, trainer.model_


def step(name: str, args: argparse.Namespace) -> dict:
    from threadpoolctl import threadpool_limits

    if name == "equivalence":
        return equivalence(args)
    scale = args.scale * args.multiple
    data = synthetic(scale)
    n = args.iterations
    if name in ("spark", "spark-fit"):  # spark-fit: the ALS fit only, for the scaling runs
        spark = session(args.master)
        interactions = indexed(spark, data)
        interactions.count()
        spark_fit_seconds(spark, interactions, data, args.factors, 1)  # warm-up: the JVM compiles MLlib's code
        one, _ = spark_fit_seconds(spark, interactions, data, args.factors, 1)
        many, model = spark_fit_seconds(spark, interactions, data, args.factors, n)
        result = {"seconds_per_iteration": (many - one) / (n - 1), "fit_seconds_1": one, f"fit_seconds_{n}": many,
                  "interactions": data.n_interactions}
        if name == "spark":
            from recengine.engines.spark.ids import vocabulary_table
            from recengine.engines.spark.scoring import dataset_interactions, history_table, top_k

            histories = history_table(dataset_interactions(spark, data))
            start = time.perf_counter()
            recs = top_k(histories, model, model, vocabulary_table(spark, data.users, "user"),
                         vocabulary_table(spark, data.items, "item"), args.k)
            recs.write.mode("overwrite").parquet("/tmp/recengine-spark-benchmark-top-k")
            result["topk_seconds"] = time.perf_counter() - start
        spark.stop()
        return result
    if name == "ials":
        from recengine.models.ials import ImplicitALS

        ImplicitALS(factors=args.factors, iterations=1).fit(ml20m_like(300, 100, 3000, 1))  # compile once
        start = time.perf_counter()
        model = ImplicitALS(factors=args.factors, iterations=n).fit(data)
        fit = time.perf_counter() - start
        histories = data.histories()
        model.recommend(histories[:100], k=args.k)
        start = time.perf_counter()
        model.recommend(histories, k=args.k)
        return {"seconds_per_iteration": fit / n, "topk_seconds": time.perf_counter() - start}
    if name == "implicit":
        from implicit.cpu.als import AlternatingLeastSquares

        user_items = data.matrix("weight").astype(np.float32)
        with threadpool_limits(1, "blas"):
            als = AlternatingLeastSquares(factors=args.factors, iterations=n, random_state=0,
                                          calculate_training_loss=False)
            start = time.perf_counter()
            als.fit(user_items, show_progress=False)
            fit = time.perf_counter() - start
        start = time.perf_counter()
        als.recommend(np.arange(data.n_users), user_items, N=args.k, filter_already_liked_items=True)
        return {"seconds_per_iteration": fit / n, "topk_seconds": time.perf_counter() - start}
    raise SystemExit(f"unknown step {name}")


def equivalence(args: argparse.Namespace) -> dict:
    from recengine.data.movielens import bundled_movielens
    from recengine.data.splits import split, validation_split
    from recengine.engines.spark.als import SparkImplicitALS
    from recengine.engines.spark.ids import indexed_events, vocabulary_table
    from recengine.evaluation.evaluate import evaluate
    from recengine.models.ials import ImplicitALS

    spark = session("local[2]")
    test_split = split(bundled_movielens(), "temporal-user")
    validation = validation_split(test_split, random_state=42)

    def fit(train: Dataset, reg: float, alpha: float):
        events = indexed_events(spark.createDataFrame(train.to_frame()), vocabulary_table(spark, train.users, "user"),
                                vocabulary_table(spark, train.items, "item"))
        return SparkImplicitALS(factors=64, regularization=reg, alpha=alpha, iterations=15).fit(
            events, train.n_users, train.n_items).model_

    grid = {f"{reg},{alpha}": evaluate(fit(validation.train, reg, alpha), validation, ks=(20,)).metrics["ndcg@20"]
            for reg, alpha in GRID}
    best = max(grid, key=grid.get)
    reg, alpha = (float(x) for x in best.split(","))
    spark_ndcg = evaluate(fit(test_split.train, reg, alpha), test_split, ks=(20,)).metrics["ndcg@20"]
    ours = ImplicitALS().fit(test_split.train)
    ials_validation = evaluate(ImplicitALS().fit(validation.train), validation, ks=(20,)).metrics["ndcg@20"]
    ials_ndcg = evaluate(ours, test_split, ks=(20,)).metrics["ndcg@20"]
    spark.stop()
    return {"validation_grid": grid, "spark_params": {"regularization": reg, "alpha": alpha, "factors": 64,
                                                        "iterations": 15},
            "spark_ndcg@20": spark_ndcg, "ials_ndcg@20": ials_ndcg, "ials_validation_ndcg@20": ials_validation,
            "relative_gap": (ials_ndcg - spark_ndcg) / ials_ndcg}


def run_child(name: str, args: argparse.Namespace, **extra) -> dict | None:
    options = {"scale": args.scale, "factors": args.factors, "iterations": args.iterations, "k": args.k,
               "master": args.master, "multiple": 1, **extra}
    cmd = [sys.executable, __file__, "--child", name] + [x for k, v in options.items() for x in (f"--{k}", str(v))]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"{name} {extra}: failed\n{done.stderr[-2000:]}", flush=True)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - started
    print(f"  {name} {extra}: {result}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.1, help="fraction of 138k users and 10M interactions")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--multiple", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--parts", default="equivalence,speed,scaling")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(step(args.child, args)))
        return

    parts = args.parts.split(",")
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; " \
                         f"measured under load (other jobs running)"
    if "equivalence" in parts:
        results["equivalence"] = run_child("equivalence", args)
    if "speed" in parts:
        data = synthetic(args.scale)
        results["speed"] = {"data": repr(data), "factors": args.factors, "iterations": args.iterations,
                            **{name: run_child(name, args) for name in ("spark", "ials", "implicit")}}
    if "scaling" in parts:
        from recengine.engines.spark.cluster import StandaloneCluster

        scaling = {}
        for workers in (1, 2):
            with StandaloneCluster(workers=workers, cores=1, memory="2g") as cluster:
                scaling[f"cluster-{workers}-workers"] = run_child("spark-fit", args, master=cluster.master_url)
        for multiple in (1, 2, 4):
            scaling[f"local[2]-{multiple}x"] = run_child("spark-fit", args, multiple=multiple)
        results["scaling"] = scaling
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2))
    report(results, args)


def report(results: dict, args: argparse.Namespace) -> None:
    print(f"\n{results['machine']}")
    eq = results.get("equivalence")
    if eq:
        print(f"NDCG@20 temporal-user ml-latest-small: Spark ALS {eq['spark_ndcg@20']:.4f} "
              f"({eq['spark_params']}), recengine iALS {eq['ials_ndcg@20']:.4f}, gap {eq['relative_gap']:+.1%} "
              f"(target within 5%)")
    speed = results.get("speed")
    if speed:
        print(f"\n{speed['data']}, {speed['factors']} factors")
        print(f"{'engine':22s} {'s/iteration':>12s} {'top-' + str(args.k) + ' all users, s':>22s}")
        for name, label in (("spark", "Spark MLlib local[2]"), ("ials", "recengine iALS"), ("implicit", "implicit")):
            r = speed.get(name)
            if r:
                print(f"{label:22s} {r['seconds_per_iteration']:12.2f} {r['topk_seconds']:22.2f}")
    for key, r in (results.get("scaling") or {}).items():
        if r:
            print(f"scaling {key:24s} {r['interactions']:>11,} interactions  {r['seconds_per_iteration']:8.2f} "
                  f"s/iteration  ({r['interactions'] / r['seconds_per_iteration'] / 1e6:.2f}M interactions/s)")


if __name__ == "__main__":
    main()
