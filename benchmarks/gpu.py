"""Speed targets of the GPU paths (neural issue): the torch path of iALS, EASE and all-user top-K against the
existing CPU path (numba/LAPACK), on the ML-20M-shaped synthetic set (138k users, 20k items, 10M interactions).

  ials   seconds per iALS iteration at 128 factors (CG solver, the default), whole iterations only
  ease   EASE fit on the 20k items (Gram + Cholesky inverse + B, float32)
  topk   top-20 for every user with seen items masked, from fixed 128-d factors (fold-in not involved)

--device cuda runs the torch path on the GPU (what the targets are about); --device cpu runs the same torch
code on the CPU, which checks it at full scale where no GPU is lent (the CPU path stays the faster one there).
Each step also reports how far the torch result is from the CPU path's (factors, weights, first items).

    .venv/bin/python benchmarks/gpu.py --device cuda          # on the GPU machine
    .venv/bin/python benchmarks/gpu.py --device cpu [--scale 0.25] [--torch-threads 1]

--torch-threads 1 on a CPU shared with other work: torch's OpenMP threads otherwise spin against each other.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from speed import load, shared_factors  # noqa: E402
from synthetic import ml20m_like  # noqa: E402

from recengine.data.dataset import Dataset  # noqa: E402
from recengine.models import ease, ials  # noqa: E402

STEPS = ("ials", "ease", "topk")
#: The issue's targets on the GPU machine (H100), seconds.
TARGETS = {"ials": 0.1, "ease": 1.0, "topk": 0.5}
RESULTS = Path(__file__).parent / "results" / "gpu.json"


@contextlib.contextmanager
def torch_path(device: str) -> Iterator[str]:
    """The model `device` value that runs the torch path on `device`.

    On CUDA that is simply "cuda". On the CPU, "cpu" means the numba path, so the models' device choice is
    pointed at torch's CPU device instead (batches of any size), which runs exactly the code a GPU runs.
    """
    if device == "cuda":
        yield "cuda"
        return
    saved = [(module, module.accelerator, module.DEVICE_MIN_ROWS) for module in (ials, ease)]
    for module, _, _ in saved:
        module.accelerator = lambda name: torch.device("cpu") if name == "auto" else None
        module.DEVICE_MIN_ROWS = 1
    try:
        yield "auto"
    finally:
        for module, accelerator, min_rows in saved:
            module.accelerator, module.DEVICE_MIN_ROWS = accelerator, min_rows


def timed(device: str, run):
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = run()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def bench_ials(data: Dataset, args: argparse.Namespace) -> dict:
    warm = ml20m_like(300, 100, 3000, 1)
    params = {"factors": args.factors, "iterations": args.iterations}
    ials.ImplicitALS(device="cpu", **params).fit(warm)  # compile the numba kernels
    cpu = ials.ImplicitALS(device="cpu", **params).fit(data)
    with torch_path(args.device) as device:
        ials.ImplicitALS(device=device, **params).fit(warm)
        on_torch = ials.ImplicitALS(device=device, **params).fit(data)
    return {"cpu": float(np.mean(cpu._iteration_seconds)), "torch": float(np.mean(on_torch._iteration_seconds)),
            "max_factor_difference": float(max(np.abs(cpu.item_factors_ - on_torch.item_factors_).max(),
                                               np.abs(cpu.user_factors_ - on_torch.user_factors_).max())),
            "largest_factor": float(np.abs(cpu.item_factors_).max())}


def bench_ease(data: Dataset, args: argparse.Namespace) -> dict:
    warm = ml20m_like(300, 100, 3000, 1)
    ease.EASE(device="cpu").fit(warm)  # compile the numba kernels
    start = time.perf_counter()
    cpu = ease.EASE(device="cpu").fit(data)
    cpu_seconds = time.perf_counter() - start
    with torch_path(args.device) as device:
        ease.EASE(device=device).fit(warm)
        torch_seconds, on_torch = timed(args.device, lambda: ease.EASE(device=device).fit(data))
    difference = float(np.abs(cpu.item_weights_ - on_torch.item_weights_).max())
    return {"cpu": cpu_seconds, "torch": torch_seconds, "max_weight_difference": difference,
            "largest_weight": float(np.abs(cpu.item_weights_).max())}


def bench_topk(data: Dataset, args: argparse.Namespace) -> dict:
    histories = data.histories()
    results = {}
    with torch_path(args.device) as device:
        for name, value in (("cpu", "cpu"), ("torch", device)):
            model = ials.ImplicitALS(factors=args.factors, iterations=1, device=value).fit(
                ml20m_like(300, 100, 3000, 1))
            model.user_factors_, model.item_factors_ = shared_factors(data, args.factors)
            model.n_users_, model.n_items_ = data.n_users, data.n_items
            model.recommend(histories[:1000], k=args.k)  # compile / warm up
            results[name] = timed(args.device, lambda m=model: m.recommend(histories, k=args.k))
    (cpu_seconds, (cpu_items, cpu_scores)), (torch_seconds, (torch_items, torch_scores)) = \
        results["cpu"], results["torch"]
    return {"cpu": cpu_seconds, "torch": torch_seconds,
            "same_items_share": float((cpu_items == torch_items).mean()),
            "max_score_difference": float(np.abs(cpu_scores - torch_scores).max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of 138k users and 10M interactions")
    parser.add_argument("--factors", type=int, default=128)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/recengine-ml20m-like"))
    parser.add_argument("--torch-threads", type=int, help="torch's CPU threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA GPU")
    data = load(args.cache.with_name(f"{args.cache.name}-{args.scale}"), args.scale)
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{data}; torch path on {where}; {platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}", flush=True)
    benches = {"ials": bench_ials, "ease": bench_ease, "topk": bench_topk}
    # Steps run separately on the same data and device add up in one results file.
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    same_run = saved.get("dataset") == str(data) and saved.get("device") == args.device
    results = saved["results"] if same_run else {}
    for name in args.steps.split(","):
        results[name] = benches[name](data, args)
        print(f"  {name}: {results[name]}", flush=True)
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps({"dataset": str(data), "device": args.device, "where": where,
                                       "args": {k: str(v) for k, v in vars(args).items()}, "results": results},
                                      indent=2))

    labels = {"ials": f"iALS s/iteration, {args.factors} factors, CG", "ease": "EASE fit, 20k items, s",
              "topk": f"top-{args.k} for all users, seen masked, s"}
    print(f"\n{'measurement':40s} {'CPU path':>9s} {'torch ' + args.device:>11s} {'GPU target':>11s}  agreement")
    agreement = {"ials": lambda r: f"factors differ by <= {r['max_factor_difference']:.1e}",
                 "ease": lambda r: f"B differs by <= {r['max_weight_difference']:.1e}",
                 "topk": lambda r: f"{100 * r['same_items_share']:.2f}% same items"}
    for name, r in results.items():
        print(f"{labels[name]:40s} {r['cpu']:9.3f} {r['torch']:11.3f} {'<= ' + str(TARGETS[name]):>11s}  "
              f"{agreement[name](r)}")


if __name__ == "__main__":
    main()
