"""Bandit policies: learning the best arm, exact propensities, batch updates, and state that survives a restart."""

import numpy as np
import pytest

from recengine.errors import ArtifactError, ConfigError, DataError
from recengine.online.bandits import (
    UCB1,
    BetaThompson,
    EpsilonGreedy,
    GaussianThompson,
    LinearThompson,
    LinUCB,
    load_policy,
)

MEANS = np.array([0.1, 0.2, 0.6])


def play(policy, rounds: int, seed: int = 0, contextual: bool = False) -> np.ndarray:
    """Bernoulli rewards with MEANS (contextual: the best arm is 0 when x[1] > 0, else 2); returns the arms."""
    rng = np.random.default_rng(seed)
    arms = np.empty(rounds, dtype=int)
    for t in range(rounds):
        x = np.array([1.0, rng.choice([-1.0, 1.0])]) if contextual else None
        arm = policy.select(x).arm
        p = (MEANS[::-1] if x is not None and x[1] > 0 else MEANS)[arm]
        policy.update(arm, float(rng.random() < p), x)
        arms[t] = arm
    return arms


def make_all():
    return [EpsilonGreedy(3, epsilon=0.1, seed=1), UCB1(3, seed=1), BetaThompson(3, seed=1),
            GaussianThompson(3, noise_var=0.25, seed=1), LinUCB(3, 2, seed=1), LinearThompson(3, 2, seed=1)]


@pytest.mark.parametrize("policy", [BetaThompson(3, seed=3), GaussianThompson(3, noise_var=0.25, seed=3)],
                         ids=lambda p: p.name)
def test_thompson_converges_to_the_best_arm(policy):
    arms = play(policy, 1500)
    assert np.mean(arms[-500:] == 2) > 0.9


@pytest.mark.parametrize("policy", [LinUCB(3, 2, alpha=0.5, seed=2), LinearThompson(3, 2, seed=2)],
                         ids=lambda p: p.name)
def test_contextual_policies_learn_the_best_arm_per_context(policy):
    play(policy, 1500, contextual=True)
    assert policy.select(np.array([1.0, 1.0])).arm == 0
    assert policy.select(np.array([1.0, -1.0])).arm == 2


def test_propensities_are_the_policies_probabilities():
    greedy = EpsilonGreedy(3, epsilon=0.3, seed=0)
    greedy.update(np.array([0, 1, 2]), np.array([0.0, 1.0, 0.0]))
    picks = [greedy.select() for _ in range(4000)]
    chosen = np.array([s.arm for s in picks])
    assert np.allclose([s.propensity for s in picks if s.arm == 1], 0.7 + 0.1)
    assert np.allclose([s.propensity for s in picks if s.arm != 1], 0.1)
    assert np.mean(chosen == 1) == pytest.approx(0.8, abs=0.03)
    thompson = BetaThompson(2, propensity_draws=4000, seed=0)
    thompson.update(np.array([0] * 10 + [1] * 10), np.array([1.0] * 6 + [0.0] * 4 + [1.0] * 5 + [0.0] * 5))
    draws = np.random.default_rng(1).beta([7, 6], [5, 6], size=(200_000, 2))
    p0 = np.mean(draws[:, 0] > draws[:, 1])
    s = thompson.select()
    assert s.propensity == pytest.approx(p0 if s.arm == 0 else 1 - p0, abs=0.03)
    assert UCB1(4).select().propensity == pytest.approx(0.25)  # the untried arms, one chosen at random


def test_a_batch_update_equals_one_by_one():
    rng = np.random.default_rng(0)
    arms, rewards, contexts = rng.integers(0, 3, 50), rng.random(50), rng.normal(size=(50, 2))
    for make in (lambda: BetaThompson(3), lambda: GaussianThompson(3), lambda: LinUCB(3, 2),
                 lambda: LinearThompson(3, 2), lambda: UCB1(3)):
        batch, single = make(), make()
        batch.update(arms, rewards, contexts if batch.contextual else None)
        for a, r, x in zip(arms, rewards, contexts, strict=True):
            single.update(int(a), float(r), x if single.contextual else None)
        for key in (k for k in vars(batch) if k.endswith("_") and not k.startswith("_")):
            np.testing.assert_allclose(getattr(batch, key), getattr(single, key))


@pytest.mark.parametrize("policy", make_all(), ids=lambda p: p.name)
def test_save_and_load_continue_exactly_where_the_policy_stopped(tmp_path, policy):
    play(policy, 200, contextual=policy.contextual)
    policy.save(tmp_path / "policy")
    restored = load_policy(tmp_path / "policy")
    assert type(restored) is type(policy) and restored.get_params() == policy.get_params()
    x = np.array([1.0, 1.0]) if policy.contextual else None
    assert [policy.select(x) for _ in range(20)] == [restored.select(x) for _ in range(20)]
    assert not list((tmp_path / "policy").glob("*.pkl"))


def test_mistakes_raise_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="epsilon"):
        EpsilonGreedy(3, epsilon=1.5)
    with pytest.raises(ConfigError, match="n_arms"):
        UCB1(0)
    with pytest.raises(DataError, match=r"arms must be integers in \[0, 3\)"):
        UCB1(3).update(3, 1.0)
    with pytest.raises(DataError, match="rewards must lie in"):
        BetaThompson(3).update(0, 2.0)
    with pytest.raises(DataError, match="contextual"):
        LinUCB(3, 2).select()
    with pytest.raises(DataError, match="2 finite numbers"):
        LinUCB(3, 2).update(0, 1.0, np.ones(3))
    with pytest.raises(ArtifactError, match="not a saved bandit policy"):
        load_policy(tmp_path)
