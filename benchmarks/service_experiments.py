"""What experiments add to a recommendation request, measured in process in one run.

    .venv/bin/python benchmarks/service_experiments.py [--model itemknn] [--requests 3000]

A SQLite store with the bundled MovieLens latest-small, the model trained and activated through the lifecycle
(as benchmarks/service.py does), then one Service. Requests for random training users (top-10) alternate
between three paths, so that load from other jobs falls on all of them alike:

- bare: the slate alone (Service._rank: the model's scores, masks and top-K), no assignment, no impression;
- fixed: GET-equivalent Service.recommend on a surface with a 50/50 hashed experiment: assignment, the
  variant's routing and the impression handed to the writer;
- bandit: the same on a surface with a Thompson-sampling experiment (a posterior draw per request).

Both variants of each experiment serve the same configuration as bare, so the differences are assignment plus
logging. Then the posterior update: a click posted with the request id of a bandit response (Service.add_events,
which commits the event and the reward), timed until the bandit's posterior has moved. In process, not over
HTTP: over HTTP the same work runs inside the request, and the added cost is what is measured here.
Results: benchmarks/results/service_experiments.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from service import prepare_store  # benchmarks/service.py: the same store and model

from recengine.serving import Settings
from recengine.serving.service import Service

RESULTS = Path(__file__).with_name("results") / "service_experiments.json"
K = 10
WARMUP = 200
VARIANTS = [{"name": "control", "share": 0.5}, {"name": "twin", "share": 0.5}]


def quantiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "n": len(ms)}


def measure(service: Service, users: list[str], requests: int, seed: int) -> dict[str, Any]:
    service.experiments.create("fixed", VARIANTS, surface="fixed")
    service.experiments.create("bandit", VARIANTS, surface="bandit", allocation="bandit")
    state = service._state  # the bare path is the private ranking step that recommend() wraps
    paths = {
        "bare": lambda u: service._rank(state, u, K, (), None, (), True, 0.0, False),
        "fixed": lambda u: service.recommend(u, K, surface="fixed"),
        "bandit": lambda u: service.recommend(u, K, surface="bandit"),
    }
    rng = np.random.default_rng(seed)
    for user in rng.choice(users, WARMUP):  # numba compiles the top-K on first use
        for path in paths.values():
            path(str(user))
    timings: dict[str, list[float]] = {name: [] for name in paths}
    for n, user in enumerate(rng.choice(users, requests)):
        order = list(paths) if n % 2 == 0 else list(paths)[::-1]
        for name in order:
            started = time.perf_counter()
            paths[name](str(user))
            timings[name].append(time.perf_counter() - started)
    result: dict[str, Any] = {name: quantiles(t) for name, t in timings.items()}
    # Paired per request (same user, adjacent in time): the median of the differences.
    for name in ("fixed", "bandit"):
        result[f"{name}_added_p50_ms"] = float(np.median(np.subtract(timings[name], timings["bare"])) * 1000)
    service.impressions.flush()

    moved = []
    for user in rng.choice(users, 50):
        shown = service.recommend(str(user), K, surface="bandit")
        before = service.experiments.posterior("bandit")[shown.variant]["successes"]
        started = time.perf_counter()
        service.add_events(pd.DataFrame({"user": [shown.user], "item": [shown.items[0].item],
                                         "timestamp": [int(time.time())], "event": ["click"],
                                         "request_id": [shown.request_id]}))
        assert service.experiments.posterior("bandit")[shown.variant]["successes"] == before + 1
        moved.append(time.perf_counter() - started)
    result["click_to_posterior"] = quantiles(moved)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="itemknn")
    parser.add_argument("--requests", type=int, default=3000, help="requests per path (default 3000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="recengine-experiments-") as tmp:
        print(f"preparing the store and training {args.model} …", flush=True)
        url, _ = prepare_store(Path(tmp), args.model)
        service = Service.open(Settings(store=url))
        try:
            users = [str(u) for u in service._state.trained.dataset.users.ids]
            result = measure(service, users, args.requests, args.seed)
        finally:
            service.close()
    load = os.getloadavg()
    print(f"\n{args.model} on ml-latest-small, top-{K}, {args.requests:,} requests per path, in process "
          f"(load average {load[0]:.1f}):")
    print(f"{'path':<8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for name in ("bare", "fixed", "bandit"):
        r = result[name]
        print(f"{name:<8} {r['p50_ms']:>8.3f} {r['p90_ms']:>8.3f} {r['p99_ms']:>8.3f}")
    print(f"added at p50 (paired): fixed {result['fixed_added_p50_ms']:.3f} ms, bandit "
          f"{result['bandit_added_p50_ms']:.3f} ms")
    c = result["click_to_posterior"]
    print(f"click posted → posterior moved: p50 {c['p50_ms']:.1f} ms, p99 {c['p99_ms']:.1f} ms")
    results = {"machine": {"platform": platform.platform(), "python": platform.python_version(),
                           "cpus": os.cpu_count(), "load_average": load},
               "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "model": args.model, **result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
