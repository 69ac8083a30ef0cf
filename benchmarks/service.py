"""The service targets, measured over HTTP from this (second) process against `recengine serve` on loopback.

    .venv/bin/python benchmarks/service.py [--models itemknn,ease] [--rate 300] [--seconds 60]

Per model: a fresh SQLite store with the bundled MovieLens latest-small (films and ratings, as the demo loads
them), the model trained and activated through the lifecycle (train_version, promote_if_not_worse), then
`recengine serve` started as a subprocess that serves the store's active version. From here:

- latency: an open-loop generator sends GET /v1/users/{id}/recommendations?k=10 at a fixed rate. Request i is
  due at start + i / rate whatever happened to the earlier ones, and its latency runs from that due time (not
  from when it was actually written), so a server that falls behind shows as queueing in the percentiles
  instead of silently slowing the generator (coordinated omission). Users are random training users, with a
  share of unknown ones (the cold-start path). An error is a non-200, a transport failure, or a known user
  answered with fewer than k items. The server keeps each user's scores until their history changes
  (RECENGINE_SCORE_CACHE_MB, here --score-cache-mb): 610 users at 300 requests/s come back every 2 s, so nearly
  every request after the first minute's start is a hit (the table gives the share), where a real site's
  traffic repeats far less; --score-cache-mb 0 measures every request scored afresh.
- event to visible: per user, GET their top-10, POST a view of its first item, then GET again; the time runs
  from sending the POST to the answer of the first GET that no longer holds the item (a stale read is counted
  and polled again for up to a second).
- ingestion: POST /v1/events with batches of 1,000 (and 100) events, one batch in flight, for a fixed time.

The HTTP client is a minimal HTTP/1.1 keep-alive client on asyncio streams: on 2 shared cores a full client
library's per-request CPU would be measured as server latency. Server CPU seconds come from /proc; the load
average is recorded because other jobs share the machine. Results: benchmarks/results/service.json.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recengine.data.movielens import bundled_movielens
from recengine.serving.lifecycle import promote_if_not_worse, train_version
from recengine.serving.score_cache import DEFAULT_MAX_BYTES
from recengine.store import Store

RESULTS = Path(__file__).with_name("results") / "service.json"
HOST = "127.0.0.1"
K = 10
#: Requests sent before measuring: numba compiles the top-K on the first request of each path.
WARMUP = 300


# ------------------------------------------------------------------------------------------ the HTTP client
class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its whole response, then the next request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str):
        self.reader, self.writer = reader, writer
        self.headers = f"Host: {HOST}\r\nX-API-Key: {key}\r\n"

    @classmethod
    async def open(cls, port: int, key: str) -> Connection:
        reader, writer = await asyncio.open_connection(HOST, port)
        # Requests are single small writes: Nagle would hold a POST's body back waiting for an ACK.
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer, key)

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\n{self.headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write((head + "\r\n").encode() + (body or b""))
        response = await self.reader.readuntil(b"\r\n\r\n")
        status = int(response[9:12])
        length = 0
        for line in response.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class Pool:
    """At most `size` keep-alive connections, reused. A request that finds them all busy waits for one; the
    open-loop generator measures from the due time, so that wait counts as queueing (as in wrk2), while the
    server is spared a connection storm (thousands of new connections) that a stalled run would otherwise add."""

    #: uvicorn closes a keep-alive connection after 5 s idle; one idle for longer than this is not reused, so a
    #: request never races the server's close (which would be a client error, not a server one).
    MAX_IDLE = 2.0

    def __init__(self, port: int, key: str, size: int = 64):
        self.port, self.key = port, key
        self.idle: list[tuple[Connection, float]] = []
        self.slots = asyncio.Semaphore(size)
        self.opened = 0

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        async with self.slots:
            connection = None
            while self.idle and connection is None:
                candidate, since = self.idle.pop()
                if time.monotonic() - since < self.MAX_IDLE:
                    connection = candidate
                else:
                    candidate.close()
            if connection is None:
                connection = await Connection.open(self.port, self.key)
                self.opened += 1
            try:
                result = await connection.request(method, path, body)
            except BaseException:
                connection.close()  # a half-read response leaves the stream unusable
                raise
            self.idle.append((connection, time.monotonic()))
            return result

    def close(self) -> None:
        for connection, _ in self.idle:
            connection.close()


# ------------------------------------------------------------------------------------------ the server
@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int

    def cpu_seconds(self) -> float:
        """User plus system CPU of the server process so far (Linux /proc; clock ticks)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)  # uvicorn finishes open requests and exits
        try:
            self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def prepare_store(directory: Path, model: str) -> tuple[str, str]:
    """A SQLite store with the bundled MovieLens, `model` trained and active, and a read-write key."""
    dataset = bundled_movielens()
    url = f"sqlite:///{directory / 'service.db'}"
    with Store.open(url) as store:
        features = dataset.item_features
        assert features is not None  # the bundled MovieLens always has its films
        # As the demo loads them: genres are the store's categories, the rest attributes.
        store.upsert_items(features.rename(columns={"genres": "categories"}).rename_axis("item"))
        store.add_events(dataset.to_frame()[["user", "item", "timestamp", "rating", "weight"]])
        decision = promote_if_not_worse(store, train_version(store, model, {}, directory / "models"))
        assert decision.promoted, decision.reason
        key = store.create_api_key("benchmark", ["read", "write"])
    return url, key


def start_server(url: str, score_cache_mb: int) -> Server:
    port = free_port()
    env = os.environ | {"RECENGINE_SCORE_CACHE_MB": str(score_cache_mb)}
    # Access logs off (warning level): a log line per request is CPU the targets do not need to pay.
    process = subprocess.Popen([sys.executable, "-m", "recengine.cli", "serve", "--store", url, "--port", str(port),
                                "--log-level", "warning"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env)
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.communicate()[0]}")
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return Server(process, port)
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the server did not come up within 120 s") from None
            time.sleep(0.2)


# ------------------------------------------------------------------------------------------ measurements
def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    if not len(ms):
        return {}
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def recommendations_path(user: str) -> str:
    return f"/v1/users/{user}/recommendations?k={K}"


async def open_loop(pool: Pool, server: Server, paths: list[str], rate: float, k: int) -> dict[str, Any]:
    """GET paths[i] due at start + i / rate, latency measured from the due time (queueing is not hidden by a
    slowed-down client); an error is a non-200, a transport failure or fewer than k items."""
    n = len(paths)
    latencies: list[float] = [0.0] * n
    failures: list[str] = []

    async def one(i: int, due: float) -> None:
        try:
            status, body = await pool.request("GET", paths[i])
            latencies[i] = time.perf_counter() - due
            if status != 200:
                failures.append(f"{status}: {body[:200]!r}")
            elif len(json.loads(body)["items"]) != k:
                failures.append(f"{paths[i]}: {len(json.loads(body)['items'])} items")
        except (OSError, asyncio.IncompleteReadError) as error:
            latencies[i] = time.perf_counter() - due
            failures.append(f"{type(error).__name__}: {error}")

    load_before, cpu_before, opened = os.getloadavg(), server.cpu_seconds(), pool.opened
    tasks = []
    # The generator's own cyclic garbage collector stays off while it times: with thousands of live tasks its
    # full collections paused this process for 110-130 ms (measured), which the open loop would charge to the
    # server as latency. Reference counting still frees what the run drops; the server is untouched.
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter() + 0.05
        for i in range(n):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, due)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return {"requests": n, "rate": rate, "seconds": n / rate, "answered_rate": n / elapsed,
            "errors": len(failures), "first_errors": failures[:5], **percentiles(latencies),
            "connections_opened": pool.opened - opened,
            "server_cpu_ms_per_request": (server.cpu_seconds() - cpu_before) / n * 1000,
            "load_average_before": load_before[0], "load_average_after": os.getloadavg()[0]}


async def latency(pool: Pool, server: Server, users: list[str], rate: float, seconds: float, unknown: float,
                  seed: int) -> dict[str, Any]:
    """The open-loop run: n = rate × seconds requests for random users, a share `unknown` of them new."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    chosen = rng.choice(users, n)
    cold = rng.random(n) < unknown
    paths = [recommendations_path(f"new-{seed}-{i}" if cold[i] else str(chosen[i])) for i in range(n)]
    before = await score_cache(pool)
    result = await open_loop(pool, server, paths, rate, K)
    after = await score_cache(pool)
    return {**result, "seconds": seconds, "unknown_users": int(cold.sum()),
            "score_cache": {name: after[name] - before[name] for name in ("hits", "misses")}}


async def score_cache(pool: Pool) -> dict[str, int]:
    """The serving model's score cache counters (GET /v1/model)."""
    status, body = await pool.request("GET", "/v1/model")
    assert status == 200, body
    return json.loads(body)["score_cache"]


async def visible(pool: Pool, users: list[str], n: int, seed: int) -> dict[str, Any]:
    """Event to visible for n users, one after another on an otherwise idle server. The event is a view of the
    user's first recommendation: that must change the top-10 (a seen item is never recommended), so a list
    that still holds it is a stale read; whether the other nine moved too (their scores, by fold-in) is
    counted as well."""
    rng = np.random.default_rng(seed)
    totals, posts, stale, reranked = [], [], 0, 0

    async def top(path: str) -> list[str]:
        status, body = await pool.request("GET", path)
        assert status == 200, body
        return [r["item"] for r in json.loads(body)["items"]]

    for user in rng.choice(users, n, replace=False):
        path = recommendations_path(str(user))
        before = await top(path)
        body = json.dumps({"events": [{"user": str(user), "item": before[0], "event": "view"}]}).encode()
        start = time.perf_counter()
        status, answer = await pool.request("POST", "/v1/events", body)
        posted = time.perf_counter()
        assert status == 201, answer
        after = await top(path)
        if before[0] in after:
            stale += 1
            while before[0] in after and time.perf_counter() - start < 1.0:
                after = await top(path)
        totals.append(time.perf_counter() - start)
        posts.append(posted - start)
        reranked += after[:K - 1] != before[1:]
    return {"users": n, "stale_first_reads": stale, "reranked_beyond_the_removal": reranked,
            **percentiles(totals), "post": percentiles(posts), "load_average": os.getloadavg()[0]}


async def ingestion(pool: Pool, server: Server, users: list[str], items: list[str], batch: int, seconds: float,
                    seed: int) -> dict[str, Any]:
    """Batches of `batch` events (known users and items, a view each, timestamped by the server) back to back
    for `seconds`. Bodies are encoded before the clock starts: the client's JSON is not the server's cost."""
    rng = np.random.default_rng(seed)
    bodies = [json.dumps({"events": [{"user": str(u), "item": str(i), "event": "view"}
                                     for u, i in zip(rng.choice(users, batch), rng.choice(items, batch),
                                                     strict=True)]}).encode()
              for _ in range(20)]
    load_before, cpu_before = os.getloadavg(), server.cpu_seconds()
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        sent = time.perf_counter()
        status, answer = await pool.request("POST", "/v1/events", bodies[len(times) % len(bodies)])
        assert status == 201, answer
        times.append(time.perf_counter() - sent)
    elapsed = time.perf_counter() - start
    events = len(times) * batch
    return {"batch": batch, "batches": len(times), "events": events, "seconds": elapsed,
            "events_per_s": events / elapsed, "batch_latency": percentiles(times),
            "server_cpu_us_per_event": (server.cpu_seconds() - cpu_before) / events * 1e6,
            "load_average_before": load_before[0], "load_average_after": os.getloadavg()[0]}


async def measure(server: Server, key: str, args: argparse.Namespace) -> dict[str, Any]:
    dataset = bundled_movielens()
    frame = dataset.to_frame()
    users = [str(u) for u in dataset.users.ids]
    popular = [str(i) for i in frame["item"].value_counts().index[:1_000]]
    pool = Pool(server.port, key)
    try:
        await latency(pool, server, users, args.rates[0], WARMUP / args.rates[0], args.unknown, seed=1)
        result: dict[str, Any] = {"latency": [await latency(pool, server, users, rate, args.seconds, args.unknown,
                                                            seed=2) for rate in args.rates]}
        result["event_to_visible"] = await visible(pool, users, args.visible_users, seed=3)
        result["ingestion"] = [await ingestion(pool, server, users, popular, batch, args.ingest_seconds, seed=4)
                               for batch in (1_000, 100)]
        return result
    finally:
        pool.close()


def print_tables(model: str, result: dict[str, Any], args: argparse.Namespace) -> None:
    vis = result["event_to_visible"]
    print(f"\n{model}: top-{K}, open loop ({args.unknown:.0%} of requests for unknown users)")
    print("| req/s | s | p50 ms | p90 ms | p99 ms | max ms | errors | answered req/s | server CPU ms/request | "
          "score cache hits | load average |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for lat in result["latency"]:
        print(f"| {lat['rate']:g} | {lat['seconds']:g} | {lat['p50_ms']:.2f} | {lat['p90_ms']:.2f} | "
              f"{lat['p99_ms']:.2f} | {lat['max_ms']:.1f} | {lat['errors']} | {lat['answered_rate']:.1f} | "
              f"{lat['server_cpu_ms_per_request']:.2f} | "
              f"{lat['score_cache']['hits'] / max(1, lat['score_cache']['hits'] + lat['score_cache']['misses']):.1%} | "
              f"{lat['load_average_before']:.2f} → {lat['load_average_after']:.2f} |")
    print(f"\nevent to visible ({vis['users']} users; stale first reads: {vis['stale_first_reads']}; "
          f"re-ranked beyond the removal: {vis['reranked_beyond_the_removal']})")
    print("| POST→GET p50 ms | p99 ms | max ms | POST alone p50 ms | p99 ms | load average |")
    print("|---:|---:|---:|---:|---:|---|")
    print(f"| {vis['p50_ms']:.2f} | {vis['p99_ms']:.2f} | {vis['max_ms']:.1f} | {vis['post']['p50_ms']:.2f} | "
          f"{vis['post']['p99_ms']:.2f} | {vis['load_average']:.2f} |")
    print("\ningestion through the API (one batch in flight)")
    print("| batch | events/s | batch p50 ms | batch p99 ms | server CPU µs/event | load average |")
    print("|---:|---:|---:|---:|---:|---|")
    for row in result["ingestion"]:
        print(f"| {row['batch']:,} | {row['events_per_s']:,.0f} | {row['batch_latency']['p50_ms']:.1f} | "
              f"{row['batch_latency']['p99_ms']:.1f} | {row['server_cpu_us_per_event']:.1f} | "
              f"{row['load_average_before']:.2f} → {row['load_average_after']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="itemknn,ease", help="comma-separated (default itemknn,ease)")
    parser.add_argument("--rates", type=lambda text: [float(r) for r in text.split(",")], default=[300.0],
                        help="comma-separated requests per second, a latency run each (default 300)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each latency run (default 60)")
    parser.add_argument("--unknown", type=float, default=0.1, help="share of requests for unknown users")
    parser.add_argument("--visible-users", type=int, default=200, help="users in the event-to-visible run")
    parser.add_argument("--ingest-seconds", type=float, default=20.0, help="length of each ingestion run")
    parser.add_argument("--score-cache-mb", type=int, default=DEFAULT_MAX_BYTES // 2**20,
                        help="the server's RECENGINE_SCORE_CACHE_MB (0: every request scored afresh)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "processor": platform.processor()},
        "settings": {k: v for k, v in vars(args).items() if k != "out"}, "models": {}}
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        with tempfile.TemporaryDirectory(prefix="recengine-service-") as tmp:
            print(f"\npreparing the store and training {model} …", flush=True)
            url, key = prepare_store(Path(tmp), model)
            server = start_server(url, args.score_cache_mb)
            try:
                result = asyncio.run(measure(server, key, args))
            finally:
                server.stop()
        results["models"][model] = result
        print_tables(model, result, args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
