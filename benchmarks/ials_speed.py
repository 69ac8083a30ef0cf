"""Time per iteration of recengine's iALS vs the `implicit` library's CPU ALS on the same synthetic data.

    .venv/bin/python benchmarks/ials_speed.py --scale 0.1 --factors 128 --iterations 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from synthetic import ml20m_like  # noqa: E402

from recengine.data.dataset import Dataset  # noqa: E402
from recengine.models.ials import ImplicitALS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 138k users / 10M interactions")
    parser.add_argument("--factors", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--solver", default="cg")
    parser.add_argument("--skip-implicit", action="store_true")
    parser.add_argument("--cache", type=Path, help="directory to save the generated data to / load it from")
    args = parser.parse_args()

    start = time.perf_counter()
    if args.cache is not None and (args.cache / "dataset.json").is_file():
        data = Dataset.load(args.cache)
    else:
        data = ml20m_like(int(138_000 * args.scale), 20_000, int(10_000_000 * args.scale), seed=0)
        if args.cache is not None:
            data.save(args.cache)
    print(f"{data}: ready in {time.perf_counter() - start:.1f} s", flush=True)

    # Warm the numba compilation cache on a tiny set, so that the timing is of the kernels only.
    ImplicitALS(factors=args.factors, iterations=1, solver=args.solver).fit(ml20m_like(200, 100, 2000, 1))
    model = ImplicitALS(factors=args.factors, iterations=args.iterations, solver=args.solver)
    model.fit(data)
    per_iter = np.asarray(model._iteration_seconds)
    print(f"recengine ials ({args.solver}, {args.factors} factors): {per_iter.mean():.3f} s/iter "
          f"(median {np.median(per_iter):.3f}, all {np.round(per_iter, 3).tolist()})", flush=True)

    if not args.skip_implicit:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except ImportError:
            print("implicit is not installed: pip install implicit")
            return
        from threadpoolctl import threadpool_limits

        user_items = data.matrix("weight").astype(np.float32)
        seconds: list[float] = []
        with threadpool_limits(1, "blas"):  # implicit's advice: its own threads, single-threaded BLAS
            als = AlternatingLeastSquares(factors=args.factors, iterations=args.iterations, random_state=0,
                                          use_cg=args.solver == "cg", calculate_training_loss=False)
            # implicit times each iteration itself and hands the time to the callback.
            als.fit(user_items, show_progress=False, callback=lambda _, elapsed, __: seconds.append(elapsed))
        per_iter = np.asarray(seconds)
        print(f"implicit ALS ({args.solver}, {args.factors} factors): {per_iter.mean():.3f} s/iter "
              f"(median {np.median(per_iter):.3f}, all {np.round(per_iter, 3).tolist()})", flush=True)


if __name__ == "__main__":
    main()
