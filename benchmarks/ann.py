"""ANN retrieval target of the service issue: a synthetic 1M-item catalog, HNSW recall@20 against exact search
and in-process single-query latency (the HTTP load test is benchmarks/service_ann.py).

Item and user vectors are drawn the same way: around 1,000 random cluster centres (tastes/genres) with noise,
then scaled by a lognormal norm, the spread that popularity gives real factor models' item vectors. Measured:
build time and resident-memory growth of the index, recall@20 of HNSW against exact search on --queries users
for each efSearch, and p50/p99 latency of --latency-queries sequential one-user searches (top-20, without and
with 100 excluded seen items), and of exact search (matmul + shared top-K) for comparison.

    .venv/bin/pip install -e '.[serve]'      # faiss-cpu
    .venv/bin/python benchmarks/ann.py [--items 1000000] [--ef-search 64,128,256] [--out results/ann.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from recengine.serving.ann import EF_CONSTRUCTION, EF_SEARCH, HNSW_M, ItemIndex

K = 20
EXCLUDED = 100


def clustered(rng: np.random.Generator, n: int, centers: np.ndarray, chunk: int = 100_000) -> np.ndarray:
    """n vectors near random centres with a lognormal norm spread, drawn in chunks to bound temporary memory."""
    out = np.empty((n, centers.shape[1]), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        v = centers[rng.integers(0, len(centers), m)] + 0.7 * rng.standard_normal((m, centers.shape[1]))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        out[start:start + m] = v * rng.lognormal(0.0, 0.5, m)[:, None]
    return out


def rss_mib() -> float:
    """Current resident memory (VmRSS) of this process in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def latency_ms(index: ItemIndex, queries: np.ndarray, exclude: list[np.ndarray] | None) -> tuple[float, float]:
    """p50 and p99 of sequential one-query searches, in milliseconds."""
    times = np.empty(len(queries))
    for i in range(len(queries)):
        start = time.perf_counter()
        index.search(queries[i:i + 1], K, exclude=None if exclude is None else exclude[i:i + 1])
        times[i] = time.perf_counter() - start
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--queries", type=int, default=1_000, help="users for recall@20")
    parser.add_argument("--latency-queries", type=int, default=2_000, help="sequential single-user ANN searches")
    parser.add_argument("--exact-latency-queries", type=int, default=200, help="sequential exact searches")
    parser.add_argument("--m", type=int, default=HNSW_M)
    parser.add_argument("--ef-construction", type=int, default=EF_CONSTRUCTION)
    parser.add_argument("--ef-search", default=f"64,{EF_SEARCH},256", help="comma-separated values to measure")
    parser.add_argument("--deterministic", action="store_true", help="one-thread build")
    parser.add_argument("--out", type=Path, help="also write the results as JSON")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((1_000, args.dim))
    items = clustered(rng, args.items, centers)
    users = clustered(rng, max(args.queries, args.latency_queries), centers)
    seen = [rng.choice(args.items, EXCLUDED, replace=False) for _ in range(args.latency_queries)]

    exact = ItemIndex.build(items, exact_below=args.items + 1)
    start = time.perf_counter()
    truth, _ = exact.search(users[:args.queries], K)
    print(f"exact top-{K} of {args.queries} users in one batch: {time.perf_counter() - start:.1f} s", flush=True)
    exact_p50, exact_p99 = latency_ms(exact, users[:args.exact_latency_queries], None)

    before = rss_mib()
    start = time.perf_counter()
    index = ItemIndex.build(items, exact_below=0, m=args.m, ef_construction=args.ef_construction,
                            deterministic=args.deterministic)
    build_s = time.perf_counter() - start
    memory_mib = rss_mib() - before
    print(f"HNSW build: {build_s:.1f} s, +{memory_mib:.0f} MiB resident", flush=True)

    rows = []
    for ef in (int(v) for v in args.ef_search.split(",")):
        index.ef_search = ef
        found, _ = index.search(users[:args.queries], K)
        recall = float(np.mean([len(np.intersect1d(f, t)) / K for f, t in zip(found, truth, strict=True)]))
        p50, p99 = latency_ms(index, users[:args.latency_queries], None)
        ex50, ex99 = latency_ms(index, users[:args.latency_queries], seen)
        rows.append({"ef_search": ef, "recall_at_20": recall, "p50_ms": p50, "p99_ms": p99,
                     "p50_ms_excluding_100": ex50, "p99_ms_excluding_100": ex99})
        print(f"efSearch {ef}: recall@20 {recall:.4f}, p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)

    print(f"\n{args.items:,} items x {args.dim} dims; HNSW M={args.m}, efConstruction={args.ef_construction}; "
          f"build {build_s:.0f} s, +{memory_mib:.0f} MiB; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"| search | recall@{K} | p50 ms | p99 ms | p50 ms, {EXCLUDED} excluded | p99 ms, {EXCLUDED} excluded |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| HNSW efSearch={r['ef_search']} | {r['recall_at_20']:.4f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
              f"| {r['p50_ms_excluding_100']:.2f} | {r['p99_ms_excluding_100']:.2f} |")
    print(f"| exact (matmul + top-K) | 1.0000 | {exact_p50:.2f} | {exact_p99:.2f} | | |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "items": args.items, "dim": args.dim, "m": args.m, "ef_construction": args.ef_construction,
            "deterministic": args.deterministic, "build_seconds": build_s, "index_memory_mib": memory_mib,
            "exact_p50_ms": exact_p50, "exact_p99_ms": exact_p99, "hnsw": rows,
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}, indent=2))


if __name__ == "__main__":
    main()
