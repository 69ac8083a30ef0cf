"""Top-K off-policy REINFORCE against its supervised counterpart, in the simulator (online issue, RL target).

The simulator is calibrated on MovieLens latest-small (position-based clicks, satiation 0.3, 10% of items arriving
over 56 days). A behaviour policy — a Plackett-Luce softmax (temperature 0.05) over a 32-factor iALS fitted on
the data — logs `--log-days` days of sessions (300 a day, up to 30 requests of 10 items; after a slate without a
click the user leaves with probability 0.2), with its softmax probability of every shown item as propensity.
Supervised SASRec is trained on next-click over the data plus the logged clicks for `--epochs` epochs.
REINFORCE fine-tunes a copy of it on every logged slate — clicked and ignored items, each with its return (its
click, plus `--gamma`-discounted later clicks of the session) minus its position's mean — with the top-K
correction (K = 10) and capped weights (10).

Choices are made on validation days, never on the evaluation days: the same simulated users with another random
seed (other sessions, other clicks). There each policy's Plackett-Luce temperature is picked from TEMPERATURES,
and REINFORCE's learning rate and epochs from LEARNING_RATES x EPOCHS (served sampled at SASRec's temperature).
Each policy then serves `--eval-days` fresh simulated days (the same seed, the same start), both its top 10 and
sampled from its softmax, and the clicks per session are compared, with 95% t-intervals over sessions.

    .venv/bin/python benchmarks/rl.py          # --log-days 3 --eval-days 2 --validation-days 1 --epochs 12 --gamma 0

Writes benchmarks/results/rl.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import copy
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
BEHAVIOUR_TEMPERATURE = 0.05
TEMPERATURES = (0.2, 0.4, 0.8)  # SASRec's logits span about -4 to 5: 1.0 would be nearly uniform over 9,724 films
LEARNING_RATES = (3e-4, 1e-3)
EPOCHS = (1,)
VALIDATION_SEED_OFFSET = 1000


def interval(values: np.ndarray) -> dict[str, float]:
    mean, se = float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values)))
    half = float(stats.t.ppf(0.975, len(values) - 1)) * se
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sessions": len(values)}


def serve(sim: UserSimulator, model: Scorer, histories, days: int, temperature: float | None = None):
    """Run `days` from day 0: the model's top K (temperature None) or a Plackett-Luce sample of its softmax."""
    sim.reset()
    policy = RecommenderPolicy(model, histories, exploration="greedy" if temperature is None else "softmax",
                               temperature=temperature or 1.0, seed=1)
    return sim.run(policy, days=days, sessions=SESSIONS, session_length=LENGTH, k=K, leave_probability=LEAVE,
                   on_release=policy.release, observe=policy.observe)


def summary(run) -> dict[str, float]:
    first_row = np.unique(run.request, return_index=True)[1]
    steps = np.unique(run.session[first_row], return_counts=True)[1]  # requests per session
    return {**interval(run.clicks_per_session()), "mean_steps": float(steps.mean()), "ctr": float(run.click.mean())}


def best_temperature(validation: UserSimulator, model: Scorer, histories, days: int) -> tuple[float, dict]:
    scores = {t: float(serve(validation, model, histories, days, t).clicks_per_session().mean())
              for t in TEMPERATURES}
    return max(scores, key=scores.get), scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--log-days", type=int, default=3)
    parser.add_argument("--eval-days", type=int, default=2)
    parser.add_argument("--validation-days", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=12, help="supervised SASRec's epochs")
    parser.add_argument("--gamma", type=float, default=0.0, help="discount of later clicks in the return")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = bundled_movielens()
    histories = data.histories()
    sim = UserSimulator(seed=args.seed).fit(data)
    # The same ground truth with other random draws: the validation days.
    validation = copy.deepcopy(sim)
    validation.seed = args.seed + VALIDATION_SEED_OFFSET
    behaviour = ImplicitALS(factors=32, random_state=args.seed + 1).fit(data)
    timings = {}
    start = time.perf_counter()
    log = serve(sim, behaviour, histories, args.log_days, BEHAVIOUR_TEMPERATURE)
    timings["logging_s"] = time.perf_counter() - start
    print(f"logged {len(np.unique(log.request)):,} slates, {int(log.click.sum()):,} clicks "
          f"({timings['logging_s']:.0f} s)")
    start = time.perf_counter()
    supervised = SASRec(hidden=64, blocks=2, max_len=50, dropout=0.2, epochs=args.epochs, patience=0,
                        device="cpu", random_state=args.seed, verbose=False).fit(impressions_dataset(data, log))
    timings["sasrec_s"] = time.perf_counter() - start
    print(f"SASRec {timings['sasrec_s']:.0f} s, training loss {supervised.training_loss_[-1]:.3f}")
    trajectories = Trajectories.from_impressions(log, histories, max_len=50, gamma=args.gamma)
    start = time.perf_counter()
    sasrec_t, sasrec_validation = best_temperature(validation, supervised, histories, args.validation_days)
    print(f"SASRec temperature {sasrec_t} (validation clicks/session {sasrec_validation})")
    candidates = {}
    for lr in LEARNING_RATES:
        for epochs in EPOCHS:
            tuned = TopKReinforce(k=K, weight_cap=10.0, lr=lr, epochs=epochs, random_state=args.seed).fit(
                trajectories, supervised)
            value = float(serve(validation, tuned, histories, args.validation_days, sasrec_t).clicks_per_session()
                          .mean())
            candidates[(lr, epochs)] = (value, tuned)
            print(f"  REINFORCE lr {lr:g}, {epochs} epochs: validation {value:.2f} clicks/session "
                  f"(losses {', '.join(f'{x:.4f}' for x in tuned.losses_)})")
    (lr, epochs), (_, reinforce) = max(candidates.items(), key=lambda item: item[1][0])
    reinforce_t, reinforce_validation = best_temperature(validation, reinforce, histories, args.validation_days)
    timings["selection_s"] = time.perf_counter() - start
    print(f"chose lr {lr:g}, {epochs} epochs, temperature {reinforce_t} ({reinforce_validation}); selection "
          f"{timings['selection_s']:.0f} s")
    policies = {"behaviour: iALS softmax (T = 0.05)": (behaviour, BEHAVIOUR_TEMPERATURE),
                "iALS top-10": (behaviour, None),
                "SASRec (supervised, next click) top-10": (supervised, None),
                f"SASRec (supervised) sampled, T = {sasrec_t}": (supervised, sasrec_t),
                "top-K off-policy REINFORCE top-10": (reinforce, None),
                f"top-K off-policy REINFORCE sampled, T = {reinforce_t}": (reinforce, reinforce_t)}
    results = {}
    for name, (model, temperature) in policies.items():
        start = time.perf_counter()
        results[name] = summary(serve(sim, model, histories, args.eval_days, temperature))
        results[name]["seconds"] = time.perf_counter() - start
        r = results[name]
        print(f"  {name}: {r['mean']:.2f} clicks/session ({r['ci_low']:.2f}-{r['ci_high']:.2f}), "
              f"{r['mean_steps']:.1f} steps ({r['seconds']:.0f} s)")
    out = {"config": vars(args) | {"sessions_per_day": SESSIONS, "session_length": LENGTH, "k": K,
                                   "leave_probability": LEAVE, "temperatures": TEMPERATURES,
                                   "learning_rates": LEARNING_RATES, "rl_epochs": EPOCHS},
           "machine": f"{platform.processor() or platform.machine()}, python {platform.python_version()}",
           "logged_slates": len(trajectories), "logged_clicks": int(log.click.sum()),
           "sasrec_training_loss": supervised.training_loss_,
           "selection": {"sasrec_temperature": sasrec_t, "sasrec_validation": sasrec_validation,
                         "reinforce": [{"lr": c[0], "epochs": c[1], "validation": v[0], "losses": v[1].losses_}
                                       for c, v in candidates.items()],
                         "chosen": {"lr": lr, "epochs": epochs, "temperature": reinforce_t},
                         "reinforce_validation": reinforce_validation},
           "baseline": reinforce.baseline_.tolist(), "timings": timings, "results": results}
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "rl.json").write_text(json.dumps(out, indent=2))
    print("\n| policy | clicks per session (95% CI) | requests per session | CTR |\n|---|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['mean']:.2f} ({r['ci_low']:.2f}–{r['ci_high']:.2f}) | {r['mean_steps']:.1f} | "
              f"{r['ctr']:.3f} |")


if __name__ == "__main__":
    main()
