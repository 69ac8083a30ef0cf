"""Bandits and off-policy evaluation (online issue): regret in a simulator, OPE coverage, and the Open Bandit sample.

(a) Bandits. A Bernoulli simulator with 10 arms (click rates drawn uniformly from [0.02, 0.12] per seed): the
    cumulative pseudo-regret (sum of best rate minus chosen rate) of Thompson sampling, epsilon-greedy (0.1) and
    UCB1 over 100k rounds, averaged over seeds; then a contextual case where the best of 5 arms depends on two user
    features: LinUCB and linear Thompson sampling against the best single arm (known to the simulator).
(b) OPE coverage. Logged slates of 3 items out of 10, drawn uniformly without replacement (propensity 1/10 at
    every position), for users with 4 Gaussian features; clicks follow a position-based model,
    P(click) = kappa[position] * sigmoid(b_item + x . theta_item). The evaluated policy is a Plackett-Luce softmax
    (temperature 0.5) over noisy scores; its true value per impression is computed on 200k fresh users. Each
    estimator's 95% interval is checked against it over 200 seeded logs of 10k impressions, and the error is
    measured over log sizes up to 300k impressions.
(c) Open Bandit sample (random and bts logs, 10k impressions each): the uniform policy on the random log, whose
    value is the log's own CTR; the BTS policy (as its per-position item frequencies in the bts log) estimated from
    the random log and compared with the bts log's on-policy CTR; and a deterministic policy that always shows the
    bts log's most-clicked item per position, which has no ground truth here.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python benchmarks/online.py                 # everything, a few minutes on 2 cores
    .venv/bin/python benchmarks/online.py --quick         # fewer seeds and repetitions

Writes benchmarks/results/online.json, docs/bandit_regret.png and docs/ope_error.png; prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pandas as pd

from recengine.online.bandits import UCB1, BetaThompson, EpsilonGreedy, LinearThompson, LinUCB, Policy
from recengine.online.ope import ESTIMATORS, BanditLog, TargetPolicy, evaluate, read_open_bandit, softmax_target

matplotlib.use("Agg")  # headless: the plots are only written to files
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

ROOT = Path(__file__).resolve().parents[1]
OPEN_BANDIT = ROOT.parent / "shared" / "datasets" / "open-bandit"
N_ITEMS, POSITIONS, N_FEATURES = 10, (1, 2, 3), 4
KAPPA = np.array([1.0, 0.7, 0.5])
TEMPERATURE = 0.5


# ------------------------------------------------------------------------------------------------ bandits
def run_bandit(policy: Policy, means: np.ndarray, rounds: int, seed: int) -> np.ndarray:
    """Cumulative pseudo-regret after every round (rewards are drawn, regret counts expected rates)."""
    rng = np.random.default_rng(seed)
    coins = rng.random(rounds)  # one uniform per round, so every policy faces the same luck for the same arm rate
    regret = np.empty(rounds)
    for t in range(rounds):
        arm = policy.select().arm
        policy.update(arm, float(coins[t] < means[arm]))
        regret[t] = means.max() - means[arm]
    return np.cumsum(regret)


def bandit_study(rounds: int, seeds: int) -> dict[str, Any]:
    curves: dict[str, list[np.ndarray]] = {"thompson": [], "epsilon-greedy": [], "ucb1": []}
    for seed in range(seeds):
        means = np.random.default_rng(100 + seed).uniform(0.02, 0.12, 10)
        # One posterior draw per select is Thompson's choice itself; the regret needs no propensity estimate.
        policies = {"thompson": BetaThompson(10, propensity_draws=1, seed=seed),
                    "epsilon-greedy": EpsilonGreedy(10, epsilon=0.1, seed=seed), "ucb1": UCB1(10, seed=seed)}
        for name, policy in policies.items():
            start = time.perf_counter()
            curves[name].append(run_bandit(policy, means, rounds, seed))
            print(f"  seed {seed} {name}: regret {curves[name][-1][-1]:.0f} ({time.perf_counter() - start:.0f}s)")
    stacked = {name: np.vstack(c) for name, c in curves.items()}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    t = np.arange(1, rounds + 1)
    for name, c in stacked.items():
        ax.plot(t, c.mean(axis=0), label=f"{name} ({c[:, -1].mean():.0f})")
        ax.fill_between(t, c.min(axis=0), c.max(axis=0), alpha=0.2)
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative regret (expected clicks lost)")
    ax.set_title(f"10 Bernoulli arms, rates U[0.02, 0.12]: mean of {seeds} seeds (band: min-max)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "bandit_regret.png", dpi=120)
    plt.close(fig)
    return {name: {"final_mean": float(c[:, -1].mean()), "final_min": float(c[:, -1].min()),
                   "final_max": float(c[:, -1].max()), "at_10k_mean": float(c[:, 9_999].mean())}
            for name, c in stacked.items()}


def contextual_study(rounds: int, seeds: int) -> dict[str, Any]:
    """5 arms, rate_a(x) = clip(0.1 + 0.05 * theta_a . (1, u1, u2)), u ~ N(0, 1): the best arm varies with u."""
    out: dict[str, list[float]] = {"linucb": [], "linear-thompson": [], "thompson (no context)": [],
                                   "best single arm": [], "oracle": []}
    for seed in range(seeds):
        rng = np.random.default_rng(200 + seed)
        theta = np.column_stack([rng.normal(0, 0.3, 5), rng.normal(0, 1, (5, 2))])
        x = np.column_stack([np.ones(rounds), rng.normal(size=(rounds, 2))])
        rates = np.clip(0.1 + 0.05 * x @ theta.T, 0.0, 1.0)
        coins = rng.random(rounds)
        out["best single arm"].append(float(rates.mean(axis=0).max()))
        out["oracle"].append(float(rates.max(axis=1).mean()))
        policies: dict[str, Policy] = {"linucb": LinUCB(5, 3, alpha=0.5, seed=seed),
                                       "linear-thompson": LinearThompson(5, 3, scale=0.3, propensity_draws=1,
                                                                         seed=seed),
                                       "thompson (no context)": BetaThompson(5, propensity_draws=1, seed=seed)}
        for name, policy in policies.items():
            expected = 0.0
            for t in range(rounds):
                context = x[t] if policy.contextual else None
                arm = policy.select(context).arm
                policy.update(arm, float(coins[t] < rates[t, arm]), context)
                expected += rates[t, arm]
            out[name].append(expected / rounds)
    return {name: {"mean_rate": float(np.mean(v)), "per_seed": v} for name, v in out.items()}


# ------------------------------------------------------------------------------------------------- OPE
class Simulator:
    """Users with N_FEATURES Gaussian features; items with a click model and the evaluated policy's scores."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.bias = rng.normal(-1.5, 0.5, N_ITEMS)
        self.theta = rng.normal(0, 0.5, (N_ITEMS, N_FEATURES))
        self.score_noise = rng.normal(0, 0.5, N_ITEMS)  # the evaluated model knows the click model imperfectly

    def users(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return rng.normal(size=(n, N_FEATURES))

    def click_rates(self, x: np.ndarray) -> np.ndarray:
        """(n, positions, items) click probabilities."""
        logits = self.bias + x @ self.theta.T
        return KAPPA[None, :, None] * (1 / (1 + np.exp(-logits)))[:, None, :]

    def target(self, x: np.ndarray, rounds: np.ndarray, seed: int, n_samples: int = 16) -> TargetPolicy:
        scores = self.bias + x @ self.theta.T + self.score_noise
        return softmax_target(scores, rounds, POSITIONS, [str(i) for i in range(N_ITEMS)], temperature=TEMPERATURE,
                              n_samples=n_samples, seed=seed)

    def true_value(self, n: int = 200_000, seed: int = 12345) -> float:
        x = self.users(n, np.random.default_rng(seed))
        target = self.target(x, np.arange(n), seed, n_samples=64)
        probs = target.prob.reshape(len(POSITIONS), n, N_ITEMS).transpose(1, 0, 2)
        return float((probs * self.click_rates(x)).sum(axis=(1, 2)).mean() / len(POSITIONS))

    def log(self, n_rounds: int, seed: int) -> tuple[BanditLog, TargetPolicy]:
        rng = np.random.default_rng(seed)
        x = self.users(n_rounds, rng)
        slates = np.argsort(rng.random((n_rounds, N_ITEMS)), axis=1)[:, :len(POSITIONS)]
        rates = np.take_along_axis(self.click_rates(x), slates[:, :, None], axis=2)[:, :, 0]
        reward = (rng.random(rates.shape) < rates).astype(np.float64)
        rounds = np.arange(n_rounds)
        log = BanditLog(np.repeat(rounds, len(POSITIONS)), np.tile(np.array(POSITIONS), n_rounds),
                        slates.ravel().astype(str).astype(object), reward.ravel(),
                        np.full(reward.size, 1 / N_ITEMS), np.repeat(x, len(POSITIONS), axis=0),
                        tuple(f"x_{j}" for j in range(N_FEATURES)))
        return log, self.target(x, rounds, seed)


def ope_study(setting: Any, slots: int, reps: int, sizes: list[int], size_reps: int, title: str,
              plot: Path) -> dict[str, Any]:
    """Interval coverage over `reps` logs of 10,000 impressions, and the median relative error against log size.
    `setting` has true_value() and log(rounds, seed) -> (BanditLog, TargetPolicy); `slots` items per slate."""
    truth = setting.true_value()
    print(f"  true value per impression: {truth:.5f}")
    covered = {name: 0 for name in ESTIMATORS}
    widths: dict[str, list[float]] = {name: [] for name in ESTIMATORS}
    start = time.perf_counter()
    for rep in range(reps):
        log, target = setting.log(10_000 // slots, seed=rep)
        for name, e in evaluate(log, target, seed=rep).items():
            value = truth * slots if name == "iips" else truth  # iips is the slate's total
            covered[name] += e.ci_low <= value <= e.ci_high
            widths[name].append(e.ci_high - e.ci_low)
    print(f"  coverage: {reps} repetitions in {time.perf_counter() - start:.0f}s")
    errors: dict[str, dict[int, list[float]]] = {name: {n: [] for n in sizes} for name in ESTIMATORS}
    for n in sizes:
        start = time.perf_counter()
        for rep in range(size_reps):
            log, target = setting.log(n // slots, seed=10_000 + rep)
            for name, e in evaluate(log, target, seed=rep).items():
                value = truth * slots if name == "iips" else truth
                errors[name][n].append(abs(e.estimate - value) / value)
        print(f"  {n:,} impressions: {size_reps} repetitions in {time.perf_counter() - start:.0f}s")
    medians = {name: {n: float(np.median(v)) for n, v in per.items()} for name, per in errors.items()}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name in ESTIMATORS:
        if name != "iips":  # iips's relative error is ips's whenever every slate is full
            ax.plot(sizes, [medians[name][n] for n in sizes], marker="o", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.axhline(0.05, color="grey", ls=":", lw=1)
    ax.set_xlabel("logged impressions")
    ax.set_ylabel("median relative error")
    ax.set_title(f"{title}, {size_reps} logs per size")
    ax.legend()
    fig.tight_layout()
    fig.savefig(plot, dpi=120)
    plt.close(fig)
    return {"truth": truth, "reps": reps, "impressions": 10_000,
            "coverage": {name: covered[name] / reps for name in ESTIMATORS},
            "mean_ci_width": {name: float(np.mean(w)) for name, w in widths.items()},
            "median_relative_error": {name: {str(n): v for n, v in m.items()} for name, m in medians.items()},
            "size_reps": size_reps}


# ------------------------------------------------------------------------------------------- Open Bandit
def per_position_target(log: BanditLog, probs: pd.DataFrame) -> TargetPolicy:
    """A context-free policy (probs: position x item) at every slot of the log."""
    items = probs.columns.to_numpy(dtype=object)
    table = probs.loc[log.position].to_numpy()
    return TargetPolicy(np.repeat(log.round, len(items)), np.repeat(log.position, len(items)),
                        np.tile(items, len(log)), table.ravel())


def open_bandit_study() -> dict[str, Any]:
    random_log, bts_log = read_open_bandit(OPEN_BANDIT / "random"), read_open_bandit(OPEN_BANDIT / "bts")
    items = sorted(set(random_log.item) | set(bts_log.item), key=int)
    positions = sorted(set(random_log.position))
    bts = pd.crosstab(bts_log.position, bts_log.item).reindex(index=positions, columns=items, fill_value=0)
    clicks = pd.crosstab(bts_log.position, bts_log.item, values=bts_log.reward, aggfunc="sum").reindex(
        index=positions, columns=items).fillna(0)
    best = pd.DataFrame(0.0, index=positions, columns=items)
    for position in positions:  # three positions
        best.loc[position, clicks.loc[position].idxmax()] = 1.0
    policies = {"uniform": pd.DataFrame(1 / len(items), index=positions, columns=items),
                "bts (item frequencies per position)": bts.div(bts.sum(axis=1), axis=0),
                "most-clicked item per position (from bts)": best}
    bts_ctr = float(bts_log.reward.mean())
    bts_se = float(bts_log.reward.std(ddof=1) / np.sqrt(len(bts_log)))
    results = {}
    for name, probs in policies.items():
        start = time.perf_counter()
        estimates = evaluate(random_log, per_position_target(random_log, probs))
        results[name] = {k: v.to_dict() for k, v in estimates.items() if k != "iips"}
        print(f"  {name}: {time.perf_counter() - start:.0f}s")
    return {"random_ctr": float(random_log.reward.mean()), "bts_ctr": bts_ctr,
            "bts_ctr_ci": [bts_ctr - 1.96 * bts_se, bts_ctr + 1.96 * bts_se], "estimates": results,
            "context_columns": len(random_log.context_names)}


# ------------------------------------------------------------------------------------------------ report
def print_tables(result: dict[str, Any]) -> None:
    bandits = result["bandits"]
    print(f"\n### Bernoulli bandit, 10 arms, {result['config']['rounds']:,} rounds, {result['config']['seeds']} seeds")
    print("| policy | regret at 10k (mean) | regret at the end (mean) | min–max over seeds |\n|---|---:|---:|---:|")
    for name, r in bandits.items():
        spread = f"{r['final_min']:.0f}–{r['final_max']:.0f}"
        print(f"| {name} | {r['at_10k_mean']:.0f} | {r['final_mean']:.0f} | {spread} |")
    ctx = result["contextual"]
    print(f"\n### Contextual, 5 arms, {result['config']['contextual_rounds']:,} rounds: mean expected reward per round")
    print("| policy | mean rate | per seed |\n|---|---:|---|")
    for name, r in ctx.items():
        print(f"| {name} | {r['mean_rate']:.4f} | {', '.join(f'{v:.4f}' for v in r['per_seed'])} |")
    ope = result["ope"]
    print(f"\n### OPE coverage: {ope['reps']} logs of {ope['impressions']:,} impressions, truth {ope['truth']:.5f}")
    sizes = list(next(iter(ope["median_relative_error"].values())))
    print("| estimator | coverage of the 95% interval | mean interval width | "
          + " | ".join(f"median rel. error @ {int(n):,}" for n in sizes) + " |")
    print("|---|---:|---:|" + "---:|" * len(sizes))
    for name in ESTIMATORS:
        errs = " | ".join(f"{ope['median_relative_error'][name][n]:.2%}" for n in sizes)
        print(f"| {name} | {ope['coverage'][name]:.1%} | {ope['mean_ci_width'][name]:.4f} | {errs} |")
    obd = result["open_bandit"]
    print(f"\n### Open Bandit sample: random-log CTR {obd['random_ctr']:.4f}, bts-log CTR {obd['bts_ctr']:.4f} "
          f"(95% {obd['bts_ctr_ci'][0]:.4f}–{obd['bts_ctr_ci'][1]:.4f})")
    print("| policy (estimated from the random log) | " + " | ".join(ESTIMATORS[:-1]) + " |\n|---|"
          + "---|" * (len(ESTIMATORS) - 1))
    for name, est in obd["estimates"].items():
        print(f"| {name} | " + " | ".join(f"{e['estimate']:.4f} ({e['ci_low']:.4f}–{e['ci_high']:.4f})"
                                         for e in est.values()) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer seeds, rounds and repetitions")
    args = parser.parse_args()
    config = {"rounds": 20_000 if args.quick else 100_000, "seeds": 2 if args.quick else 3,
              "contextual_rounds": 5_000 if args.quick else 20_000, "ope_reps": 50 if args.quick else 200,
              "sizes": [1_000, 3_000, 10_000, 30_000, 100_000] + ([] if args.quick else [300_000]),
              "size_reps": 10 if args.quick else 30}
    result: dict[str, Any] = {"config": config, "machine": f"{platform.processor() or platform.machine()}, "
                                                             f"python {platform.python_version()}"}
    print("bandits")
    result["bandits"] = bandit_study(config["rounds"], config["seeds"])
    print("contextual bandits")
    result["contextual"] = contextual_study(config["contextual_rounds"], config["seeds"])
    print("off-policy evaluation")
    result["ope"] = ope_study(Simulator(), len(POSITIONS), config["ope_reps"], config["sizes"], config["size_reps"],
                              "OPE error, uniform logging of 3-item slates", ROOT / "docs" / "ope_error.png")
    print("open bandit")
    result["open_bandit"] = open_bandit_study()
    (ROOT / "benchmarks" / "results").mkdir(exist_ok=True)
    (ROOT / "benchmarks" / "results" / "online.json").write_text(json.dumps(result, indent=2))
    print_tables(result)


if __name__ == "__main__":
    main()
