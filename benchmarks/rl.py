"""Top-K off-policy REINFORCE against its supervised counterpart, in the simulator (online issue, RL target).

The simulator is calibrated on MovieLens latest-small (position-based clicks, satiation 0.3, 10% of items arriving
over 56 days). A behaviour policy — a Plackett-Luce softmax (temperature 0.05) over a 32-factor iALS fitted on
the data — logs `--log-days` days of sessions (300 a day, up to 30 requests of 10 items; after a slate without a
click the user leaves with probability 0.2), with its softmax probability of every shown item as propensity.
Supervised SASRec is trained on next-click over the data plus the logged clicks; REINFORCE fine-tunes a copy of
it on the logged clicks with the top-K correction (K = 10), capped weights (10) and discounted session returns.
Each policy then serves its top 10 in `--eval-days` fresh simulated days (the same seed, the same start) and the
clicks per session are compared, with 95% t-intervals over sessions.

    .venv/bin/python benchmarks/rl.py                  # --log-days 4 --eval-days 3 --epochs 30 --rl-epochs 5

Writes benchmarks/results/rl.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy import stats

from recengine.data.movielens import bundled_movielens
from recengine.models.ials import ImplicitALS
from recengine.models.neural.sasrec import SASRec
from recengine.online.reinforce import TopKReinforce, Trajectories
from recengine.online.simulator import RecommenderPolicy, Scorer, UserSimulator, impressions_dataset

ROOT = Path(__file__).resolve().parents[1]
SESSIONS, LENGTH, K, LEAVE = 300, 30, 10, 0.2


def interval(values: np.ndarray) -> dict[str, float]:
    mean, se = float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))
    half = float(stats.t.ppf(0.975, len(values) - 1)) * se
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sessions": len(values)}


def serve(sim: UserSimulator, model: Scorer, histories, days: int, exploration: str = "greedy",
          temperature: float = 1.0):
    sim.reset()
    policy = RecommenderPolicy(model, histories, exploration=exploration, temperature=temperature, seed=1)
    return sim.run(policy, days=days, sessions=SESSIONS, session_length=LENGTH, k=K, leave_probability=LEAVE,
                   on_release=policy.release, observe=policy.observe)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log-days", type=int, default=4)
    parser.add_argument("--eval-days", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=30, help="supervised SASRec epochs")
    parser.add_argument("--rl-epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = bundled_movielens()
    histories = data.histories()
    sim = UserSimulator(seed=args.seed).fit(data)
    behaviour = ImplicitALS(factors=32, random_state=args.seed + 1).fit(data)
    timings = {}
    start = time.perf_counter()
    log = serve(sim, behaviour, histories, args.log_days, exploration="softmax", temperature=0.05)
    timings["logging_s"] = time.perf_counter() - start
    print(f"logged {len(np.unique(log.request)):,} slates, {int(log.click.sum()):,} clicks "
          f"({timings['logging_s']:.0f} s)")
    start = time.perf_counter()
    supervised = SASRec(hidden=64, blocks=2, max_len=50, dropout=0.2, epochs=args.epochs, patience=0, device="cpu",
                        random_state=args.seed).fit(impressions_dataset(data, log))
    timings["sasrec_s"] = time.perf_counter() - start
    trajectories = Trajectories.from_impressions(log, histories, max_len=50, gamma=0.9)
    start = time.perf_counter()
    reinforce = TopKReinforce(k=K, weight_cap=10.0, epochs=args.rl_epochs, random_state=args.seed).fit(
        trajectories, supervised)
    timings["reinforce_s"] = time.perf_counter() - start
    print(f"SASRec {timings['sasrec_s']:.0f} s, REINFORCE {timings['reinforce_s']:.0f} s on "
          f"{len(trajectories):,} actions (losses {', '.join(f'{x:.3f}' for x in reinforce.losses_)})")
    policies = {"behaviour (iALS softmax, T = 0.05)": (behaviour, "softmax"), "iALS top-10": (behaviour, "greedy"),
                "SASRec (supervised, next click) top-10": (supervised, "greedy"),
                "top-K off-policy REINFORCE top-10": (reinforce, "greedy")}
    results = {}
    for name, (model, exploration) in policies.items():
        start = time.perf_counter()
        run = serve(sim, model, histories, args.eval_days, exploration=exploration, temperature=0.05)
        clicks = run.clicks_per_session()
        first_row = np.unique(run.request, return_index=True)[1]
        steps = np.unique(run.session[first_row], return_counts=True)[1]  # requests per session
        results[name] = {**interval(clicks), "mean_steps": float(steps.mean()),
                         "ctr": float(run.click.mean()), "seconds": time.perf_counter() - start}
        r = results[name]
        print(f"  {name}: {r['mean']:.2f} clicks/session ({r['ci_low']:.2f}-{r['ci_high']:.2f}), "
              f"{r['mean_steps']:.1f} steps ({r['seconds']:.0f} s)")
    out = {"config": vars(args) | {"sessions_per_day": SESSIONS, "session_length": LENGTH, "k": K,
                                   "leave_probability": LEAVE},
           "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
           "logged_slates": int(len(np.unique(log.request))), "logged_clicks": int(log.click.sum()),
           "actions": len(trajectories), "losses": reinforce.losses_, "timings": timings, "results": results}
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "rl.json").write_text(json.dumps(out, indent=2))
    print("\n| policy | clicks per session (95% CI) | steps per session | CTR |\n|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['mean']:.2f} ({r['ci_low']:.2f}–{r['ci_high']:.2f}) | {r['mean_steps']:.1f} | "
              f"{r['ctr']:.3f} |")


if __name__ == "__main__":
    main()
