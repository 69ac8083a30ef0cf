"""The demo: bundled MovieLens latest-small → leaderboard on a temporal split → recommendations with titles → the
same data in a fresh SQLite store, a model version trained and activated through the lifecycle, an admin key,
and the API served on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from recengine.console import leaderboard_view, print_frame
from recengine.console import out as console
from recengine.data.dataset import Dataset
from recengine.data.movielens import bundled_movielens
from recengine.data.splits import split as make_split
from recengine.errors import NotSupportedError
from recengine.evaluation import fit_and_evaluate, leaderboard
from recengine.models.registry import create_model
from recengine.serving import Service, Settings
from recengine.serving.lifecycle import promote_if_not_worse, train_version
from recengine.store import Store
from recengine.trained import TrainedModel

DEMO_MODELS = ("popular", "itemknn", "rp3beta", "ease", "ials", "bpr")
DEMO_DIRECTORY = ".recengine-demo"
#: The demo store's file in the demo directory; its model versions go to demo-models/ beside it.
DEMO_STORE = "demo.db"


def run_demo(users: int = 3, random_state: int = 42, *, models: Sequence[str] = DEMO_MODELS,
             directory: str | Path = DEMO_DIRECTORY, serve: bool = True, host: str = "127.0.0.1",
             port: int = 8000) -> str:
    """The whole demo; returns the demo store's URL. models: those on the leaderboard (the best is the one
    served). serve=False stops after the store is loaded, a version is active and the key is printed."""
    start = time.perf_counter()
    dataset = bundled_movielens()
    console.print(f"[bold]MovieLens latest-small[/] (bundled; GroupLens licence in recengine/datasets/): "
                  f"{dataset.n_users:,} users, {dataset.n_items:,} films, {dataset.n_interactions:,} ratings")
    split = make_split(dataset, "temporal-user", random_state=random_state)
    console.print(f"temporal-user split: newest 20% of each user's ratings held out; "
                  f"{split.n_users} users evaluated by full ranking over all films")
    reports = []
    for name in models:
        with console.status(f"fitting and evaluating {name}"):
            reports.append(fit_and_evaluate(create_model(name), split, ks=(20,)))
    board = leaderboard(reports, sort_by="ndcg@20", intervals=True)
    print_frame(leaderboard_view(board, (20,)),
                "Leaderboard (temporal-user, sorted by NDCG@20; ± is the 95% interval half-width)", console)

    best = str(board.iloc[0]["model"])
    with console.status(f"refitting {best} on all ratings"):
        trained = TrainedModel.fit(create_model(best), dataset)
    rng = np.random.default_rng(random_state)
    shown = rng.choice(dataset.users.ids, size=min(users, dataset.n_users), replace=False)
    recs = trained.recommend(shown, k=10)
    for user in shown:
        history = dataset.histories(np.array([dataset.users.index(user)]))
        recent = dataset.items.lookup(history.items[-3:][::-1])
        console.print(f"\n[bold]user {user}[/] — recently rated: " + "; ".join(trained.titles(recent)))
        rows = recs[recs["user"] == user]
        table = Table(show_header=True, header_style="bold")
        for column in ("rank", "film", "score", "because you liked"):
            table.add_column(column)
        for _, row in rows.iterrows():
            table.add_row(str(row["rank"]), trained.titles([row["item"]])[0], f"{row['score']:.3f}",
                          _because(trained, user, row["item"]))
        console.print(table)
    url, key = load_store(dataset, best, Path(directory))
    console.print(f"\ndemo finished in {time.perf_counter() - start:.0f}s")
    if serve:
        serve_store(url, key, host, port)
    return url


def load_store(dataset: Dataset, model: str, directory: Path) -> tuple[str, str]:
    """A fresh store in `directory` with the dataset's ratings and films, `model` trained and activated through
    the lifecycle, and a new admin key (printed, as it is shown only once). Returns the URL and the key."""
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / DEMO_STORE
    # The demo owns these names: each run starts from an empty store with no versions.
    for leftover in (db, db.with_name(f"{db.name}-wal"), db.with_name(f"{db.name}-shm")):
        leftover.unlink(missing_ok=True)
    models_root = directory / f"{db.stem}-models"
    shutil.rmtree(models_root, ignore_errors=True)
    url = f"sqlite:///{db.resolve()}"
    with Store.open(url) as store:
        with console.status("loading the ratings and films into the store"):
            store.upsert_items(_items(dataset))
            store.add_events(dataset.to_frame()[["user", "item", "timestamp", "rating", "weight"]])
        counts = store.counts()
        console.print(f"\n[bold]store[/] {url}: {counts['events']:,} events, {counts['items']:,} items, "
                      f"{counts['users']:,} users", highlight=False, soft_wrap=True)
        with console.status(f"training {model} as a model version (global-temporal evaluation, then all data)"):
            result = train_version(store, model, {}, models_root)
            decision = promote_if_not_worse(store, result)
        version = store.version(result.version.id)
        metrics = ", ".join(f"{m} {version.metrics[m]:.4f}" for m in ("ndcg@20", "recall@20", "coverage@20"))
        console.print(f"model version {version.id} ({version.name}) is {version.status} ({decision.reason}): "
                      f"{metrics} on a global-temporal split", highlight=False, soft_wrap=True)
        key = store.create_api_key("demo", ["read", "write", "admin"])
    console.print("API key with the read, write and admin scopes (shown only this once):")
    console.print(key, highlight=False, soft_wrap=True)
    return url, key


def serve_store(url: str, key: str, host: str, port: int) -> None:
    """Serve the demo store's active version until Ctrl-C."""
    import uvicorn

    from recengine.serving.api import create_app

    settings = Settings(store=url)
    service = Service.open(settings)
    try:
        base = f"http://{host}:{port}"
        console.print(f"\nserving the dashboard on [bold]{base}/[/] and the API (documentation at {base}/docs); try\n"
                      f"  curl -H 'X-API-Key: {key}' '{base}/v1/users/1/recommendations?k=5&explain=true'\n"
                      f"Ctrl-C stops the server.", highlight=False, soft_wrap=True)
        uvicorn.run(create_app(settings, service), host=host, port=port, log_level="warning")
    finally:
        service.close()


def _items(dataset: Dataset) -> pd.DataFrame:
    """The films as the store takes them: genres become the store's categories; year, tags and ids attributes."""
    features = dataset.item_features
    assert features is not None  # the bundled MovieLens always has its films
    return features.rename(columns={"genres": "categories"}).rename_axis("item")


def _because(trained: TrainedModel, user: str, item: str) -> str:
    try:
        reasons = trained.explain(user, item, top=1)["because"]
    except NotSupportedError:
        return ""
    return trained.titles([reasons[0]["item"]])[0] if reasons else ""
