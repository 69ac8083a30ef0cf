"""What Spark costs on one machine, and how it scales: issue 8's Spark targets.

  equivalence  Spark MLlib ALS vs recengine iALS, NDCG@20 on the temporal-user split of ml-latest-small; Spark's
               regParam and alpha picked on the same validation split that tuned iALS's defaults
  speed        on the synthetic ML-20M-shaped set (benchmarks/synthetic.py, --scale of its 138k users and 10M
               interactions, 20k items): seconds per ALS iteration and top-K for every user (seen excluded) for
               Spark local[2], recengine iALS (its CG default and exact Cholesky, as MLlib solves) and `implicit`
  scaling      the same Spark job (ALS fit and top-K to Parquet) on a standalone cluster of 1 and then 2 workers of
               1 core each, on --multiples of --base-scale (users and interactions grow, the 20k items stay)
  estimate     no measurement: cores and hours for 1B events, 100M users and 10M items from the scaling results

Seconds per iteration exclude setup. Spark: (fit of N iterations - fit of 1) / (N - 1), after a warm-up fit (JVM
compilation), so job setup, blocking and collecting the factors cancel. recengine and implicit: their own
per-iteration clocks. Spark's top-K covers the history table, scoring and the Parquet write. Each measurement
runs in its own process (its own JVM for Spark) and records the load average (1, 5, 15 min) before and after;
the "after" figure includes the measurement's own load (about 2 on 2 cores).

    .venv/bin/python benchmarks/spark.py [--parts equivalence,speed,scaling] [--scale 0.1] [--base-scale 0.05]
    .venv/bin/python benchmarks/spark.py --quick       # every part but equivalence, tiny, into /tmp
    .venv/bin/python benchmarks/spark.py --parts estimate
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import ml20m_like  # noqa: E402

from recengine.data.dataset import Dataset  # noqa: E402
from recengine.errors import RecengineError  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "spark.json"
QUICK_RESULTS = Path("/tmp/recengine-spark-quick.json")
GRID = [(0.03, 0.5), (0.03, 1.0), (0.05, 0.5), (0.05, 1.0), (0.1, 1.0), (0.1, 2.0)]
#: The ML-20M shape at scale 1: users, items (never scaled), interactions.
FULL_USERS, ITEMS, FULL_INTERACTIONS = 138_000, 20_000, 10_000_000
#: The sizing question of issue 8.
TARGET = {"events": 1_000_000_000, "users": 100_000_000, "items": 10_000_000, "iterations": 15}


def synthetic(scale: float) -> Dataset:
    cache = Path(f"/tmp/recengine-ml20m-like-{scale:g}")
    if (cache / "dataset.json").is_file():
        return Dataset.load(cache)
    data = ml20m_like(int(FULL_USERS * scale), ITEMS, int(FULL_INTERACTIONS * scale), seed=0)
    data.save(cache)
    return data


def session(master: str, executor_memory: str):
    from recengine.engines.spark.cluster import jvm_output_to
    from recengine.engines.spark.session import spark_session

    warnings.filterwarnings("ignore")
    with jvm_output_to("/tmp/recengine-spark-benchmark.log"):
        return spark_session(master, config={"spark.executor.memory": executor_memory})


def spark_fit_seconds(interactions, data: Dataset, factors: int, iterations: int):
    from recengine.engines.spark.als import SparkImplicitALS

    start = time.perf_counter()
    trainer = SparkImplicitALS(factors=factors, iterations=iterations).fit(interactions, data.n_users, data.n_items)
    return time.perf_counter() - start, trainer.model_


def jvm_cpu_seconds(spark) -> float:
    """CPU seconds the driver JVM has used (all the work under local[N]): unlike wall time, little changed by
    other jobs on the machine, so it sizes a run before a quiet machine is free."""
    fields = Path(f"/proc/{spark.sparkContext._gateway.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def step(name: str, args: argparse.Namespace) -> dict:
    if name == "equivalence":
        return equivalence(args)
    data = synthetic(args.scale)
    shape = {"users": data.n_users, "items": data.n_items, "interactions": data.n_interactions}
    n = args.iterations
    if name == "spark":
        from recengine.engines.spark.ids import vocabulary_table
        from recengine.engines.spark.scoring import dataset_interactions, history_table, top_k

        spark = session(args.master, args.executor_memory)
        events = dataset_interactions(spark, data).cache()  # top-K's history table reads it too
        events.count()
        interactions = events.select("u", "i", "weight")
        spark_fit_seconds(interactions, data, args.factors, 1)  # warm-up: the JVM compiles MLlib's code
        one, _ = spark_fit_seconds(interactions, data, args.factors, 1)
        many, model = spark_fit_seconds(interactions, data, args.factors, n)
        start = time.perf_counter()
        recs = top_k(history_table(events), model, model,
                     vocabulary_table(spark, data.users, "user"), vocabulary_table(spark, data.items, "item"), args.k)
        recs.write.mode("overwrite").parquet("/tmp/recengine-spark-benchmark-top-k")
        topk = time.perf_counter() - start
        cpu = jvm_cpu_seconds(spark)
        spark.stop()
        return {**shape, "seconds_per_iteration": (many - one) / (n - 1), "fit_seconds_1": one,
                f"fit_seconds_{n}": many, "topk_seconds": topk, "driver_jvm_cpu_seconds": cpu}
    if name in ("ials", "ials-cholesky"):
        from recengine.models.ials import ImplicitALS

        solver = "cholesky" if name == "ials-cholesky" else "cg"
        ImplicitALS(factors=args.factors, iterations=1, solver=solver).fit(ml20m_like(300, 100, 3000, 1))  # compile
        start = time.perf_counter()
        model = ImplicitALS(factors=args.factors, iterations=n, solver=solver).fit(data)
        fit = time.perf_counter() - start
        histories = data.histories()
        model.recommend(histories[:100], k=args.k)
        start = time.perf_counter()
        model.recommend(histories, k=args.k)
        return {**shape, "solver": solver, "seconds_per_iteration": float(np.mean(model._iteration_seconds)),
                f"fit_seconds_{n}": fit, "topk_seconds": time.perf_counter() - start}
    if name == "implicit":
        from implicit.cpu.als import AlternatingLeastSquares
        from threadpoolctl import threadpool_limits

        user_items = data.matrix("weight").astype(np.float32)
        seconds: list[float] = []
        with threadpool_limits(1, "blas"):  # implicit's own threads do the work; it warns on threaded BLAS
            als = AlternatingLeastSquares(factors=args.factors, iterations=n, random_state=0)
            start = time.perf_counter()
            als.fit(user_items, show_progress=False, callback=lambda iteration, elapsed, loss: seconds.append(elapsed))
            fit = time.perf_counter() - start
        start = time.perf_counter()
        als.recommend(np.arange(data.n_users), user_items, N=args.k, filter_already_liked_items=True)
        return {**shape, "solver": "cg", "seconds_per_iteration": float(np.mean(seconds)), f"fit_seconds_{n}": fit,
                "topk_seconds": time.perf_counter() - start}
    raise SystemExit(f"unknown step {name}")


def equivalence(args: argparse.Namespace) -> dict:
    from recengine.data.movielens import bundled_movielens
    from recengine.data.splits import split, validation_split
    from recengine.engines.spark.als import SparkImplicitALS
    from recengine.engines.spark.ids import indexed_events, vocabulary_table
    from recengine.evaluation.evaluate import evaluate
    from recengine.models.ials import ImplicitALS

    spark = session("local[2]", args.executor_memory)
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
    """One measurement in a fresh process, with the load average around it and its wall time."""
    options = {"scale": args.scale, "factors": args.factors, "iterations": args.iterations, "k": args.k,
               "master": "local[2]", "executor-memory": args.executor_memory, **extra}
    cmd = [sys.executable, __file__, "--child", name] + [x for k, v in options.items() for x in (f"--{k}", str(v))]
    load_start, started = os.getloadavg(), time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  {name} {extra}: failed\n{done.stderr[-3000:]}", flush=True)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(wall_seconds=time.perf_counter() - started, load_average_start=list(load_start),
                  load_average_end=list(os.getloadavg()))
    print(f"  {name} {extra}: {json.dumps(result)}", flush=True)
    return result


def machine() -> dict:
    import implicit
    import pyspark

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr.splitlines()[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_gib, 1),
            "python": platform.python_version(), "java": java, "pyspark": pyspark.__version__,
            "implicit": implicit.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def speed(args: argparse.Namespace) -> dict:
    return {"machine": machine(), "scale": args.scale, "factors": args.factors, "iterations": args.iterations,
            "k": args.k, **{name: run_child(name, args) for name in ("spark", "ials", "ials-cholesky", "implicit")}}


def scaling(args: argparse.Namespace) -> dict:
    from recengine.engines.spark.cluster import StandaloneCluster

    runs = {}
    for workers in args.workers:
        try:
            with StandaloneCluster(workers=workers, cores=1, memory=args.executor_memory) as cluster:
                for multiple in args.multiples:
                    run = run_child("spark", args, master=cluster.master_url, scale=args.base_scale * multiple)
                    runs[f"{workers}-workers-{multiple}x"] = run and {"workers": workers, "multiple": multiple, **run}
        except RecengineError as error:  # the other cluster size may still start
            print(f"  {workers} workers: {error}", flush=True)
    return {"machine": machine(), "base_scale": args.base_scale, "factors": args.factors,
            "iterations": args.iterations, "k": args.k, "worker": f"1 core, {args.executor_memory}", "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", help="default equivalence,speed,scaling (speed,scaling with --quick)")
    parser.add_argument("--scale", type=float, default=0.1, help="speed: fraction of 138k users, 10M interactions")
    parser.add_argument("--base-scale", type=float, default=0.05, help="scaling: the 1x data, as --scale")
    parser.add_argument("--multiples", default="1,2,4", help="scaling: data sizes, in multiples of --base-scale")
    parser.add_argument("--workers", default="1,2", help="scaling: standalone cluster sizes (1 core each)")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--executor-memory", default="2g")
    parser.add_argument("--quick", action="store_true", help=f"speed, scaling, tiny, into {QUICK_RESULTS}")
    parser.add_argument("--output", type=Path, default=None, help=f"results file (default {RESULTS})")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--master", default="local[2]", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(step(args.child, args)))
        return
    if args.quick:
        args.scale, args.base_scale, args.iterations = 0.01, 0.005, 3
    args.parts = args.parts or ("speed,scaling" if args.quick else "equivalence,speed,scaling")
    if args.iterations < 2:
        raise SystemExit("--iterations must be at least 2: Spark's per-iteration time is a difference of two fits")
    args.multiples = [int(m) for m in args.multiples.split(",")]
    args.workers = [int(w) for w in args.workers.split(",")]
    output = args.output or (QUICK_RESULTS if args.quick else RESULTS)
    parts = args.parts.split(",")
    unknown = set(parts) - {"equivalence", "speed", "scaling", "estimate"}
    if unknown:
        raise SystemExit(f"unknown parts {sorted(unknown)}")

    # A stopped run still stops its standalone cluster (the `with` below), whose processes lead their own groups.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results = json.loads(output.read_text()) if output.is_file() else {}
    measure = {"equivalence": lambda: run_child("equivalence", args), "speed": lambda: speed(args),
               "scaling": lambda: scaling(args)}
    for part in (p for p in measure if p in parts):
        results[part] = measure[part]()
        output.parent.mkdir(exist_ok=True)
        output.write_text(json.dumps(results, indent=2))  # after each part: a later failure keeps it
    report(results)
    if results.get("scaling"):
        estimate(results["scaling"])


def report(results: dict) -> None:
    eq = results.get("equivalence")
    if eq:
        print(f"\nNDCG@20 temporal-user ml-latest-small: Spark ALS {eq['spark_ndcg@20']:.4f} "
              f"({eq['spark_params']}), recengine iALS {eq['ials_ndcg@20']:.4f}, gap {eq['relative_gap']:+.1%} "
              f"(target within 5%)")
    speed_ = results.get("speed")
    if speed_ and "machine" in speed_:
        first = next((r for r in speed_.values() if isinstance(r, dict) and "users" in r), None)
        shape = f"{first['users']:,} users x {first['items']:,} items, {first['interactions']:,} interactions" \
            if first else "no run succeeded"
        print(f"\nspeed: synthetic ML-20M shape at scale {speed_['scale']} ({shape}), {speed_['factors']} factors, "
              f"{speed_['iterations']} iterations; {speed_['machine']['cores']} cores, {speed_['machine']['cpu']}")
        print(f"| engine | s/iteration | top-{speed_['k']} all users, s | load avg 1-min start/end |")
        print("|---|---:|---:|---|")
        for name, label in (("spark", "Spark MLlib local[2] (Cholesky)"), ("ials", "recengine iALS (CG, 3 steps)"),
                            ("ials-cholesky", "recengine iALS (Cholesky)"), ("implicit", "implicit (CG)")):
            r = speed_.get(name)
            if r:
                print(f"| {label} | {r['seconds_per_iteration']:.2f} | {r['topk_seconds']:.2f} | "
                      f"{r['load_average_start'][0]:.1f} / {r['load_average_end'][0]:.1f} |")
    scaling_ = results.get("scaling")
    if scaling_ and "runs" in scaling_:
        print(f"\nscaling: standalone cluster, workers of {scaling_['worker']}; base scale {scaling_['base_scale']}, "
              f"{scaling_['factors']} factors, {scaling_['iterations']} iterations")
        print("| workers | data | users | interactions | s/iteration | top-K s | vs 1x | load avg start/end |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        runs = scaling_["runs"]
        for r in runs.values():
            if r:
                base = runs.get(f"{r['workers']}-workers-{min(x['multiple'] for x in runs.values() if x)}x")
                growth = r["seconds_per_iteration"] / base["seconds_per_iteration"] if base else float("nan")
                print(f"| {r['workers']} | {r['multiple']}x | {r['users']:,} | {r['interactions']:,} | "
                      f"{r['seconds_per_iteration']:.2f} | {r['topk_seconds']:.1f} | {growth:.2f} | "
                      f"{r['load_average_start'][0]:.1f} / {r['load_average_end'][0]:.1f} |")


# -------------------------------------------------------------------------------------------- sizing
def als_flops(interactions: float, users: float, items: float, factors: int) -> float:
    """Work of one implicit-ALS iteration with exact solves, as MLlib does it: every interaction adds a packed
    rank-one k x k update in each half step (about k^2 flops each), every user and item row is a Cholesky
    solve (k^3 / 3)."""
    return 2 * interactions * factors**2 + (users + items) * factors**3 / 3


def estimate(scaling_: dict) -> dict | None:
    """Print (and return) cores and hours for TARGET from the scaling runs of the largest measured cluster.

    Throughputs are marginal: the extra work between its smallest and largest data over the extra seconds, so
    that Spark's fixed costs per iteration and per job (scheduling, the Python workers, the broadcast) do not
    count as work. Needs two data sizes that took longer as they grew; else says what is missing.
    """
    runs = [r for r in scaling_["runs"].values() if r]
    cores = max((r["workers"] for r in runs), default=0)
    sized = sorted((r for r in runs if r["workers"] == cores), key=lambda r: r["interactions"])
    k, t = scaling_["factors"], TARGET
    if len(sized) < 2:
        print("\nestimate: needs the scaling part at two data sizes or more on one cluster")
        return None
    small, large = sized[0], sized[-1]
    extra_iteration = large["seconds_per_iteration"] - small["seconds_per_iteration"]
    extra_topk = large["topk_seconds"] - small["topk_seconds"]
    if extra_iteration <= 0 or extra_topk <= 0:
        print(f"\nestimate: the {large['multiple']}x data did not take longer than the {small['multiple']}x "
              f"(s/iteration {large['seconds_per_iteration']:.2f} vs {small['seconds_per_iteration']:.2f}, "
              f"top-K {large['topk_seconds']:.1f} vs {small['topk_seconds']:.1f}): too noisy to extrapolate")
        return None

    def work(r: dict) -> float:
        return als_flops(r["interactions"], r["users"], r["items"], k)

    flops_rate = (work(large) - work(small)) / extra_iteration / cores
    pairs_rate = (large["users"] - small["users"]) * large["items"] / extra_topk / cores
    als_core_hours = t["iterations"] * als_flops(t["events"], t["users"], t["items"], k) / flops_rate / 3600
    topk_core_hours = t["users"] * t["items"] / pairs_rate / 3600
    single = {r["multiple"]: r for r in runs if r["workers"] == 1}
    speedup = {r["multiple"]: single[r["multiple"]]["seconds_per_iteration"] / r["seconds_per_iteration"]
               for r in sized if cores > 1 and r["multiple"] in single}
    out = {"from_runs": [f"{cores}-workers-{r['multiple']}x" for r in (small, large)],
           "gflops_per_core": flops_rate / 1e9, "scored_pairs_per_core_second": pairs_rate,
           "speedup_1_to_n_workers": speedup, "als_core_hours": als_core_hours, "topk_core_hours": topk_core_hours,
           "driver_collect_gb": (t["users"] + t["items"]) * k * 4 / 1e9, "item_broadcast_gb": t["items"] * k * 4 / 1e9,
           "als_shuffle_gb_per_iteration": 2 * t["events"] * k * 4 / 1e9}
    print(f"\nestimate for {t['events']:,} events, {t['users']:,} users, {t['items']:,} items, {k} factors, "
          f"{t['iterations']} iterations, top-20 for every user; marginal rates between runs "
          f"{' and '.join(out['from_runs'])} (load avg {small['load_average_start'][0]:.1f} and "
          f"{large['load_average_start'][0]:.1f} at their starts)")
    print(f"  ALS: {out['gflops_per_core']:.2f} GFLOP/s per core (work model 2 nnz k^2 + (users + items) k^3/3 per "
          f"iteration) -> {als_core_hours:,.0f} core-hours")
    print(f"  top-K: {pairs_rate / 1e6:.1f}M scored (user, item) pairs per core-second -> {topk_core_hours:,.0f} "
          f"core-hours for {t['users'] * t['items']:.0e} pairs")
    print(f"  speedup from 1 to {cores} workers, by data size: "
          + (", ".join(f"{m}x {s:.2f}" for m, s in sorted(speedup.items())) or "not measured"))
    for n_cores in (256, 1024, 4096):
        print(f"  on {n_cores:5d} cores, perfect scaling: ALS {als_core_hours / n_cores:7.2f} h, "
              f"top-K {topk_core_hours / n_cores:7.2f} h")
    print(f"  driver collect of the factors: {out['driver_collect_gb']:.1f} GB (spark.driver.maxResultSize default "
          f"1 GiB); item factors broadcast for top-K: {out['item_broadcast_gb']:.2f} GB per executor; ALS shuffle "
          f"at most {out['als_shuffle_gb_per_iteration']:.0f} GB per iteration")
    return out

if __name__ == "__main__":
    main()
