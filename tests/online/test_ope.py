"""Off-policy estimators against closed forms, the logged-feedback format's checks, and the `recengine ope` contract."""

import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recengine.cli import main
from recengine.errors import ConfigError, DataError
from recengine.online.ope import (
    BanditLog,
    RidgeRewardModel,
    TargetPolicy,
    evaluate,
    read_log,
    read_open_bandit,
    read_target,
    recommender_target,
    softmax_target,
    write_log,
    write_target,
)

OPEN_BANDIT = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "open-bandit"
ITEMS = [f"i{j}" for j in range(5)]


def uniform_log(n_rounds: int = 400, positions=(1, 2), seed: int = 0, reward=None) -> pd.DataFrame:
    """Slates of distinct items drawn uniformly (propensity 1/5 at every position); rewards as given or random."""
    rng = np.random.default_rng(seed)
    slates = np.argsort(rng.random((n_rounds, len(ITEMS))), axis=1)[:, :len(positions)]
    item = slates.ravel()
    frame = pd.DataFrame({"round": np.repeat(np.arange(n_rounds), len(positions)),
                          "position": np.tile(positions, n_rounds), "item": np.array(ITEMS)[item],
                          "reward": rng.random(len(item)) < 0.3 if reward is None else reward[item],
                          "propensity": 1 / len(ITEMS), "x_age": np.repeat(rng.random(n_rounds), len(positions))})
    frame["reward"] = frame["reward"].astype(float)
    return frame


def target_for(log: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """The same item probabilities (one per ITEMS entry) at every logged slot."""
    slots = log[["round", "position"]].to_numpy()
    return pd.DataFrame({"round": np.repeat(slots[:, 0], len(ITEMS)), "position": np.repeat(slots[:, 1], len(ITEMS)),
                         "item": np.tile(ITEMS, len(slots)), "prob": np.tile(probs, len(slots))})


def run(log: pd.DataFrame, target: pd.DataFrame, **kwargs):
    return evaluate(BanditLog.from_frame(log), TargetPolicy.from_frame(target), **kwargs)


def test_on_policy_ips_and_snips_equal_the_mean_reward():
    log = uniform_log()
    result = run(log, target_for(log, np.full(5, 0.2)))
    mean = log["reward"].mean()
    assert result["ips"].estimate == pytest.approx(mean)
    assert result["snips"].estimate == pytest.approx(mean)
    assert result["iips"].estimate == pytest.approx(2 * mean)  # the slate's total over its two positions
    assert result["ips"].ess == pytest.approx(len(log))


def test_ips_and_snips_match_their_closed_forms_and_intervals_are_normal():
    log = uniform_log(positions=(1,))  # one slot a round: the round terms are the rows
    probs = np.array([0.5, 0.2, 0.1, 0.1, 0.1])
    result = run(log, target_for(log, probs))
    w = probs[log["item"].str[1:].astype(int)] / 0.2
    wr = w * log["reward"].to_numpy()
    assert result["ips"].estimate == pytest.approx(wr.mean())
    assert result["ips"].se == pytest.approx(wr.std(ddof=1) / np.sqrt(len(wr)))
    assert result["ips"].ci_high - result["ips"].ci_low == pytest.approx(2 * 1.959964 * result["ips"].se)
    assert result["snips"].estimate == pytest.approx(wr.sum() / w.sum())
    assert result["ips"].ess == pytest.approx(w.sum() ** 2 / (w ** 2).sum())


def test_dr_with_a_perfect_reward_model_is_the_exact_value_with_no_correction():
    value = np.array([0.1, 0.2, 0.3, 0.4, 0.5])  # the reward depends on the item alone, without noise
    log = uniform_log(reward=value)
    probs = np.array([0.0, 0.0, 0.2, 0.3, 0.5])
    exact = probs @ value
    result = run(log, target_for(log, probs), reward_model=RidgeRewardModel(l2=1e-9, l2_item=1e-9))
    assert result["dm"].estimate == pytest.approx(exact)
    assert result["dr"].estimate == pytest.approx(exact)
    assert result["dr"].se == pytest.approx(0, abs=1e-9)  # every round's term is the same exact value
    assert result["dm"].se == pytest.approx(0, abs=1e-6)  # no residuals: the model's estimation adds nothing
    assert result["switch-dr"].estimate == pytest.approx(exact)


def test_switch_dr_falls_back_to_the_model_where_weights_are_large():
    log = uniform_log()
    target = target_for(log, np.array([1.0, 0, 0, 0, 0]))  # w = 5 on matches
    result = run(log, target, switch_tau=4.0)
    assert result["switch-dr"].estimate == pytest.approx(result["dm"].estimate)
    assert result["switch-dr"].ess == 0
    assert run(log, target, switch_tau=5.0)["switch-dr"].estimate == pytest.approx(result["dr"].estimate)


def test_ridge_solve_is_the_penalized_normal_equations_solved_densely():
    rng = np.random.default_rng(3)
    n, n_items = 60, 4
    context, position = rng.normal(size=(n, 2)), rng.integers(1, 3, n)
    item, reward = rng.integers(0, n_items, n), rng.normal(size=n)
    model = RidgeRewardModel(l2=0.5, l2_item=2.0).fit(context, position, item, reward, n_items)
    z = model.design(context, position)
    d = z.shape[1]
    crossed = np.hstack([z] + [z * (item == a)[:, None] for a in range(n_items)])  # [pooled, item 0, item 1 ...]
    penalty = np.diag(np.concatenate([[1e-9], np.full(d - 1, 0.5), np.full(n_items * d, 2.0)]))
    normal = crossed.T @ crossed + penalty
    coef = np.linalg.solve(normal, crossed.T @ reward)
    assert np.concatenate([model.pooled_, model.per_item_.ravel()]) == pytest.approx(coef, abs=1e-8)
    rhs = rng.normal(size=(n_items + 1) * d)
    pooled, per_item = model.solve(rhs[:d], rhs[d:].reshape(n_items, d))
    assert np.concatenate([pooled, per_item.ravel()]) == pytest.approx(np.linalg.solve(normal, rhs), abs=1e-8)
    hat_diagonal = np.einsum("ni,ni->n", crossed, np.linalg.solve(normal, crossed.T).T)
    assert model.leverage(context, position, np.arange(n), item) == pytest.approx(hat_diagonal, abs=1e-10)


@pytest.mark.parametrize("folds", [1, 2])
def test_dm_interval_matches_the_monte_carlo_spread_of_a_correctly_specified_model(folds):
    # Linear-Gaussian rewards a linear reward model can represent, a context-free target: the old interval (the
    # sampling of contexts alone) would be several times too narrow here.
    rng = np.random.default_rng(99)
    base, slope = rng.uniform(0.2, 0.6, 5), rng.uniform(-0.2, 0.2, 5)
    probs = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    truth = probs @ base + 0.5 * probs @ slope - 0.05  # x ~ U(0, 1); position 2 lowers the reward by 0.1
    estimates, ses, covered = [], [], 0
    for seed in range(150):
        rng = np.random.default_rng(seed)
        n = 300
        slates = np.argsort(rng.random((n, 5)), axis=1)[:, :2]
        x = rng.random(n)
        reward = base[slates] + slope[slates] * x[:, None] - [0.0, 0.1] + 0.3 * rng.standard_normal((n, 2))
        log = BanditLog(np.repeat(np.arange(n), 2), np.tile([1, 2], n), np.array(ITEMS, dtype=object)[slates.ravel()],
                        reward.ravel(), np.full(2 * n, 0.2), np.repeat(x, 2)[:, None], ("x_0",))
        target = TargetPolicy(np.repeat(log.round, 5), np.repeat(log.position, 5),
                              np.tile(np.array(ITEMS, dtype=object), 2 * n), np.tile(probs, 2 * n))
        dm = evaluate(log, target, estimators=["dm"], folds=folds, seed=seed,
                      reward_model=RidgeRewardModel(l2=1e-6, l2_item=1e-6))["dm"]
        estimates.append(dm.estimate)
        ses.append(dm.se)
        covered += dm.ci_low <= truth <= dm.ci_high
    assert np.mean(ses) == pytest.approx(np.std(estimates), rel=0.15)
    assert 0.9 <= covered / 150 <= 0.99


def exact_plackett_luce(weights: np.ndarray, depth: int) -> np.ndarray:
    """(depth, n_items) probabilities of each item at each position, by enumerating every prefix."""
    out = np.zeros((depth, len(weights)))
    for prefix in itertools.permutations(range(len(weights)), depth):
        p, left = 1.0, weights.sum()
        for item in prefix:
            p *= weights[item] / left
            left -= weights[item]
        out[np.arange(depth), list(prefix)] += p
    return out


def test_softmax_target_gives_the_plackett_luce_marginals():
    scores = np.array([[2.0, 1.0, 0.0, -1.0], [0.0, 0.0, 0.0, 3.0]])
    target = softmax_target(scores, np.array([7, 8]), [1, 2, 3], ITEMS[:4], temperature=0.5, n_samples=4000)
    frame = target.to_frame()
    assert frame.groupby(["round", "position"])["prob"].sum().to_numpy() == pytest.approx(np.ones(6))
    for row, round_id in enumerate((7, 8)):
        exact = exact_plackett_luce(np.exp(scores[row] / 0.5), 3)
        got = frame[frame["round"] == round_id].pivot(index="position", columns="item", values="prob")
        assert got.loc[1].to_numpy() == pytest.approx(exact[0], abs=1e-12)  # the first position is exact
        assert got.to_numpy() == pytest.approx(exact, abs=0.01)


def test_a_recommender_made_stochastic_is_evaluated():
    class Fixed:
        def score(self, histories):
            return np.tile(np.arange(5.0), (len(histories), 1))

    log = uniform_log(n_rounds=50)
    rounds = np.arange(50)
    target = recommender_target(Fixed(), list(rounds), rounds, [1, 2], ITEMS, temperature=1e-3)
    result = evaluate(BanditLog.from_frame(log), target, estimators=["ips"])
    best = log[((log["position"] == 1) & (log["item"] == "i4")) | ((log["position"] == 2) & (log["item"] == "i3"))]
    assert result["ips"].estimate == pytest.approx(best["reward"].sum() * 5 / len(log))


def test_read_and_write_round_trip(tmp_path):
    log = BanditLog.from_frame(uniform_log(n_rounds=20))
    target = TargetPolicy.from_frame(target_for(log.to_frame(), np.full(5, 0.2)))
    for suffix in (".csv", ".parquet"):
        write_log(log, tmp_path / f"log{suffix}")
        write_target(target, tmp_path / f"target{suffix}")
        back = read_log(tmp_path / f"log{suffix}")
        pd.testing.assert_frame_equal(back.to_frame(), log.to_frame())
        assert read_target(tmp_path / f"target{suffix}").to_frame().equals(target.to_frame())


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.assign(propensity=[0.2, 0.0] + [0.2] * (len(f) - 2)), "line 3: propensity 0 is outside (0, 1]"),
    (lambda f: f.assign(propensity=[1.5] + [0.2] * (len(f) - 1)), "line 2: propensity 1.5 is outside (0, 1]"),
    (lambda f: f.assign(item=["i1", "i1"] + list(f["item"][2:])), "line 3: item 'i1' shown twice in round 0"),
    (lambda f: f.assign(position=[1, 1] + list(f["position"][2:])), "line 3: a second row for round 0 position 1"),
    (lambda f: f.assign(reward=["x"] + list(f["reward"][1:])), "line 2: reward 'x' is not a finite number"),
    (lambda f: f.assign(score=1.0), "line 1 (header): unknown column 'score'"),
    (lambda f: f.drop(columns="propensity"), "missing column(s) propensity"),
])
def test_bad_logs_name_the_row(tmp_path, change, message):
    path = tmp_path / "log.csv"
    change(uniform_log(n_rounds=5)).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        read_log(path)
    assert message in str(error.value)


@pytest.mark.parametrize(("change", "message"), [
    (lambda f: f.assign(prob=[0.5] + list(f["prob"][1:])), "line 2: the probabilities at round 0 position 1 sum"),
    (lambda f: f.assign(prob=[-0.1] + list(f["prob"][1:])), "line 2: prob -0.1 is not a probability"),
    (lambda f: f.assign(extra=1), "unknown column 'extra'"),
    (lambda f: pd.concat([f, f.iloc[[0]]]), "line 52: a second probability for item 'i0' at round 0 position 1"),
])
def test_bad_targets_name_the_row(tmp_path, change, message):
    path = tmp_path / "target.csv"
    change(target_for(uniform_log(n_rounds=5), np.full(5, 0.2))).to_csv(path, index=False)
    with pytest.raises(DataError) as error:
        read_target(path)
    assert message in str(error.value)


def test_log_and_target_must_describe_the_same_slots():
    log = uniform_log(n_rounds=5)
    target = target_for(log, np.full(5, 0.2))
    with pytest.raises(DataError, match="log row 9: round 4 position 2 has no target"):
        run(log, target.iloc[:-5])
    with pytest.raises(DataError, match="round 9 position 1 is not in the log"):
        run(log.iloc[:-2], target.assign(round=target["round"].replace(4, 9)))
    with pytest.raises(ConfigError, match="unknown estimator"):
        run(log, target, estimators=["nope"])


def write_inputs(tmp_path: Path, n_rounds: int = 200) -> tuple[Path, Path]:
    log = uniform_log(n_rounds=n_rounds)
    log.to_csv(tmp_path / "log.csv", index=False)
    target_for(log, np.array([0.4, 0.3, 0.1, 0.1, 0.1])).to_csv(tmp_path / "target.csv", index=False)
    return tmp_path / "log.csv", tmp_path / "target.csv"


def test_cli_writes_every_estimator_with_its_interval(tmp_path):
    log, target = write_inputs(tmp_path)
    assert main(["ope", "--log", str(log), "--target", str(target), "--out", str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert {"ips", "snips", "dm", "dr"} <= set(out)
    for result in out.values():
        assert {"estimate", "ci_low", "ci_high"} <= set(result)
        assert result["ci_low"] <= result["estimate"] <= result["ci_high"]


def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    log, target = write_inputs(tmp_path, n_rounds=5)
    frame = pd.read_csv(log)
    frame.loc[3, "propensity"] = 2.0
    frame.to_csv(log, index=False)
    assert main(["ope", "--log", str(log), "--target", str(target), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "line 5: propensity 2 is outside (0, 1]" in err.replace("\n", "")
    assert not (tmp_path / "o.json").exists()


@pytest.mark.skipif(not (OPEN_BANDIT / "random" / "all.csv").is_file(), reason="Open Bandit sample not present")
def test_open_bandit_random_log_reads_and_uniform_ips_is_its_ctr():
    log = read_open_bandit(OPEN_BANDIT / "random")
    assert len(log) == 10_000 and set(log.position) == {1, 2, 3}
    assert any(name.startswith("x_affinity_") for name in log.context_names)
    items = np.unique(log.item)
    assert len(items) == 80
    target = TargetPolicy(np.repeat(log.round, 80), np.repeat(log.position, 80), np.tile(items, len(log)),
                          np.full(80 * len(log), 1 / 80))
    result = evaluate(log, target, estimators=["ips", "snips"])
    assert result["ips"].estimate == pytest.approx(0.0038)
    assert result["snips"].estimate == pytest.approx(0.0038)
