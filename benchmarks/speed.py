"""Speed targets of the core issue, against the `implicit` library in the same run, on one synthetic
ML-20M-shaped set (138k users, 20k items, 10M interactions, skewed popularity).

Each measurement runs in its own process, so that its peak memory (max RSS) is its own:
  ials        recengine iALS, seconds per iteration at 128 factors (CG solver)
  ials-implicit   implicit's CPU ALS, same data, factors and iterations
  topk        recengine top-20 for every user with seen items masked, from fixed factors
  topk-implicit   implicit's recommend() for every user on the same factors
  ease        recengine EASE fit on the 20k items

    .venv/bin/pip install -e '.[bench]'      # implicit
    .venv/bin/python benchmarks/speed.py [--scale 1.0] [--iterations 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import ml20m_like  # noqa: E402

from recengine.data.dataset import Dataset  # noqa: E402

STEPS = ("ials", "ials-implicit", "topk", "topk-implicit", "ease")


def load(cache: Path, scale: float) -> Dataset:
    if (cache / "dataset.json").is_file():
        return Dataset.load(cache)
    data = ml20m_like(int(138_000 * scale), 20_000, int(10_000_000 * scale), seed=0)
    data.save(cache)
    return data


def shared_factors(data: Dataset, factors: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.normal(0, 0.1, (data.n_users, factors)).astype(np.float32),
            rng.normal(0, 0.1, (data.n_items, factors)).astype(np.float32))


def step(name: str, data: Dataset, args: argparse.Namespace) -> dict:
    from threadpoolctl import threadpool_limits

    if name == "ials":
        from recengine.models.ials import ImplicitALS

        ImplicitALS(factors=args.factors, iterations=1).fit(ml20m_like(300, 100, 3000, 1))  # compile once
        start = time.perf_counter()
        ImplicitALS(factors=args.factors, iterations=args.iterations).fit(data)
        return {"seconds_per_iteration": (time.perf_counter() - start) / args.iterations}
    if name == "ials-implicit":
        from implicit.cpu.als import AlternatingLeastSquares

        user_items = data.matrix("weight").astype(np.float32)
        with threadpool_limits(1, "blas"):  # implicit's own advice: its threads, single-threaded BLAS
            als = AlternatingLeastSquares(factors=args.factors, iterations=args.iterations, random_state=0,
                                          calculate_training_loss=False)
            start = time.perf_counter()
            als.fit(user_items, show_progress=False)
        return {"seconds_per_iteration": (time.perf_counter() - start) / args.iterations}
    if name == "topk":
        from recengine.models.ials import ImplicitALS

        model = ImplicitALS(factors=args.factors, iterations=1).fit(ml20m_like(300, 100, 3000, 1))
        model.user_factors_, model.item_factors_ = shared_factors(data, args.factors)
        model.n_users_, model.n_items_ = data.n_users, data.n_items
        histories = data.histories()
        model.recommend(histories[:100], k=args.k)  # compile once
        start = time.perf_counter()
        items, _ = model.recommend(histories, k=args.k)
        return {"seconds": time.perf_counter() - start, "checksum": int(items[:, 0].astype(np.int64).sum())}
    if name == "topk-implicit":
        from implicit.cpu.als import AlternatingLeastSquares

        als = AlternatingLeastSquares(factors=args.factors, iterations=1, random_state=0)
        als.user_factors, als.item_factors = shared_factors(data, args.factors)
        user_items = data.matrix("binary").astype(np.float32)
        users = np.arange(data.n_users)
        start = time.perf_counter()
        items, _ = als.recommend(users, user_items, N=args.k, filter_already_liked_items=True)
        return {"seconds": time.perf_counter() - start, "checksum": int(items[:, 0].astype(np.int64).sum())}
    if name == "ease":
        from recengine.models.ease import EASE

        start = time.perf_counter()
        EASE().fit(data)
        return {"seconds": time.perf_counter() - start}
    raise SystemExit(f"unknown step {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 138k users and 10M interactions")
    parser.add_argument("--factors", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/recengine-ml20m-like"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        data = load(args.cache.with_name(f"{args.cache.name}-{args.scale}"), args.scale)
        loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result = step(args.child, data, args)
        # Peak resident memory of the whole process, and how far the step raised it above the loaded data.
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["step_rss_mib"] = result["peak_rss_mib"] - loaded
        print(json.dumps(result))
        return

    data = load(args.cache.with_name(f"{args.cache.name}-{args.scale}"), args.scale)
    print(f"{data}; {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    results = {}
    for name in args.steps.split(","):
        cmd = [sys.executable, __file__, "--child", name, "--scale", str(args.scale), "--factors",
               str(args.factors), "--iterations", str(args.iterations), "--k", str(args.k),
               "--cache", str(args.cache)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stderr[-2000:]}")
            continue
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {name}: {results[name]}", flush=True)

    print(f"\n{'measurement':38s} {'recengine':>10s} {'implicit':>10s} {'ratio':>7s} {'target':>16s}  "
          f"{'peak MiB, process (step)':>30s}")
    rows = [("iALS s/iteration, 128 factors", "ials", "ials-implicit", "seconds_per_iteration", "<= 1.0x"),
            (f"top-{args.k} for all users, seen masked, s", "topk", "topk-implicit", "seconds", "<= 1.0x")]
    for label, ours, theirs, key, target in rows:
        if ours in results and theirs in results:
            a, b = results[ours][key], results[theirs][key]
            print(f"{label:38s} {a:10.3f} {b:10.3f} {a / b:7.2f} {target:>16s}  "
                  f"ours {memory(results[ours])}, theirs {memory(results[theirs])}")
    if "ease" in results:
        print(f"{'EASE fit on 20k items, s':38s} {results['ease']['seconds']:10.1f} {'':>10s} {'':>7s} "
              f"{'<= 60 s':>16s}  ours {memory(results['ease'])}")


def memory(result: dict) -> str:
    return f"{result['peak_rss_mib']:.0f} ({result['step_rss_mib']:+.0f})"


if __name__ == "__main__":
    main()
