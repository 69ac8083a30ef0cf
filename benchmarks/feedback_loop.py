"""Feedback loop (online issue): a model retrained on its own logged clicks over 8 simulated weeks, with and
without exploration.

The simulator is calibrated on MovieLens latest-small (ground truth: iALS on the full data; position-based
clicks, satiation 0.3; the 10% of films that appeared last arrive evenly over days 1-56). The served model is a
32-factor iALS fitted at the start on the oldest 30% of every user's interactions with the films already there
(the ground truth knows all of them), then refitted at the end of each week on that data plus every click logged
so far. Each week is 7 days of 200 sessions of up to 10 requests of 10
items (the user leaves after a slate without a click with probability 0.2). Three ways of serving it:
greedy top-10, epsilon-greedy (each slot replaced by a uniformly drawn released film with probability 0.1) and a
Plackett-Luce softmax over its scores (temperature 0.05). After every week: the model's greedy top-10 NDCG for
every user against the ground truth (graded by true appeal, ideal over released unseen films), the week's catalog
coverage (share of released films shown at least once), the Gini of exposure over released films, and the week's
CTR.

    .venv/bin/python benchmarks/feedback_loop.py          # --cycles 8 --sessions 200

Writes benchmarks/results/feedback_loop.json and docs/feedback_loop.png; prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import matplotlib
import numpy as np

from recengine.data.movielens import bundled_movielens
from recengine.models.ials import ImplicitALS
from recengine.online.simulator import (
    Impressions,
    RecommenderPolicy,
    UserSimulator,
    exposure_gini,
    impressions_dataset,
)

matplotlib.use("Agg")  # headless: the plot is only written to a file
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

ROOT = Path(__file__).resolve().parents[1]
KNOWN_SHARE = 0.3
ARMS = {"greedy": {"exploration": "greedy"}, "epsilon 0.1": {"exploration": "epsilon", "epsilon": 0.1},
        "softmax T=0.05": {"exploration": "softmax", "temperature": 0.05}}


def ground_truth_ndcg(sim: UserSimulator, model: ImplicitALS, policy: RecommenderPolicy) -> float:
    """Mean NDCG@10 over all users of the model's greedy top 10 of released films not in the live history."""
    users = np.arange(sim.n_users_)
    histories = policy.histories(users)
    scores = model.score(histories)
    scores[:, ~sim.released_] = -np.inf
    scores[histories.row_of_entry, histories.items] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :10]
    return float(sim.ndcg(users, top, exclude=histories.matrix("binary")).mean())


def loop(arm: dict, cycles: int, sessions: int, seed: int) -> list[dict[str, float]]:
    data = bundled_movielens()
    sim = UserSimulator(seed=seed).fit(data)
    known = np.ones(data.n_items, dtype=bool)
    known[sim.new_item_order_] = False
    # The system starts out knowing each user's oldest KNOWN_SHARE of interactions (with released films); the
    # ground truth knows them all, so there is something left to learn from the clicks.
    lengths = np.diff(data.indptr)
    rank = np.arange(data.n_interactions) - np.repeat(data.indptr[:-1], lengths)
    early = rank < np.ceil(KNOWN_SHARE * np.repeat(lengths, lengths))
    base = data.select(known[data.item_index] & early, name="ml-latest-small, oldest 30%, released films")
    logs: list[Impressions] = []
    rows = []
    initial = None
    for cycle in range(cycles + 1):
        start = time.perf_counter()
        train = impressions_dataset(base, Impressions.concat(logs)) if logs else base
        model = ImplicitALS(factors=32, random_state=seed + 1).fit(train)
        policy = RecommenderPolicy(model, base.histories(), **arm, seed=seed + cycle)
        policy.release(np.flatnonzero(sim.released_))
        for part in logs:
            policy.observe(part)
        initial = initial if cycle else model
        row = {"cycle": cycle, "ndcg@10": ground_truth_ndcg(sim, model, policy),
               # The model of week 0 on today's histories: what changes because the users' histories and the
               # ideal (released, unseen films) moved, not because the model learned.
               "ndcg@10 (week-0 model)": ground_truth_ndcg(sim, initial, policy)}
        if cycle < cycles:  # serve a week, then retrain on it
            week = sim.run(policy, days=7, sessions=sessions, session_length=10, k=10, leave_probability=0.2,
                           on_release=policy.release, observe=policy.observe)
            logs.append(week)
            released = np.flatnonzero(sim.released_)
            shown = np.zeros(data.n_items, dtype=bool)
            shown[week.item] = True
            row |= {"coverage": float(shown[released].mean()),
                    "gini": exposure_gini(np.searchsorted(released, week.item), len(released)),
                    "ctr": float(week.click.mean()), "new_item_share_of_clicks": float(
                        np.isin(week.item[week.click], sim.new_item_order_).mean())}
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        print(f"  cycle {cycle}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k != "cycle"))
    return rows


def plot(results: dict[str, list[dict[str, float]]], path: Path) -> None:
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for name, rows in results.items():
        for ax, key, label in zip(axes, ("ndcg@10", "coverage", "gini", "ctr"),
                                  ("NDCG@10 against the ground truth", "catalog coverage of the week",
                                   "Gini of the week's exposure", "CTR of the week"), strict=True):
            points = [(r["cycle"], r[key]) for r in rows if key in r]
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
            ax.set_title(label, fontsize=10)
            ax.set_xlabel("retraining cycle (week)")
    axes[0].legend()
    fig.suptitle("iALS retrained on its own clicks, MovieLens-calibrated simulator", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = {}
    for name, arm in ARMS.items():
        print(name)
        results[name] = loop(arm, args.cycles, args.sessions, args.seed)
    plot(results, ROOT / "docs" / "feedback_loop.png")
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "feedback_loop.json").write_text(json.dumps(
        {"config": vars(args), "machine": f"{platform.processor() or platform.machine()}, "
                                          f"python {platform.python_version()}", "results": results}, indent=2))
    print("\n| serving | " + " | ".join(f"week {c}" for c in range(args.cycles + 1)) + " |")
    print("|---|" + "---:|" * (args.cycles + 1))
    for key in ("ndcg@10", "ndcg@10 (week-0 model)", "coverage", "gini", "ctr", "new_item_share_of_clicks"):
        for name, rows in results.items():
            print(f"| {key}, {name} | " + " | ".join(f"{r[key]:.3f}" if key in r else "—" for r in rows) + " |")


if __name__ == "__main__":
    main()
