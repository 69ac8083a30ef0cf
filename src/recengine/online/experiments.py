"""A/B experiment analysis from unit-level data: conversion rates, relative lift, CUPED, sample-ratio mismatch, an
always-valid sequential p-value and a sample-size calculator.

A unit (a user, usually) is what was randomised; its row holds the variant it was assigned, its exposures and
conversions, and optionally a value (revenue, say) and `pre_value`, its activity before the experiment. The primary
metric is conversions per exposure, a ratio of two per-unit sums: exposures of one unit are not independent, so its
variance comes from the delta method over units, never from a binomial over exposures.

The estimators below take NumPy arrays and broadcast over leading axes, so one call analyses thousands of simulated
experiments (benchmarks/experiments.py); `analyze` applies them to one experiment's table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from recengine.errors import ConfigError, DataError
from recengine.evaluation.stats import mean_ci

__all__ = ["CONFIDENCE", "DEFAULT_MIXTURE_SD", "SRM_THRESHOLD", "Lift", "RatioEstimate", "always_valid_p_values",
           "analyze", "cuped_adjust", "msprt_p_value", "power", "read_units", "relative_lift", "sample_size",
           "srm_p_value", "two_proportion_ztest"]

CONFIDENCE = 0.95
#: A split whose chi-square p-value falls below this is flagged: at the sizes experiments run at, a real mismatch
#: gives far smaller p-values, and a threshold this strict keeps false alarms to one experiment in a thousand.
SRM_THRESHOLD = 1e-3
#: Standard deviation of the mSPRT's normal mixture over the log rate ratio: it puts the test's power where lifts
#: of a few per cent live. Larger values favour large effects, smaller ones small effects.
DEFAULT_MIXTURE_SD = 0.05

REQUIRED_COLUMNS = ("unit", "variant", "exposures", "conversions")
OPTIONAL_COLUMNS = ("value", "pre_value")


# ------------------------------------------------------------------------------------------------ estimators
@dataclass(frozen=True)
class RatioEstimate:
    """Conversions per exposure of one variant (`rate`) and the delta-method variance of that rate over units.

    Every field is an array of the same shape (a scalar array for one experiment)."""

    units: np.ndarray
    exposures: np.ndarray
    conversions: np.ndarray
    rate: np.ndarray
    variance: np.ndarray

    @classmethod
    def from_units(cls, exposures: np.ndarray, conversions: np.ndarray, axis: int = -1) -> RatioEstimate:
        """The estimate from per-unit exposures and conversions laid along `axis`."""
        e = np.asarray(exposures, dtype=np.float64)
        c = np.asarray(conversions, dtype=np.float64)
        n = np.full(np.delete(e.shape, axis % e.ndim), e.shape[axis], dtype=np.float64)
        sum_e, sum_c = e.sum(axis=axis), c.sum(axis=axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = sum_c / sum_e
        # Residuals taken per unit rather than from sums of squares, which cancel badly in large samples.
        residual = ((c - np.expand_dims(rate, axis) * e) ** 2).sum(axis=axis)
        return cls._build(n, sum_e, sum_c, residual)

    @classmethod
    def from_sums(cls, units: np.ndarray, exposures: np.ndarray, conversions: np.ndarray,
                  sum_ee: np.ndarray, sum_cc: np.ndarray, sum_ce: np.ndarray) -> RatioEstimate:
        """The estimate from per-variant sums: n, Σe, Σc, Σe², Σc², Σce (what a streaming log or a simulation
        keeps without holding units)."""
        n, e, c = (np.asarray(a, dtype=np.float64) for a in (units, exposures, conversions))
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = c / e
        residual = np.maximum(np.asarray(sum_cc) - 2 * rate * np.asarray(sum_ce) + rate**2 * np.asarray(sum_ee), 0)
        return cls._build(n, e, c, residual)

    @classmethod
    def _build(cls, n: np.ndarray, sum_e: np.ndarray, sum_c: np.ndarray, residual: np.ndarray) -> RatioEstimate:
        # Delta method for R = mean(c) / mean(e): Var R ≈ Var(c - R e) / (n mean(e)²) = Σ(c_i - R e_i)² n /
        # ((n - 1) (Σe)²), the sample variance of the linearised metric.
        with np.errstate(divide="ignore", invalid="ignore"):
            variance = residual * n / ((n - 1) * sum_e**2)
            rate = sum_c / sum_e
        return cls(n, sum_e, sum_c, rate, variance)

    def interval(self, confidence: float = CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
        half = stats.norm.ppf((1 + confidence) / 2) * np.sqrt(self.variance)
        return self.rate - half, self.rate + half


@dataclass(frozen=True)
class Lift:
    """Relative lift of a treatment's rate over the control's, rate_t / rate_c - 1, with its interval.

    The interval and the test both come from the log of the rate ratio and its delta-method standard error
    (sqrt(Var r_t / r_t² + Var r_c / r_c²)): the interval stays above -100 %, it excludes 0 exactly when
    p_value < 1 - confidence, and swapping the two variants only flips the sign of z."""

    lift: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    log_ratio: np.ndarray
    se: np.ndarray
    z: np.ndarray
    p_value: np.ndarray


def relative_lift(control: RatioEstimate, treatment: RatioEstimate, confidence: float = CONFIDENCE) -> Lift:
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(treatment.rate / control.rate)
        se = np.sqrt(treatment.variance / treatment.rate**2 + control.variance / control.rate**2)
        z = log_ratio / se
    half = stats.norm.ppf((1 + confidence) / 2) * se
    return Lift(np.expm1(log_ratio), np.expm1(log_ratio - half), np.expm1(log_ratio + half), log_ratio, se, z,
                2 * stats.norm.sf(np.abs(z)))


def msprt_p_value(estimate: np.ndarray, variance: np.ndarray,
                  mixture_sd: float = DEFAULT_MIXTURE_SD) -> np.ndarray:
    """The mSPRT's p-value at one look (Johari, Pekelis, Walsh 2017, "Always valid inference"): 1 / Λ, where Λ is
    the likelihood ratio of an estimate ~ N(θ, variance) under a N(0, mixture_sd²) mixture over θ against θ = 0,

        Λ = sqrt(V / (V + τ²)) · exp(τ² x² / (2 V (V + τ²))).

    The running minimum over looks (`always_valid_p_values`) is the always-valid p-value; the value at a single
    look is never below it, so reading it alone is valid too, only more conservative."""
    tau2 = float(mixture_sd) ** 2
    v = np.asarray(variance, dtype=np.float64)
    x = np.asarray(estimate, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_lr = 0.5 * np.log(v / (v + tau2)) + tau2 * x**2 / (2 * v * (v + tau2))
    return np.minimum(1.0, np.exp(-log_lr))


def always_valid_p_values(estimates: np.ndarray, variances: np.ndarray, mixture_sd: float = DEFAULT_MIXTURE_SD,
                          axis: int = -1) -> np.ndarray:
    """Always-valid p-values over successive looks laid along `axis`: the running minimum of `msprt_p_value`.
    Stopping at the first look where it falls below α keeps the false-positive rate at or below α however
    often one looks."""
    return np.minimum.accumulate(msprt_p_value(estimates, variances, mixture_sd), axis=axis)


def two_proportion_ztest(conversions_c: np.ndarray, trials_c: np.ndarray, conversions_t: np.ndarray,
                         trials_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pooled two-proportion z-test (z, two-sided p), treating every exposure as an independent trial. When
    units are exposed several times this understates the variance; the delta-method lift test does not."""
    c_c, n_c, c_t, n_t = (np.asarray(a, dtype=np.float64) for a in (conversions_c, trials_c, conversions_t, trials_t))
    pooled = (c_c + c_t) / (n_c + n_t)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (c_t / n_t - c_c / n_c) / np.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n_t))
    return z, 2 * stats.norm.sf(np.abs(z))


def srm_p_value(counts: np.ndarray, shares: np.ndarray | None = None) -> np.ndarray:
    """Sample-ratio mismatch: the chi-square goodness-of-fit p-value of units per variant (last axis) against the
    design's shares (equal by default)."""
    counts = np.asarray(counts, dtype=np.float64)
    k = counts.shape[-1]
    expected_shares = np.full(k, 1 / k) if shares is None else np.asarray(shares, dtype=np.float64)
    expected = counts.sum(axis=-1, keepdims=True) * expected_shares / expected_shares.sum()
    return np.asarray(stats.chisquare(counts, expected, axis=-1).pvalue)


def cuped_adjust(exposures: np.ndarray, conversions: np.ndarray, pre: np.ndarray,
                 axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """CUPED (Deng et al. 2013) for conversions per exposure: (adjusted conversions, θ).

    Each unit's conversions become c - θ (x - mean x), x its pre-period value. θ is estimated on all units of all
    variants together (pooled, so it does not depend on the assignment) and regresses the linearised ratio metric
    c - R e (R the pooled rate), whose variance is what the delta method measures; with one exposure per unit
    that is the classic θ = cov(c, x) / var(x). The adjusted conversions go through `RatioEstimate.from_units`
    like the raw ones."""
    e, c, x = (np.asarray(a, dtype=np.float64) for a in (exposures, conversions, pre))
    rate = c.sum(axis=axis, keepdims=True) / e.sum(axis=axis, keepdims=True)
    centred = x - x.mean(axis=axis, keepdims=True)
    linear = c - rate * e
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = (linear * centred).sum(axis=axis, keepdims=True) / (centred**2).sum(axis=axis, keepdims=True)
    theta = np.where(np.isfinite(theta), theta, 0.0)  # a constant pre_value carries no information
    return c - theta * centred, np.squeeze(theta, axis=axis)


# --------------------------------------------------------------------------------------------- sample size
def _check_design(baseline: float, lift: float, alpha: float, target: float | None) -> tuple[float, float]:
    checks = [("baseline", baseline), ("alpha", alpha)] + ([("power", target)] if target is not None else [])
    for name, value in checks:
        if not 0 < value < 1:
            raise ConfigError(f"{name} must be strictly between 0 and 1, got {value}")
    treated = baseline * (1 + lift)
    if lift == 0 or not 0 < treated < 1:
        raise ConfigError(f"lift {lift} must be non-zero and keep the treated rate baseline × (1 + lift) = "
                          f"{treated:g} strictly between 0 and 1")
    return baseline, treated


def sample_size(baseline: float, lift: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Units per variant (one exposure each) for a two-sided test at level `alpha` to detect a relative `lift`
    over a `baseline` conversion rate with probability `power`:

        n = (z_{1-α/2} + z_power)² (p1 q1 + p2 q2) / (p2 - p1)²,   p2 = p1 (1 + lift),

    the normal approximation of the unpooled two-proportion test, which the delta-method lift test becomes when
    each unit has one exposure."""
    p1, p2 = _check_design(baseline, lift, alpha, power)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    return math.ceil(z**2 * (p1 * (1 - p1) + p2 * (1 - p2)) / (p2 - p1) ** 2)


def power(baseline: float, lift: float, units: int, alpha: float = 0.05) -> float:
    """The power of that test with `units` per variant (both tails counted)."""
    p1, p2 = _check_design(baseline, lift, alpha, None)
    if units < 2:
        raise ConfigError(f"units per variant must be at least 2, got {units}")
    shift = abs(p2 - p1) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / units)
    z = stats.norm.ppf(1 - alpha / 2)
    return float(stats.norm.cdf(shift - z) + stats.norm.cdf(-shift - z))


# ----------------------------------------------------------------------------------------------- the table
def read_units(path: str | Path) -> pd.DataFrame:
    """UNITS.csv read and checked (see `check_units`); errors name the file's line."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read units file {path}: {error}") from error
    # Line 1 is the header, so data row i is on line i + 2.
    return check_units(frame, where=lambda i: f"{path} line {i + 2}")


def check_units(frame: pd.DataFrame, where: Callable[[int], str] | None = None) -> pd.DataFrame:
    """The unit table with typed columns, or a DataError naming the first bad row.

    Rules: columns unit, variant, exposures, conversions (value and pre_value optional, and complete when
    present); unit and variant non-empty; a unit on one row only; exposures and conversions whole numbers ≥ 0
    with conversions ≤ exposures (a conversion is counted on an exposure; several purchases after one
    exposure belong in `value`); value and pre_value any finite numbers (refunds can make value negative)."""
    where = where or (lambda i: f"row {i}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"the units table lacks column(s) {', '.join(missing)}; it needs "
                        f"{','.join(REQUIRED_COLUMNS)} (and optionally {','.join(OPTIONAL_COLUMNS)}), has "
                        f"{','.join(map(str, frame.columns))}")
    frame = frame.reset_index(drop=True)
    if frame.empty:
        raise DataError("the units table has no rows")
    out = pd.DataFrame({c: frame[c].astype(str).str.strip() for c in ("unit", "variant")})

    def fail(mask: np.ndarray | pd.Series, problem: Callable[[int], str]) -> None:
        bad = np.flatnonzero(np.asarray(mask))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{where(i)} (unit {out['unit'].iat[i]!r}): {problem(i)}")

    for column in ("unit", "variant"):
        fail(out[column] == "", lambda _, column=column: f"{column} is empty")
    for column in ("exposures", "conversions") + tuple(c for c in OPTIONAL_COLUMNS if c in frame.columns):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
        fail(~np.isfinite(values), lambda i, column=column: f"{column} {frame[column].iat[i]!r} is not a number")
        out[column] = values
    for column in ("exposures", "conversions"):
        fail(out[column] < 0, lambda i, column=column: f"{column} {out[column].iat[i]:g} is negative")
        fail(out[column] % 1 != 0, lambda i, column=column: f"{column} {out[column].iat[i]:g} is not a whole number")
    fail(out["conversions"] > out["exposures"],
         lambda i: f"conversions {out['conversions'].iat[i]:g} exceed exposures {out['exposures'].iat[i]:g}")
    first_row = out.groupby("unit", sort=False).cumcount() == 0
    first_of = pd.Series(np.arange(len(out)))[first_row.to_numpy()].set_axis(out["unit"][first_row])
    fail(~first_row, lambda i: f"unit repeated (first on {where(int(first_of[out['unit'].iat[i]]))}); a unit is "
                               f"assigned once, to one variant")
    if out["variant"].nunique() < 2:
        raise DataError(f"the units table has one variant ({out['variant'].iat[0]!r}); an experiment compares "
                        f"at least two")
    return out


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON null) where an estimate is undefined."""
    value = float(value)
    return value if math.isfinite(value) else None


def analyze(units: pd.DataFrame, shares: Mapping[str, float] | None = None,
            mixture_sd: float = DEFAULT_MIXTURE_SD, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """The analysis of one experiment as a JSON-ready document (what `recengine experiment analyze` writes).

    The control is the variant named "control", else the first in the table's order. `shares` maps every
    variant to its designed share of units (default equal) for the sample-ratio check."""
    units = check_units(units)
    if not 0 < confidence < 1 or not mixture_sd > 0:
        raise ConfigError(f"confidence must lie in (0, 1) and mixture_sd be positive; got {confidence}, {mixture_sd}")
    names = list(pd.unique(units["variant"]))
    control = "control" if "control" in names else names[0]
    names = [control] + [n for n in names if n != control]
    groups = {name: units[units["variant"] == name] for name in names}
    expected = _design_shares(shares, names)
    counts = np.array([len(groups[n]) for n in names], dtype=np.float64)
    srm = float(srm_p_value(counts, np.array([expected[n] for n in names])))

    has_value, has_pre = "value" in units.columns, "pre_value" in units.columns
    if has_pre:
        adjusted, theta = cuped_adjust(units["exposures"].to_numpy(), units["conversions"].to_numpy(),
                                       units["pre_value"].to_numpy())
        units = units.assign(cuped_conversions=adjusted)
        groups = {name: units[units["variant"] == name] for name in names}

    estimates = {}
    for name, group in groups.items():
        if len(group) < 2:
            raise DataError(f"variant {name!r} has {len(group)} unit; a variance needs at least two")
        estimate = RatioEstimate.from_units(group["exposures"].to_numpy(), group["conversions"].to_numpy())
        if estimate.exposures == 0 or estimate.conversions == 0:
            what = "exposures" if estimate.exposures == 0 else "conversions"
            raise DataError(f"variant {name!r} has no {what}; a relative lift needs conversions in every variant")
        estimates[name] = estimate

    def describe(name: str) -> dict[str, Any]:
        estimate, group = estimates[name], groups[name]
        low, high = estimate.interval(confidence)
        row: dict[str, Any] = {"units": len(group), "share": len(group) / len(units),
                               "expected_share": expected[name], "exposures": _num(estimate.exposures),
                               "conversions": _num(estimate.conversions), "rate": _num(estimate.rate),
                               "rate_ci_low": _num(low), "rate_ci_high": _num(high)}
        if has_value:
            ci = mean_ci(group["value"].to_numpy(), confidence)
            row |= {"value_per_unit": _num(ci.mean), "value_ci_low": _num(ci.low), "value_ci_high": _num(ci.high)}
        return row

    variants: dict[str, Any] = {}
    for name in names[1:]:
        lift = relative_lift(estimates[control], estimates[name], confidence)
        c, t = estimates[control], estimates[name]
        row = describe(name) | {
            "lift": _num(lift.lift), "ci_low": _num(lift.ci_low), "ci_high": _num(lift.ci_high),
            "p_value": _num(lift.p_value),
            "p_value_sequential": _num(msprt_p_value(lift.log_ratio, lift.se**2, mixture_sd)),
            "p_value_ztest": _num(two_proportion_ztest(c.conversions, c.exposures, t.conversions, t.exposures)[1])}
        if has_value:
            welch = stats.ttest_ind(groups[name]["value"], groups[control]["value"], equal_var=False)
            diff = welch.confidence_interval(confidence)
            mean_difference = groups[name]["value"].mean() - groups[control]["value"].mean()
            row |= {"value_difference": _num(mean_difference), "value_difference_ci_low": _num(diff.low),
                    "value_difference_ci_high": _num(diff.high), "value_p_value": _num(welch.pvalue)}
        if has_pre:
            adjusted = [RatioEstimate.from_units(groups[n]["exposures"].to_numpy(),
                                                 groups[n]["cuped_conversions"].to_numpy()) for n in (control, name)]
            cuped = relative_lift(adjusted[0], adjusted[1], confidence)
            row |= {"cuped_lift": _num(cuped.lift), "cuped_ci_low": _num(cuped.ci_low),
                    "cuped_ci_high": _num(cuped.ci_high), "cuped_p_value": _num(cuped.p_value),
                    "cuped_variance_reduction": _num(1 - cuped.se**2 / lift.se**2)}
        variants[name] = row

    result: dict[str, Any] = {"control": {"variant": control} | describe(control), "units": len(units),
                              "confidence": confidence, "srm_p_value": srm, "srm_flag": srm < SRM_THRESHOLD,
                              "srm_threshold": SRM_THRESHOLD, "mixture_sd": mixture_sd, "variants": variants}
    if has_pre:
        result["cuped_theta"] = _num(theta)
    return result


def _design_shares(shares: Mapping[str, float] | None, names: list[str]) -> dict[str, float]:
    if shares is None:
        return {name: 1 / len(names) for name in names}
    if set(shares) != set(names) or any(not v > 0 for v in shares.values()):
        raise ConfigError(f"shares must give every variant ({', '.join(names)}) a positive share; got "
                          f"{dict(shares)}")
    total = sum(shares.values())
    if abs(total - 1) > 1e-6:
        raise ConfigError(f"shares must sum to 1; they sum to {total:g}")
    return {name: shares[name] / total for name in names}
