"""Experiment statistics against closed forms, independent implementations and small simulations; the
`recengine experiment` batch contract and its bad-input errors."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from recengine.cli import main
from recengine.errors import ConfigError, DataError
from recengine.online.experiments import (
    RatioEstimate,
    always_valid_p_values,
    analyze,
    cuped_adjust,
    msprt_p_value,
    power,
    relative_lift,
    sample_size,
    srm_p_value,
    two_proportion_ztest,
)


def heterogeneous(rng, shape, rate=0.1):
    """Units with several exposures and their own propensity: the case a binomial gets wrong."""
    propensity = rng.beta(rate * 4, (1 - rate) * 4, shape)
    exposures = 1 + rng.poisson(4, shape)
    return exposures, rng.binomial(exposures, propensity)


# ----------------------------------------------------------------------------------------------- estimators
def test_ratio_variance_with_one_exposure_per_unit_is_the_binomial_one():
    c = np.array([1, 0, 0, 1, 1, 0, 0, 0, 1, 0])
    estimate = RatioEstimate.from_units(np.ones(10), c)
    r = 0.4
    assert estimate.rate == pytest.approx(r)
    assert estimate.variance == pytest.approx(r * (1 - r) / (10 - 1))


def test_sums_and_units_give_the_same_estimate():
    e, c = heterogeneous(np.random.default_rng(0), (3, 500))
    from_units = RatioEstimate.from_units(e, c)
    e, c = e.astype(float), c.astype(float)
    from_sums = RatioEstimate.from_sums(np.full(3, 500), e.sum(1), c.sum(1), (e * e).sum(1), (c * c).sum(1),
                                        (c * e).sum(1))
    np.testing.assert_allclose(from_units.rate, from_sums.rate)
    np.testing.assert_allclose(from_units.variance, from_sums.variance, rtol=1e-9)


def test_delta_method_variance_matches_the_spread_of_simulated_rates():
    e, c = heterogeneous(np.random.default_rng(1), (4000, 400))
    estimate = RatioEstimate.from_units(e, c)
    # The variance of 4,000 independent replicate rates estimates the truth to about ±4.5%.
    assert estimate.variance.mean() == pytest.approx(estimate.rate.var(ddof=1), rel=0.1)
    # Treating every exposure as an independent trial understates it badly on such data.
    binomial = estimate.rate * (1 - estimate.rate) / estimate.exposures
    assert binomial.mean() < 0.6 * estimate.rate.var()


def test_lift_interval_covers_the_true_lift_95_percent_of_the_time():
    rng = np.random.default_rng(2)
    control = RatioEstimate.from_units(*heterogeneous(rng, (2000, 500), rate=0.10))
    treatment = RatioEstimate.from_units(*heterogeneous(rng, (2000, 500), rate=0.12))
    lift = relative_lift(control, treatment)
    covered = (lift.ci_low <= 0.2) & (0.2 <= lift.ci_high)
    assert 0.93 <= covered.mean() <= 0.97
    # The interval and the p-value come from one statistic: the interval excludes 0 exactly when p < 0.05.
    np.testing.assert_array_equal((lift.ci_low > 0) | (lift.ci_high < 0), lift.p_value < 0.05)


def test_two_proportion_ztest_matches_the_chi_square_test_of_the_2x2_table():
    z, p = two_proportion_ztest(120, 2000, 150, 2100)
    table = [[120, 2000 - 120], [150, 2100 - 150]]
    chi2, p_chi2, _, _ = stats.chi2_contingency(table, correction=False)
    assert z**2 == pytest.approx(chi2) and p == pytest.approx(p_chi2)


def test_msprt_matches_the_mixture_likelihood_ratio_integrated_numerically():
    estimate, variance, tau = 0.03, 0.012**2, 0.05

    def integrand(theta):
        ratio = stats.norm.pdf(estimate, theta, np.sqrt(variance)) / stats.norm.pdf(estimate, 0, np.sqrt(variance))
        return ratio * stats.norm.pdf(theta, 0, tau)

    likelihood_ratio = integrate.quad(integrand, -1, 1, points=[0, estimate])[0]
    assert msprt_p_value(estimate, variance, tau) == pytest.approx(1 / likelihood_ratio, rel=1e-6)
    assert msprt_p_value(0.0, variance, tau) == 1.0


def test_always_valid_p_values_never_rise_and_hold_their_level_under_peeking():
    rng = np.random.default_rng(3)
    # 2,000 A/A experiments watched at 50 looks: a standard-normal random walk of the estimate.
    looks = np.arange(1, 51)
    estimates = np.cumsum(rng.normal(size=(2000, 50)), axis=1) / looks
    variances = 1 / looks * np.ones((2000, 1))
    p = always_valid_p_values(estimates, variances, mixture_sd=0.5)
    assert (np.diff(p, axis=1) <= 0).all()
    assert (p[:, -1] < 0.05).mean() <= 0.05
    fixed = 2 * stats.norm.sf(np.abs(estimates / np.sqrt(variances)))
    assert (fixed < 0.05).any(axis=1).mean() > 0.15  # what peeking does to the fixed-horizon test


def test_srm_of_two_groups_is_the_squared_z_test_of_the_share():
    n1, n = 50_500, 100_000
    z = (n1 - n / 2) / np.sqrt(n / 4)
    assert srm_p_value(np.array([n1, n - n1])) == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert srm_p_value(np.array([600, 400]), np.array([0.6, 0.4])) == pytest.approx(1.0)


def test_cuped_theta_is_the_regression_slope_and_cuts_variance_by_rho_squared():
    rng = np.random.default_rng(4)
    pre = rng.normal(size=20_000)
    y = 0.5 * pre + np.sqrt(1 - 0.25) * rng.normal(size=20_000) + 3  # correlation 0.5 with pre
    adjusted, theta = cuped_adjust(np.ones_like(y), y, pre)
    assert theta == pytest.approx(np.polyfit(pre, y, 1)[0])
    np.testing.assert_allclose(adjusted, y - theta * (pre - pre.mean()))
    assert 1 - adjusted.var() / y.var() == pytest.approx(0.25, abs=0.02)


def test_sample_size_is_the_closed_form_and_the_smallest_with_the_power():
    n = sample_size(0.05, 0.03)
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert n == int(np.ceil(z**2 * (0.05 * 0.95 + 0.0515 * 0.9485) / 0.0015**2)) == 336_099
    # One unit fewer falls short of 80% but for the far tail (a significant drop), which the formula ignores.
    assert power(0.05, 0.03, n) >= 0.8 and power(0.05, 0.03, n - 1) == pytest.approx(0.8, abs=1e-5)
    assert sample_size(0.05, 0.03, alpha=0.01, power=0.9) > n


def test_sample_size_gives_its_power_in_simulation():
    rng = np.random.default_rng(5)
    n = sample_size(0.10, 0.20)
    conversions = [rng.binomial(n, p, 4000) for p in (0.10, 0.12)]
    ones = np.full(4000, n)
    control, treatment = (RatioEstimate.from_sums(ones, ones, c, ones, c, c) for c in conversions)
    detected = relative_lift(control, treatment).p_value < 0.05
    assert detected.mean() == pytest.approx(0.8, abs=0.025)  # 4,000 runs: ±0.013 at one standard error


@pytest.mark.parametrize(("args", "message"), [((0.0, 0.03), "baseline"), ((0.05, 0.0), "lift"),
                                               ((0.9, 0.2), "lift"), ((0.05, 0.03, 1.5), "alpha")])
def test_bad_designs_are_config_errors(args, message):
    with pytest.raises(ConfigError, match=message):
        sample_size(*args)


# ---------------------------------------------------------------------------------------------- analysis
def units_frame(rng, variants=("control", "treatment"), n=400, rate=0.1):
    frames = []
    for variant in variants:
        e, c = heterogeneous(rng, n, rate)
        frames.append(pd.DataFrame({"variant": variant, "exposures": e, "conversions": c,
                                    "value": c * 2.5 + rng.normal(size=n), "pre_value": c + rng.poisson(1, n)}))
    frame = pd.concat(frames, ignore_index=True)
    return frame.assign(unit=[f"u{i}" for i in range(len(frame))])


def test_analyze_agrees_with_the_estimators_and_scipy():
    frame = units_frame(np.random.default_rng(6))
    result = analyze(frame)
    row = result["variants"]["treatment"]
    groups = [frame[frame["variant"] == v] for v in ("control", "treatment")]
    lift = relative_lift(*(RatioEstimate.from_units(g["exposures"], g["conversions"]) for g in groups))
    assert row["lift"] == pytest.approx(float(lift.lift)) and row["p_value"] == pytest.approx(float(lift.p_value))
    assert row["lift"] == pytest.approx(groups[1]["conversions"].sum() / groups[1]["exposures"].sum()
                                        / (groups[0]["conversions"].sum() / groups[0]["exposures"].sum()) - 1)
    # Welch's interval by hand: Satterthwaite's degrees of freedom.
    a, b = groups[1]["value"], groups[0]["value"]
    va, vb = a.var() / len(a), b.var() / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    assert row["value_difference_ci_low"] == pytest.approx(a.mean() - b.mean() - half)
    assert row["value_p_value"] == pytest.approx(2 * stats.t.sf(abs(a.mean() - b.mean()) / np.sqrt(va + vb), df))
    assert 0 < row["cuped_variance_reduction"] < 1
    assert result["srm_flag"] is False and result["control"]["variant"] == "control"


def test_analyze_checks_shares():
    frame = units_frame(np.random.default_rng(7))
    with pytest.raises(ConfigError, match="every variant"):
        analyze(frame, shares={"control": 0.5, "b": 0.5})
    with pytest.raises(ConfigError, match="sum to 1"):
        analyze(frame, shares={"control": 0.5, "treatment": 0.6})
    with pytest.raises(DataError, match="row 0"):
        analyze(frame.assign(exposures=-1))


# ---------------------------------------------------------------------------------------- the batch CLI
def write_units(tmp_path, frame, name="units.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def analyze_cli(tmp_path, path, *extra):
    out = tmp_path / "result.json"
    code = main(["experiment", "analyze", "--units", str(path), "--out", str(out), *map(str, extra)])
    return code, (json.loads(out.read_text()) if code == 0 else None)


def test_cli_writes_the_stable_keys(tmp_path):
    frame = units_frame(np.random.default_rng(8), variants=("a", "b", "c"))
    columns = ["unit", "variant", "exposures", "conversions"]
    code, result = analyze_cli(tmp_path, write_units(tmp_path, frame[columns]))
    assert code == 0
    assert 0 <= result["srm_p_value"] <= 1
    # Without a variant named control, the first in file order is the control and is not among the variants.
    assert result["control"]["variant"] == "a" and set(result["variants"]) == {"b", "c"}
    for row in result["variants"].values():
        assert {"lift", "ci_low", "ci_high", "p_value", "p_value_sequential"} <= set(row)
        assert row["ci_low"] < row["lift"] < row["ci_high"]
        assert 0 <= row["p_value"] <= row["p_value_sequential"] <= 1
        assert "cuped_lift" not in row and "value_p_value" not in row


def test_cli_uses_the_variant_named_control_and_the_optional_columns(tmp_path):
    frame = units_frame(np.random.default_rng(9), variants=("treatment", "control"))
    code, result = analyze_cli(tmp_path, write_units(tmp_path, frame))
    assert code == 0 and result["control"]["variant"] == "control" and list(result["variants"]) == ["treatment"]
    assert {"cuped_lift", "cuped_ci_low", "cuped_ci_high", "cuped_p_value", "value_p_value"} <= set(
        result["variants"]["treatment"])


def test_cli_flags_a_broken_split(tmp_path):
    rng = np.random.default_rng(10)
    frame = pd.concat([units_frame(rng, ("control",), n=600), units_frame(rng, ("treatment",), n=400)],
                      ignore_index=True)
    path = write_units(tmp_path, frame.assign(unit=[f"u{i}" for i in range(len(frame))]))
    code, result = analyze_cli(tmp_path, path)
    assert code == 0 and result["srm_flag"] is True and result["srm_p_value"] < 1e-3
    code, result = analyze_cli(tmp_path, path, "--shares", "control=0.6,treatment=0.4")
    assert code == 0 and result["srm_flag"] is False


GOOD = "unit,variant,exposures,conversions\nu1,control,3,1\nu2,control,2,0\nu3,b,4,2\nu4,b,1,1\n"


@pytest.mark.parametrize(("text", "message"), [
    ("unit,variant,exposures\nu1,control,3\n", "lacks column(s) conversions"),
    (GOOD + "u5,b,2,-1\n", "line 6 (unit 'u5'): conversions -1 is negative"),
    (GOOD + "u5,b,2,3\n", "line 6 (unit 'u5'): conversions 3 exceed exposures 2"),
    (GOOD + "u5,b,two,1\n", "line 6 (unit 'u5'): exposures 'two' is not a number"),
    (GOOD + "u5,b,2.5,1\n", "line 6 (unit 'u5'): exposures 2.5 is not a whole number"),
    (GOOD + "u2,b,2,1\n", "line 6 (unit 'u2'): unit repeated (first on"),
    (GOOD + "u5,,2,1\n", "line 6 (unit 'u5'): variant is empty"),
    ("unit,variant,exposures,conversions\nu1,control,3,1\nu2,control,2,0\n", "one variant"),
    ("unit,variant,exposures,conversions,pre_value\nu1,control,3,1,1\nu2,control,2,0,\nu3,b,1,1,0\n",
     "line 3 (unit 'u2'): pre_value '' is not a number"),
    ("unit,variant,exposures,conversions\nu1,control,3,1\nu2,control,2,0\nu3,b,1,0\nu4,b,2,0\n",
     "variant 'b' has no conversions"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, text, message):
    path = tmp_path / "units.csv"
    path.write_text(text)
    code, _ = analyze_cli(tmp_path, path)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_cli_missing_file_is_exit_2(tmp_path, capsys):
    code, _ = analyze_cli(tmp_path, tmp_path / "nope.csv")
    assert code == 2 and "cannot read units file" in capsys.readouterr().err


def test_cli_power_prints_the_sample_size(capsys):
    assert main(["experiment", "power", "--baseline", "0.05", "--lift", "0.03"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "336099" and "per variant" in captured.err
    assert main(["experiment", "power", "--baseline", "0.05", "--lift", "0.03", "--alpha", "2"]) == 2
