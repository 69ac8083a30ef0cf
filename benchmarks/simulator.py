"""The user simulator (online issue): its speed, and the OPE-coverage and bandit studies with it as ground truth.

(a) Speed. A simulator calibrated on MovieLens latest-small and one on amazon-beauty each serve one million slates
    of 10 items (10 million shown items) to a cheap policy (distinct items drawn uniformly from the 1,000 most
    appealing), 500 sessions a day of 20 requests; the policy's own time is measured apart.
(b) OPE coverage. Rounds are independent requests of MovieLens-calibrated users (drawn by activity; satiation
    off, no new items), each with 10 candidate films: the top 10 unseen films of a 16-factor iALS fitted on the data.
    The logging policy shows that model's top 3, or with probability 0.5 a uniformly random slate of 3 of the 10
    candidates (exact propensities: 0.55 for the model's item at its position, 0.05 for any other). Clicks follow the
    simulator's position model, examination 1 / log2(position + 1). The evaluated policy is a Plackett-Luce
    softmax (temperature 0.5) over the candidates' true logits plus Gaussian noise (sd 1); its true value per
    impression is computed by the simulator on 200k fresh rounds. Context columns: the 4 leading iALS user
    factors. Each estimator's 95% interval is checked over 200 seeded logs of 10k impressions; median relative
    errors over 30 logs at 1k, 10k and 100k impressions.
(c) Bandits. 10 arms are 10 films drawn from the 100 most popular; a pull shows the film at the top to a user
    drawn by activity, who clicks with the simulator's appeal. Arm rates are the activity-weighted mean appeal.
    Cumulative pseudo-regret of Thompson sampling, epsilon-greedy (0.1) and UCB1 over 100k rounds, 3 seeds.

    .venv/bin/python benchmarks/simulator.py              # --part speed,ope,bandits

Writes benchmarks/results/simulator.json and docs/simulator_ope_error.png, docs/simulator_regret.png.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from online import ope_study  # benchmarks/online.py: the same study, other ground truth

from recengine.data.movielens import bundled_movielens
from recengine.data.sequences import load_s3rec
from recengine.models.ials import ImplicitALS
from recengine.online.bandits import UCB1, BetaThompson, EpsilonGreedy, Policy
from recengine.online.ope import BanditLog, TargetPolicy, softmax_target
from recengine.online.simulator import UserSimulator

matplotlib.use("Agg")  # headless: the plots are only written to files
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("RECENGINE_DATASETS", ROOT.parent / "shared" / "datasets"))
CANDIDATES, SLOTS, LOG_EPSILON, TEMPERATURE, NOISE = 10, 3, 0.5, 0.5, 1.0


# ------------------------------------------------------------------------------------------------- speed
def speed(name: str, dataset, slates: int) -> dict[str, Any]:
    start = time.perf_counter()
    sim = UserSimulator(seed=0).fit(dataset)
    fit_s = time.perf_counter() - start
    mean_appeal = sim.true_scores(np.arange(0, sim.n_users_, max(1, sim.n_users_ // 500))).mean(axis=0)
    released = np.flatnonzero(sim.released_)
    pool = released[np.argsort(-mean_appeal[released])[:1000]].astype(np.int32)
    rng = np.random.default_rng(0)
    policy_s = 0.0

    def recommend(users: np.ndarray, k: int) -> np.ndarray:
        nonlocal policy_s
        t = time.perf_counter()
        items = pool[np.argpartition(rng.random((len(users), len(pool))), k, axis=1)[:, :k]]
        policy_s += time.perf_counter() - t
        return items

    sessions, steps = 500, 20
    start, cpu = time.perf_counter(), time.process_time()
    log = sim.run(recommend, days=slates // (sessions * steps), sessions=sessions, session_length=steps, k=10)
    total, cpu = time.perf_counter() - start, time.process_time() - cpu
    n_slates = len(np.unique(log.request))
    out = {"dataset": name, "fit_s": fit_s, "slates": n_slates, "shown_items": len(log), "run_s": total, "cpu_s": cpu,
           "policy_s": policy_s, "simulator_s": total - policy_s, "ctr": float(log.click.mean()),
           "intercept": sim.intercept_, "slope": sim.slope_}
    print(f"  {name}: {n_slates:,} slates ({len(log):,} items) in {total:.1f} s ({cpu:.1f} s of CPU), policy "
          f"{policy_s:.1f} s; fit {fit_s:.1f} s; CTR {out['ctr']:.4f}")
    return out


# --------------------------------------------------------------------------------------------------- OPE
class OffPolicySetting:
    """Independent rounds of MovieLens-calibrated users with 10 candidates each (see the module docstring)."""

    def __init__(self) -> None:
        data = bundled_movielens()
        self.sim = UserSimulator(satiation=0.0, new_items=0.0, seed=0).fit(data)
        candidate_model = ImplicitALS(factors=16, random_state=1).fit(data)
        self.candidates, _ = candidate_model.recommend(data.histories(), CANDIDATES)  # best first, unseen
        self.context = candidate_model.user_factors_[:, :4].astype(np.float64)
        self.activity = self.sim.activity_
        self.logits = np.log(self.sim.appeal(np.arange(data.n_users)[:, None], self.candidates, satiated=False))

    def rounds(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(len(self.activity), size=n, p=self.activity)

    def target(self, users: np.ndarray, rounds: np.ndarray, rng: np.random.Generator, n_samples: int) -> np.ndarray:
        """(SLOTS, n, CANDIDATES) per-position probabilities of the evaluated policy."""
        scores = self.logits[users] + NOISE * rng.standard_normal((len(users), CANDIDATES))
        target = softmax_target(scores, rounds, range(1, SLOTS + 1), [str(j) for j in range(CANDIDATES)],
                                temperature=TEMPERATURE, n_samples=n_samples, seed=int(rng.integers(2**31)))
        return target.prob.reshape(SLOTS, len(users), CANDIDATES)

    def true_value(self, n: int = 200_000, seed: int = 12345) -> float:
        rng = np.random.default_rng(seed)
        users = self.rounds(n, rng)
        probs = self.target(users, np.arange(n), rng, n_samples=64)
        exam = self.sim.examination_probabilities(SLOTS)
        appeal = self.sim.appeal(users[:, None], self.candidates[users], satiated=False)  # (n, C)
        return float(np.einsum("pnc,p,nc->", probs, exam, appeal) / (n * SLOTS))

    def log(self, n_rounds: int, seed: int) -> tuple[BanditLog, TargetPolicy]:
        rng = np.random.default_rng(seed)
        users = self.rounds(n_rounds, rng)
        # Logging: the candidate model's top 3, or w.p. LOG_EPSILON a uniformly random slate of the candidates,
        # which gives every candidate every position (the support the estimators need).
        shuffled = np.argsort(rng.random((n_rounds, CANDIDATES)), axis=1)[:, :SLOTS]
        explore = rng.random(n_rounds) < LOG_EPSILON
        slots = np.where(explore[:, None], shuffled, np.arange(SLOTS))  # candidate columns
        propensity = LOG_EPSILON / CANDIDATES + (1 - LOG_EPSILON) * (slots == np.arange(SLOTS))
        items = np.take_along_axis(self.candidates[users], slots, axis=1)
        clicks = rng.random(items.shape) < self.sim.click_probabilities(users, items)
        rounds = np.arange(n_rounds)
        log = BanditLog(np.repeat(rounds, SLOTS), np.tile(np.arange(1, SLOTS + 1), n_rounds),
                        items.ravel().astype(str).astype(object), clicks.ravel().astype(np.float64),
                        propensity.ravel(), np.repeat(self.context[users], SLOTS, axis=0),
                        tuple(f"x_{j}" for j in range(4)))
        probs = self.target(users, rounds, rng, n_samples=16)
        item_ids = np.broadcast_to(self.candidates[users][None], probs.shape).astype(str).astype(object)
        target = TargetPolicy(np.broadcast_to(rounds[None, :, None], probs.shape).ravel(),
                              np.broadcast_to(np.arange(1, SLOTS + 1)[:, None, None], probs.shape).ravel(),
                              item_ids.ravel(), probs.ravel())
        return log, target


# ----------------------------------------------------------------------------------------------- bandits
def bandit_study(rounds: int, seeds: int) -> dict[str, Any]:
    data = bundled_movielens()
    sim = UserSimulator(satiation=0.0, new_items=0.0, seed=0).fit(data)
    popular = np.argsort(-data.item_popularity())[:100]
    curves: dict[str, list[np.ndarray]] = {"thompson": [], "epsilon-greedy": [], "ucb1": []}
    rates_per_seed = []
    for seed in range(seeds):
        rng = np.random.default_rng(300 + seed)
        arms = rng.choice(popular, 10, replace=False)
        everyone = sim.appeal(np.arange(data.n_users)[:, None], arms[None, :], satiated=False)
        rates = sim.activity_ @ everyone
        rates_per_seed.append(rates.tolist())
        users = rng.choice(data.n_users, size=rounds, p=sim.activity_)
        coins = rng.random(rounds)
        rewards = coins[:, None] < everyone[users]  # (rounds, arms): the same luck for every policy
        policies: dict[str, Policy] = {"thompson": BetaThompson(10, propensity_draws=1, seed=seed),
                                       "epsilon-greedy": EpsilonGreedy(10, epsilon=0.1, seed=seed),
                                       "ucb1": UCB1(10, seed=seed)}
        for name, policy in policies.items():
            start = time.perf_counter()
            regret = np.empty(rounds)
            for t in range(rounds):
                arm = policy.select().arm
                policy.update(arm, float(rewards[t, arm]))
                regret[t] = rates.max() - rates[arm]
            curves[name].append(np.cumsum(regret))
            print(f"  seed {seed} {name}: regret {curves[name][-1][-1]:.0f} ({time.perf_counter() - start:.0f} s)")
    stacked = {name: np.vstack(c) for name, c in curves.items()}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    t = np.arange(1, rounds + 1)
    for name, c in stacked.items():
        ax.plot(t, c.mean(axis=0), label=f"{name} ({c[:, -1].mean():.0f})")
        ax.fill_between(t, c.min(axis=0), c.max(axis=0), alpha=0.2)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative regret (expected clicks lost)")
    ax.set_title(f"10 films as arms, MovieLens-calibrated users: mean of {seeds} seeds (band: min-max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "simulator_regret.png", dpi=120)
    plt.close(fig)
    return {"rates": rates_per_seed,
            **{name: {"final_mean": float(c[:, -1].mean()), "final_min": float(c[:, -1].min()),
                      "final_max": float(c[:, -1].max()), "at_10k_mean": float(c[:, 9_999].mean())}
               for name, c in stacked.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", default="speed,ope,bandits")
    parser.add_argument("--slates", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    result: dict[str, Any] = {}
    machine = f"{platform.processor() or platform.machine()}, python {platform.python_version()}, " \
              f"load average {os.getloadavg()[0]:.1f} at the start"
    parts = args.part.split(",")
    if "speed" in parts:
        print("speed")
        result["speed"] = {"runs": [speed("ml-latest-small", bundled_movielens(), args.slates),
                                    speed("amazon-beauty", load_s3rec(DATA / "amazon-beauty", name="Beauty"),
                                          args.slates)]}
    if "ope" in parts:
        print("off-policy evaluation")
        result["ope"] = ope_study(OffPolicySetting(), SLOTS, args.reps, [1_000, 10_000, 100_000], 30,
                                  "OPE in the MovieLens-calibrated simulator",
                                  ROOT / "docs" / "simulator_ope_error.png")
    if "bandits" in parts:
        print("bandits")
        result["bandits"] = bandit_study(100_000, 3)
    # Parts run separately share the file: read it as it is now and replace only the parts just measured.
    out_path = ROOT / "benchmarks" / "results" / "simulator.json"
    out_path.parent.mkdir(exist_ok=True)
    merged = json.loads(out_path.read_text()) if out_path.exists() else {}
    merged.update({part: value | {"machine": machine} for part, value in result.items()})
    out_path.write_text(json.dumps(merged, indent=2))


if __name__ == "__main__":
    main()
