"""Experiment statistics against simulated experiments whose truth is known (issue 7's targets).

    .venv/bin/python benchmarks/experiments.py [--runs 1000] [--seed 0]

- A/A calibration: `runs` A/A experiments of heterogeneous units (several exposures each, per-unit conversion
  propensities), read at each of 20 looks. The always-valid p-value must stay ≥ 0.05 at every look in ≥ 95% of
  runs; the fixed-horizon p-value at the last look must fall below 0.05 in 4–6% of runs.
- Power: a 3% relative lift at a 5% baseline, at the sample size `sample_size` gives, detected (p < 0.05, lift
  in the right direction) in ≥ 80% of runs. Units have one exposure each, as the calculator assumes, so the
  per-variant sums are drawn directly from binomials (exactly the statistics `RatioEstimate.from_units` keeps).
- CUPED: pre-period activity correlated at about 0.5 with the linearised metric cuts the variance of the lift
  estimate across runs by ≥ 20%.
- SRM: a 50/50 design served as 50.5/49.5 to one million units is flagged (p < 0.001); correct splits give
  p-values uniform on [0, 1] (Kolmogorov-Smirnov test).

Everything is vectorized over runs: one array axis is the run, another the unit or the look.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats

from recengine.online.experiments import (
    SRM_THRESHOLD,
    RatioEstimate,
    always_valid_p_values,
    cuped_adjust,
    relative_lift,
    sample_size,
    srm_p_value,
)

ALPHA = 0.05


def share_ci(hits: np.ndarray) -> str:
    """A share with its 95% Wilson interval."""
    n, k = hits.size, int(hits.sum())
    low, high = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    return f"{k / n:.2%} ({low:.2%}–{high:.2%})"


def heterogeneous_units(rng: np.random.Generator, shape: tuple[int, ...], rate: float, lift: float = 0.0,
                        concentration: float = 4.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Units with 1 + Poisson(4) exposures and a Beta propensity of mean `rate`, raised by `lift` during the
    experiment: exposures, conversions and the untreated propensity (the pre-period is drawn from it, as the
    treatment cannot act before the start). A binomial over exposures would understate the variance of such
    data; the delta method must not."""
    propensity = rng.beta(rate * concentration, (1 - rate) * concentration, shape)
    exposures = 1 + rng.poisson(4, shape)
    return exposures, rng.binomial(exposures, np.minimum(propensity * (1 + lift), 1)), propensity


def aa_calibration(rng: np.random.Generator, runs: int, looks: int = 20, units_per_look: int = 1000,
                   rate: float = 0.1) -> dict[str, str]:
    # Per-look sums of each arm, accumulated: what a running experiment knows at each look.
    sums = np.zeros((2, 6, runs, looks))
    for look in range(looks):
        for arm in range(2):
            e, c, _ = heterogeneous_units(rng, (runs, units_per_look), rate)
            sums[arm, :, :, look] = [np.full(runs, units_per_look), e.sum(1), c.sum(1), (e * e).sum(1),
                                     (c * c).sum(1), (c * e).sum(1)]
    sums = sums.cumsum(axis=-1)
    control, treatment = (RatioEstimate.from_sums(*sums[arm]) for arm in range(2))
    lift = relative_lift(control, treatment)
    sequential = always_valid_p_values(lift.log_ratio, lift.se**2, axis=-1)
    naive = 2 * stats.norm.sf(np.abs(
        (treatment.rate - control.rate) / np.sqrt(treatment.rate * (1 - treatment.rate) / treatment.exposures
                                                 + control.rate * (1 - control.rate) / control.exposures)))
    return {
        "A/A: always-valid p < 0.05 at any of 20 looks (target ≤ 5%)": share_ci(sequential[:, -1] < ALPHA),
        "A/A: fixed-horizon p < 0.05 at the last look (target 4–6%)": share_ci(lift.p_value[:, -1] < ALPHA),
        "A/A: fixed-horizon p < 0.05 at any of 20 looks (peeking, no target)": share_ci(
            (lift.p_value < ALPHA).any(axis=1)),
        "A/A: binomial test over exposures, last look (wrong variance, no target)": share_ci(naive[:, -1] < ALPHA),
    }


def power_check(rng: np.random.Generator, runs: int, baseline: float = 0.05, lift: float = 0.03) -> dict[str, str]:
    n = sample_size(baseline, lift)
    conversions = [rng.binomial(n, p, runs) for p in (baseline, baseline * (1 + lift))]
    # One exposure per unit and conversions in {0, 1}: Σe = Σe² = n and Σc = Σc² = Σce.
    control, treatment = (RatioEstimate.from_sums(np.full(runs, n), np.full(runs, n), c, np.full(runs, n), c, c)
                          for c in conversions)
    result = relative_lift(control, treatment)
    detected = (result.p_value < ALPHA) & (result.lift > 0)
    return {f"power: +3% over 5% at n = {n:,} per variant (target ≥ 80%)": share_ci(detected)}


def cuped_check(rng: np.random.Generator, runs: int, units: int = 2000, rate: float = 0.1,
                lift: float = 0.03) -> dict[str, str]:
    arms = []
    for arm_lift in (0.0, lift):
        e, c, propensity = heterogeneous_units(rng, (runs, units), rate, arm_lift)
        pre = rng.binomial(1 + rng.poisson(4, (runs, units)), propensity)  # the same users, before the start
        arms.append((e, c, pre))
    e, c, pre = (np.concatenate([arm[i] for arm in arms], axis=1) for i in range(3))
    adjusted, _ = cuped_adjust(e, c, pre)
    linear = c - c.sum(1, keepdims=True) / e.sum(1, keepdims=True) * e
    correlation = np.mean([np.corrcoef(linear[r], pre[r])[0, 1] for r in range(min(runs, 100))])
    raw = relative_lift(RatioEstimate.from_units(e[:, :units], c[:, :units]),
                        RatioEstimate.from_units(e[:, units:], c[:, units:]))
    cuped = relative_lift(RatioEstimate.from_units(e[:, :units], adjusted[:, :units]),
                          RatioEstimate.from_units(e[:, units:], adjusted[:, units:]))
    reduction = 1 - cuped.lift.var() / raw.lift.var()
    reported = np.mean(1 - cuped.se**2 / raw.se**2)
    return {
        "CUPED: correlation of pre-period activity with the metric": f"{correlation:.3f}",
        "CUPED: variance of the lift estimate across runs, cut by (target ≥ 20%)": f"{reduction:.1%}",
        "CUPED: variance reduction the analysis reports (mean over runs)": f"{reported:.1%}",
        "CUPED: mean lift, raw / CUPED (truth +3.00%)": f"{raw.lift.mean():+.2%} / {cuped.lift.mean():+.2%}",
    }


def srm_check(rng: np.random.Generator, runs: int, units: int = 1_000_000) -> dict[str, str]:
    broken = rng.binomial(units, 0.505, runs)
    broken_p = srm_p_value(np.stack([broken, units - broken], axis=1))
    fair = rng.binomial(units, 0.5, runs)
    fair_p = srm_p_value(np.stack([fair, units - fair], axis=1))
    ks = stats.kstest(fair_p, "uniform")
    return {
        "SRM: 50.5/49.5 of 1M units flagged at p < 0.001 (target: flagged)": share_ci(broken_p < SRM_THRESHOLD)
        + f", median p {np.median(broken_p):.1e}",
        "SRM: correct 50/50 splits, KS test of p-values against uniform (target: not rejected)":
            f"D = {ks.statistic:.3f}, p = {ks.pvalue:.2f}; flagged {share_ci(fair_p < SRM_THRESHOLD)}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000, help="simulated experiments per check")
    parser.add_argument("--power-runs", type=int, default=10_000,
                        help="runs of the power check (cheap: binomial sums), more for a tighter interval")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    rows: dict[str, str] = {}
    for name, check in (("A/A", lambda: aa_calibration(rng, args.runs)),
                        ("power", lambda: power_check(rng, args.power_runs)),
                        ("CUPED", lambda: cuped_check(rng, args.runs)), ("SRM", lambda: srm_check(rng, args.runs))):
        start = time.perf_counter()
        rows |= check()
        print(f"{name}: {time.perf_counter() - start:.1f} s", flush=True)
    print("\n| check | measured (95% interval) |\n|---|---|")
    for label, value in rows.items():
        print(f"| {label} | {value} |")


if __name__ == "__main__":
    main()
