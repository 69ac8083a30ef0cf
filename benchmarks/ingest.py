"""Store ingestion speed: events/s bulk-loaded from a Parquet file into SQLite (and PostgreSQL if a URL is given).

    .venv/bin/python benchmarks/ingest.py [--events 1000000] [--postgres postgresql+psycopg://USER:PW@HOST/DB]

Each row of the table is a fresh, empty store. "file → store" is what `recengine ingest` does (read and validate
the Parquet file with the readers, then one add_events transaction); "frame → store" is add_events alone;
"single event" is the mean time of one add_events call with one event (one commit each, fsynced on SQLite).
Events per CPU second (this process's CPU time; the PostgreSQL server's is not counted) is the rate on a
machine that others are not also using; wall-clock rates drop when they are.
PostgreSQL runs in a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from recengine.data.readers import read_events
from recengine.store import Store


def synthetic_events(n: int, seed: int = 0) -> pd.DataFrame:
    """n events over 100k users and 30k items (Zipf-like item popularity), a year of timestamps, ratings."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / (np.arange(30_000) + 10.0)
    items = rng.choice(30_000, n, p=popularity / popularity.sum())
    return pd.DataFrame({
        "user": pd.Series(np.char.add("u", rng.integers(0, 100_000, n).astype(str))),
        "item": pd.Series(np.char.add("i", items.astype(str))),
        "timestamp": 1_700_000_000 + rng.integers(0, 365 * 86_400, n),
        "event": rng.choice(["view", "click", "purchase"], n, p=[0.8, 0.15, 0.05]),
        "rating": rng.integers(1, 6, n).astype(np.float64),
    })


def measure(fresh_url: Callable[[], str], parquet: Path, frame: pd.DataFrame, singles: int = 200) -> dict[str, float]:
    """The three timings, each on a fresh store from fresh_url()."""
    with Store.open(fresh_url()) as store:
        start, cpu = time.perf_counter(), time.process_time()
        store.add_events(read_events(parquet).events)
        file_seconds, file_cpu = time.perf_counter() - start, time.process_time() - cpu
    with Store.open(fresh_url()) as store:
        start = time.perf_counter()
        store.add_events(frame)
        frame_seconds = time.perf_counter() - start
    with Store.open(fresh_url()) as store:
        one = frame.iloc[:1]
        start = time.perf_counter()
        for _ in range(singles):
            store.add_events(one)
        single_ms = (time.perf_counter() - start) / singles * 1000
    return {"file → store, events/s": len(frame) / file_seconds,
            "file → store, events per CPU second": len(frame) / file_cpu,
            "frame → store, events/s": len(frame) / frame_seconds, "single event, ms": single_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--postgres", help="a PostgreSQL URL to measure as well")
    args = parser.parse_args()
    frame = synthetic_events(args.events)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        parquet = Path(tmp) / "events.parquet"
        frame.to_parquet(parquet, index=False)
        rows["SQLite (WAL, synchronous=FULL)"] = measure(
            lambda: f"sqlite:///{Path(tmp) / uuid.uuid4().hex}.db", parquet, frame)
        if args.postgres:
            admin = sa.create_engine(args.postgres)
            schemas: list[str] = []

            def fresh_schema() -> str:
                schemas.append(f"bench_{uuid.uuid4().hex[:8]}")
                with admin.begin() as conn:
                    conn.exec_driver_sql(f"CREATE SCHEMA {schemas[-1]}")
                url = sa.make_url(args.postgres).update_query_dict({"options": f"-csearch_path={schemas[-1]}"})
                return url.render_as_string(hide_password=False)

            try:
                rows["PostgreSQL (COPY)"] = measure(fresh_schema, parquet, frame)
            finally:
                with admin.begin() as conn:
                    for name in schemas:
                        conn.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
                admin.dispose()
    print(f"{args.events:,} events, {frame['user'].nunique():,} users, {frame['item'].nunique():,} items; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"SQLAlchemy {sa.__version__}")
    columns = list(next(iter(rows.values())))
    print("| store | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name, values in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:,.0f}" if v > 100 else f"{v:.2f}" for v in values.values()) + " |")


if __name__ == "__main__":
    main()
