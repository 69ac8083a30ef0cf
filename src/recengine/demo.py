"""The demo: bundled MovieLens latest-small → leaderboard on a temporal split → recommendations with titles."""

from __future__ import annotations

import time

import numpy as np
from rich.table import Table

from recengine.console import leaderboard_view, print_frame
from recengine.console import out as console
from recengine.data.movielens import bundled_movielens
from recengine.data.splits import split as make_split
from recengine.errors import NotSupportedError
from recengine.evaluation import fit_and_evaluate, leaderboard
from recengine.models.registry import create_model
from recengine.trained import TrainedModel

DEMO_MODELS = ("popular", "itemknn", "rp3beta", "ease", "ials", "bpr")


def run_demo(users: int = 3, random_state: int = 42) -> None:
    start = time.perf_counter()
    dataset = bundled_movielens()
    console.print(f"[bold]MovieLens latest-small[/] (bundled; GroupLens licence in recengine/datasets/): "
                  f"{dataset.n_users:,} users, {dataset.n_items:,} films, {dataset.n_interactions:,} ratings")
    split = make_split(dataset, "temporal-user", random_state=random_state)
    console.print(f"temporal-user split: newest 20% of each user's ratings held out; "
                  f"{split.n_users} users evaluated by full ranking over all films")
    reports = []
    for name in DEMO_MODELS:
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
    console.print(f"\ndemo finished in {time.perf_counter() - start:.0f}s")


def _because(trained: TrainedModel, user: str, item: str) -> str:
    try:
        reasons = trained.explain(user, item, top=1)["because"]
    except NotSupportedError:
        return ""
    return trained.titles([reasons[0]["item"]])[0] if reasons else ""
