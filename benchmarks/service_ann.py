"""The ANN service target, over HTTP: a synthetic 1M-item iALS model served by `recengine serve`, top-20 at
100 requests/s for 60 s from this (second) process on loopback, and recall@20 of the answers against exact.

    .venv/bin/pip install -e '.[serve]'      # faiss-cpu
    .venv/bin/python benchmarks/service_ann.py [--items 1000000] [--rate 100] [--seconds 60]

The model is an iALS bundle with structured random factors (no training: the target is retrieval, and iALS on
synthetic data would leave most of a million items with near-zero factors): 1,000 random cluster centres
(tastes), item and user vectors each near one centre with a lognormal norm spread, as benchmarks/ann.py draws
them; every user has seen 30 items of their own cluster. The server (one uvicorn process; an empty SQLite store
and the bundle as --model-dir) builds the service's HNSW index at start (Settings.ann_min_items, default 50,000;
index defaults of recengine.serving.ann). Load: the open-loop generator of benchmarks/service.py (request i due
at start + i / rate, latency from the due time), top-20 for random training users. Recall: top-20 over HTTP for
--recall-users users, one at a time after the load, against exact scoring of the bundle in this process (seen
items excluded). Memory: the server's resident set after start and its peak, and that of a server started on
the same bundle with the index off (RECENGINE_ANN_MIN_ITEMS above the catalogue). Results:
benchmarks/results/service_ann.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from service import HOST, Pool, Server, free_port, open_loop

from recengine.data.dataset import Dataset
from recengine.data.vocab import Vocabulary
from recengine.models.ials import ImplicitALS
from recengine.models.popular import MostPopular
from recengine.store import Store
from recengine.trained import TrainedModel

RESULTS = Path(__file__).with_name("results") / "service_ann.json"
K = 20
SEEN = 30
CLUSTERS = 1_000
#: Requests sent before measuring (numba compiles the first request's paths).
WARMUP = 200


def clustered(rng: np.random.Generator, labels: np.ndarray, centers: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """A vector near centre labels[i] per row, with a lognormal norm spread, in chunks to bound temporary memory."""
    out = np.empty((len(labels), centers.shape[1]), dtype=np.float32)
    for start in range(0, len(labels), chunk):
        part = labels[start:start + chunk]
        v = centers[part] + 0.7 * rng.standard_normal((len(part), centers.shape[1]))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[start:start + len(part)] = v * rng.lognormal(0.0, 0.5, len(part))[:, None]
    return out


def synthetic_bundle(n_items: int, n_users: int, dim: int, seed: int) -> TrainedModel:
    """The iALS bundle described in the module docstring."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((CLUSTERS, dim))
    item_labels, user_labels = rng.integers(0, CLUSTERS, n_items), rng.integers(0, CLUSTERS, n_users)
    model = ImplicitALS(factors=dim, device="cpu")
    model.item_factors_ = clustered(rng, item_labels, centers)
    model.user_factors_ = clustered(rng, user_labels, centers)
    model.n_items_, model.n_users_ = n_items, n_users
    by_cluster = np.argsort(item_labels, kind="stable")
    bounds = np.searchsorted(item_labels[by_cluster], np.arange(CLUSTERS + 1))
    seen = np.concatenate([by_cluster[rng.choice(np.arange(bounds[c], bounds[c + 1]), SEEN, replace=False)]
                           for c in user_labels])
    users = [f"u{u}" for u in range(n_users)]
    frame = pd.DataFrame({"user": np.repeat(users, SEEN), "item": [f"i{j}" for j in seen],
                          "timestamp": 1_600_000_000 + np.arange(len(seen))})
    dataset = Dataset.from_events(frame, users=Vocabulary(users), items=Vocabulary([f"i{j}" for j in range(n_items)]),
                                  name=f"synthetic-{n_items}")
    return TrainedModel(model, dataset, MostPopular().fit(dataset),
                        {"model": "ials", "params": model.get_params(), "trained_at": "synthetic"})


def start(url: str, model_dir: Path, environment: dict[str, str], timeout: float) -> tuple[Server, float]:
    """`recengine serve` on a free port; returns it and the seconds until it accepted connections."""
    port = free_port()
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "recengine.cli", "serve", "--store", url, "--model-dir",
                                str(model_dir), "--port", str(port), "--log-level", "warning"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **environment})
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.communicate()[0]}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return Server(process, port), time.perf_counter() - began
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"the server did not come up within {timeout:.0f} s") from None
            time.sleep(0.5)


def memory_mib(server: Server) -> dict[str, float]:
    """The server's resident set now (VmRSS) and at its peak (VmHWM), MiB."""
    status = Path(f"/proc/{server.process.pid}/status").read_text().splitlines()
    values = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in status if line.startswith(("VmRSS", "VmHWM"))}
    return {"rss_mib": values["VmRSS"], "peak_rss_mib": values["VmHWM"]}


def path(user: str) -> str:
    return f"/v1/users/{user}/recommendations?k={K}"


async def load(pool: Pool, server: Server, users: list[str], rate: float, seconds: float, seed: int
               ) -> dict[str, Any]:
    """Open loop (service.open_loop) over n = rate × seconds requests for random training users."""
    chosen = np.random.default_rng(seed).choice(users, int(rate * seconds))
    return {**await open_loop(pool, server, [path(str(user)) for user in chosen], rate, K), "seconds": seconds}


async def answers(pool: Pool, users: list[str]) -> dict[str, list[str]]:
    out = {}
    for user in users:
        status, body = await pool.request("GET", path(user))
        assert status == 200, body
        out[user] = [r["item"] for r in json.loads(body)["items"]]
    return out


def exact_top(trained: TrainedModel, users: list[str], batch: int = 25) -> dict[str, set[str]]:
    """Exact top-K (seen excluded) by scoring the whole catalogue, a few users at a time."""
    out: dict[str, set[str]] = {}
    for start in range(0, len(users), batch):
        frame = trained.recommend(users[start:start + batch], K)
        out.update({str(u): set(group) for u, group in frame.groupby("user")["item"]})
    return out


async def measure(server: Server, key: str, users: list[str], args: argparse.Namespace) -> dict[str, Any]:
    pool = Pool(server.port, key)
    try:
        status, body = await pool.request("GET", "/v1/model")
        assert status == 200, body
        model = json.loads(body)
        await load(pool, server, users, args.rate, WARMUP / args.rate, seed=1)
        result = {"model": model, "load": await load(pool, server, users, args.rate, args.seconds, seed=2)}
        rng = np.random.default_rng(3)
        result["answers"] = await answers(pool, [str(u) for u in rng.choice(users, args.recall_users, replace=False)])
        return result
    finally:
        pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--recall-users", type=int, default=300)
    parser.add_argument("--start-timeout", type=float, default=3_600.0, help="seconds for the index build")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="recengine-service-ann-") as tmp:
        began = time.perf_counter()
        trained = synthetic_bundle(args.items, args.users, args.dim, seed=0)
        model_dir = Path(tmp) / "model"
        trained.save(model_dir)
        print(f"bundle of {args.items:,} items x {args.dim} written in {time.perf_counter() - began:.0f} s",
              flush=True)
        url = f"sqlite:///{Path(tmp) / 'store.db'}"
        with Store.open(url) as store:
            key = store.create_api_key("benchmark", ["read"])
        users = [f"u{u}" for u in range(args.users)]

        plain, plain_start = start(url, model_dir, {"RECENGINE_ANN_MIN_ITEMS": str(args.items + 1)},
                                   args.start_timeout)
        plain_memory = memory_mib(plain)
        plain.stop()
        print(f"without the index: up in {plain_start:.0f} s, {plain_memory['rss_mib']:.0f} MiB", flush=True)

        server, startup = start(url, model_dir, {}, args.start_timeout)
        try:
            started_memory = memory_mib(server)
            print(f"with the index: up in {startup:.0f} s, {started_memory['rss_mib']:.0f} MiB; loading …",
                  flush=True)
            result = asyncio.run(measure(server, key, users, args))
            result["memory_after_load"] = memory_mib(server)
        finally:
            server.stop()
    exact = exact_top(trained, list(result["answers"]))
    recall = float(np.mean([len(set(items) & exact[u]) / K for u, items in result["answers"].items()]))
    lat, retrieval = result["load"], result["model"]["retrieval"]
    summary = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"}, "retrieval": retrieval,
        "server_start_seconds": startup, "memory_mib": {"without_index": plain_memory, "at_start": started_memory,
                                                          "after_load": result["memory_after_load"]},
        "load": lat, "recall_at_20": recall, "recall_users": len(result["answers"])}
    print(f"\n{args.items:,} items x {args.dim}; index {retrieval['search']} (efSearch {retrieval['ef_search']}), "
          f"built in {retrieval['build_seconds']:.0f} s; server up in {startup:.0f} s")
    print("| req/s | s | p50 ms | p90 ms | p99 ms | max ms | errors | answered req/s | server CPU ms/request | "
          "load average | recall@20 |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    print(f"| {lat['rate']:g} | {lat['seconds']:g} | {lat['p50_ms']:.2f} | {lat['p90_ms']:.2f} | {lat['p99_ms']:.2f} "
          f"| {lat['max_ms']:.1f} | {lat['errors']} | {lat['answered_rate']:.1f} | "
          f"{lat['server_cpu_ms_per_request']:.2f} | {lat['load_average_before']:.1f} → "
          f"{lat['load_average_after']:.1f} | {recall:.4f} |")
    memory = summary["memory_mib"]
    print(f"server resident memory: {memory['without_index']['rss_mib']:.0f} MiB without the index, "
          f"{memory['at_start']['rss_mib']:.0f} MiB with it at start (peak {memory['at_start']['peak_rss_mib']:.0f}), "
          f"{memory['after_load']['rss_mib']:.0f} MiB after the load")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
