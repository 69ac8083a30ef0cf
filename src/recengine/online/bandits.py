"""Bandit policies over arms (models, strategies, variants, items): each picks an arm and says with what probability.

Every policy has ``select(context=None) -> Selection(arm, propensity)`` and ``update(arm, reward, context=None)``,
where ``update`` takes one outcome or arrays of them (a batch of outcomes arriving together is one vectorized
update). The propensity is the probability the policy had of choosing that arm, which is what off-policy
evaluation of the log needs: exact for epsilon-greedy, UCB1 and LinUCB (random tie-breaking), estimated from
posterior draws for the Thompson samplers. ``save(dir)`` writes the parameters and the random generator's state
as JSON and the posterior statistics as npz (no pickles); ``load_policy(dir)`` restores a policy that continues
exactly where it stopped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recengine.artifacts import load_arrays, read_manifest
from recengine.errors import ArtifactError, ConfigError, DataError

__all__ = ["POLICIES", "BetaThompson", "EpsilonGreedy", "GaussianThompson", "LinUCB", "LinearThompson", "Policy",
           "Selection", "UCB1", "load_policy"]

_FORMAT = "recengine-bandit"
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Selection:
    """The chosen arm and the probability the policy had of choosing it."""

    arm: int
    propensity: float


def _positive(name: str, value: Any, *, integer: bool = False, zero: bool = False) -> None:
    ok = isinstance(value, int | np.integer) if integer else isinstance(value, int | float | np.integer | np.floating)
    if isinstance(value, bool) or not ok or not (value >= 0 if zero else value > 0):
        raise ConfigError(f"{name} must be a {'non-negative' if zero else 'positive'} "
                          f"{'integer' if integer else 'number'}, got {value!r}")


class Policy:
    """Base of every policy: parameters in the constructor, posterior statistics in attributes ending in ``_``."""

    name: ClassVar[str] = ""
    contextual: ClassVar[bool] = False
    #: The context length of contextual policies.
    n_features: int

    def __init__(self, n_arms: int, *, seed: int = 0) -> None:
        _positive("n_arms", n_arms, integer=True)
        self.n_arms = int(n_arms)
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    # ---------------------------------------------------------------------------------------- the verbs
    def select(self, context: np.ndarray | None = None) -> Selection:
        raise NotImplementedError

    def update(self, arm: int | np.ndarray, reward: float | np.ndarray, context: np.ndarray | None = None) -> None:
        arms, rewards = self._outcomes(arm, reward)
        self._update(arms, rewards, self._contexts(context, len(arms)))

    def _update(self, arms: np.ndarray, rewards: np.ndarray, contexts: np.ndarray | None) -> None:
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- checking
    def _outcomes(self, arm: int | np.ndarray, reward: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        arms = np.atleast_1d(np.asarray(arm))
        rewards = np.atleast_1d(np.asarray(reward, dtype=np.float64))
        if arms.shape != rewards.shape or arms.ndim != 1:
            raise DataError(f"update: give one reward per arm, got {arms.shape} arms and {rewards.shape} rewards")
        if not np.issubdtype(arms.dtype, np.integer) or (len(arms) and (arms.min() < 0 or arms.max() >= self.n_arms)):
            raise DataError(f"update: arms must be integers in [0, {self.n_arms}), got {arm!r}")
        if not np.isfinite(rewards).all():
            raise DataError("update: rewards must be finite numbers")
        return arms.astype(np.int64), rewards

    def _contexts(self, context: np.ndarray | None, n: int) -> np.ndarray | None:
        if not self.contextual:
            return None
        if context is None:
            raise DataError(f"{self.name} is contextual: give the context (user features) of every outcome")
        x = np.asarray(context, dtype=np.float64).reshape(n, -1)
        if x.shape[1] != self.n_features or not np.isfinite(x).all():
            raise DataError(f"{self.name}: a context is {self.n_features} finite numbers, got shape "
                            f"{np.shape(context)}")
        return x

    def _ties(self, values: np.ndarray) -> Selection:
        """The best arm, ties broken uniformly at random (so the propensity is 1 / number of tied arms)."""
        best = np.flatnonzero(values == values.max())
        return Selection(int(best[self._rng.integers(len(best))]), 1.0 / len(best))

    # -------------------------------------------------------------------------------------- persistence
    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_")}

    def save(self, path: str | Path) -> None:
        """Write manifest.json (name, parameters, random state) and arrays.npz (posterior statistics)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in vars(self).items() if k.endswith("_") and not k.startswith("_")}
        np.savez(path / "arrays.npz", **arrays)
        manifest = {"format": _FORMAT, "format_version": _FORMAT_VERSION, "policy": self.name,
                    "params": self.get_params(), "rng": self._rng.bit_generator.state}
        (path / "manifest.json").write_text(json.dumps(manifest, indent=2))


def load_policy(path: str | Path) -> Policy:
    """A policy saved by ``Policy.save``, with its posterior and random state."""
    path = Path(path)
    manifest = read_manifest(path, "manifest.json", _FORMAT, _FORMAT_VERSION, "a saved bandit policy")
    cls = POLICIES.get(manifest.get("policy"))
    if cls is None:
        raise ArtifactError(f"{path}: unknown policy {manifest.get('policy')!r}; known: {', '.join(POLICIES)}")
    policy = cls(**manifest["params"])
    arrays = load_arrays(path)
    expected = {k for k in vars(policy) if k.endswith("_") and not k.startswith("_")}
    if set(arrays) != expected:
        raise ArtifactError(f"{path}: arrays {sorted(arrays)} do not match a {cls.__name__} ({sorted(expected)})")
    for key, value in arrays.items():
        if value.shape != getattr(policy, key).shape:
            raise ArtifactError(f"{path}: {key} has shape {value.shape}, expected {getattr(policy, key).shape}")
        setattr(policy, key, value)
    policy._rng.bit_generator.state = manifest["rng"]
    return policy


# ------------------------------------------------------------------------------------- context-free arms
class _CountingPolicy(Policy):
    """Keeps the number of pulls and the reward sum of every arm."""

    def __init__(self, n_arms: int, *, seed: int = 0) -> None:
        super().__init__(n_arms, seed=seed)
        self.pulls_ = np.zeros(self.n_arms)
        self.reward_sum_ = np.zeros(self.n_arms)

    def _update(self, arms: np.ndarray, rewards: np.ndarray, contexts: np.ndarray | None) -> None:
        self.pulls_ += np.bincount(arms, minlength=self.n_arms)
        self.reward_sum_ += np.bincount(arms, weights=rewards, minlength=self.n_arms)

    def _untried(self) -> Selection | None:
        """Every arm is tried once before any estimate is trusted."""
        untried = np.flatnonzero(self.pulls_ == 0)
        if len(untried) == 0:
            return None
        return Selection(int(untried[self._rng.integers(len(untried))]), 1.0 / len(untried))


class EpsilonGreedy(_CountingPolicy):
    """The arm with the best mean reward, except a uniformly random arm with probability epsilon."""

    name = "epsilon-greedy"

    def __init__(self, n_arms: int, *, epsilon: float = 0.1, seed: int = 0) -> None:
        super().__init__(n_arms, seed=seed)
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 <= epsilon <= 1:
            raise ConfigError(f"epsilon must be in [0, 1], got {epsilon!r}")
        self.epsilon = epsilon

    def select(self, context: np.ndarray | None = None) -> Selection:
        means = np.where(self.pulls_ > 0, self.reward_sum_ / np.maximum(self.pulls_, 1), np.inf)
        best = np.flatnonzero(means == means.max())
        explore = self._rng.random() < self.epsilon
        arm = int(self._rng.integers(self.n_arms)) if explore else int(best[self._rng.integers(len(best))])
        greedy_share = (1 - self.epsilon) / len(best) if arm in best else 0.0
        return Selection(arm, self.epsilon / self.n_arms + greedy_share)


class UCB1(_CountingPolicy):
    """The arm with the highest upper confidence bound mean + sqrt(2 ln t / pulls) (Auer et al. 2002)."""

    name = "ucb1"

    def select(self, context: np.ndarray | None = None) -> Selection:
        first = self._untried()
        if first is not None:
            return first
        bound = self.reward_sum_ / self.pulls_ + np.sqrt(2 * np.log(self.pulls_.sum()) / self.pulls_)
        return self._ties(bound)


class _Thompson(Policy):
    """Picks the arm whose posterior draw is highest; the propensity is that arm's share of propensity_draws draws
    (the chosen one among them, so it is never 0)."""

    def __init__(self, n_arms: int, *, propensity_draws: int = 200, seed: int = 0) -> None:
        super().__init__(n_arms, seed=seed)
        _positive("propensity_draws", propensity_draws, integer=True)
        self.propensity_draws = int(propensity_draws)

    def _draws(self, n: int, context: np.ndarray | None) -> np.ndarray:
        """(n, n_arms) posterior draws of every arm's expected reward."""
        raise NotImplementedError

    def select(self, context: np.ndarray | None = None) -> Selection:
        x = None if context is None or not self.contextual else self._contexts(context, 1)[0]
        if self.contextual and x is None:
            raise DataError(f"{self.name} is contextual: give the context (user features)")
        draws = self._draws(self.propensity_draws, x)
        winners = draws.argmax(axis=1)
        arm = int(winners[0])
        return Selection(arm, float(np.mean(winners == arm)))


class BetaThompson(_Thompson):
    """Thompson sampling for rewards in [0, 1] (clicks): a Beta(alpha, beta) prior per arm."""

    name = "beta-thompson"

    def __init__(self, n_arms: int, *, alpha: float = 1.0, beta: float = 1.0, propensity_draws: int = 200,
                 seed: int = 0) -> None:
        super().__init__(n_arms, propensity_draws=propensity_draws, seed=seed)
        _positive("alpha", alpha)
        _positive("beta", beta)
        self.alpha, self.beta = alpha, beta
        self.successes_ = np.zeros(self.n_arms)
        self.failures_ = np.zeros(self.n_arms)

    def _update(self, arms: np.ndarray, rewards: np.ndarray, contexts: np.ndarray | None) -> None:
        if rewards.min() < 0 or rewards.max() > 1:
            raise DataError("beta-thompson: rewards must lie in [0, 1] (a click is 1); use gaussian-thompson "
                            "for other rewards")
        self.successes_ += np.bincount(arms, weights=rewards, minlength=self.n_arms)
        self.failures_ += np.bincount(arms, weights=1 - rewards, minlength=self.n_arms)

    def _draws(self, n: int, context: np.ndarray | None) -> np.ndarray:
        return self._rng.beta(self.alpha + self.successes_, self.beta + self.failures_, size=(n, self.n_arms))


class GaussianThompson(_Thompson):
    """Thompson sampling for real rewards: a Normal(prior_mean, prior_var) prior on each arm's mean and Normal
    noise of known variance noise_var."""

    name = "gaussian-thompson"

    def __init__(self, n_arms: int, *, prior_mean: float = 0.0, prior_var: float = 1.0, noise_var: float = 1.0,
                 propensity_draws: int = 200, seed: int = 0) -> None:
        super().__init__(n_arms, propensity_draws=propensity_draws, seed=seed)
        if isinstance(prior_mean, bool) or not isinstance(prior_mean, int | float) or not np.isfinite(prior_mean):
            raise ConfigError(f"prior_mean must be a finite number, got {prior_mean!r}")
        _positive("prior_var", prior_var)
        _positive("noise_var", noise_var)
        self.prior_mean, self.prior_var, self.noise_var = prior_mean, prior_var, noise_var
        self.pulls_ = np.zeros(self.n_arms)
        self.reward_sum_ = np.zeros(self.n_arms)

    def _update(self, arms: np.ndarray, rewards: np.ndarray, contexts: np.ndarray | None) -> None:
        self.pulls_ += np.bincount(arms, minlength=self.n_arms)
        self.reward_sum_ += np.bincount(arms, weights=rewards, minlength=self.n_arms)

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Each arm's posterior mean and variance of its expected reward."""
        precision = 1 / self.prior_var + self.pulls_ / self.noise_var
        return (self.prior_mean / self.prior_var + self.reward_sum_ / self.noise_var) / precision, 1 / precision

    def _draws(self, n: int, context: np.ndarray | None) -> np.ndarray:
        mean, var = self.posterior()
        return mean + np.sqrt(var) * self._rng.standard_normal((n, self.n_arms))


# ------------------------------------------------------------------------------------------ contextual arms
class _Linear(Policy):
    """A ridge regression of reward on the context per arm: A = l2 I + sum x x^T, b = sum r x (disjoint model)."""

    contextual = True

    def __init__(self, n_arms: int, n_features: int, *, l2: float = 1.0, seed: int = 0) -> None:
        super().__init__(n_arms, seed=seed)
        _positive("n_features", n_features, integer=True)
        _positive("l2", l2)
        self.n_features, self.l2 = int(n_features), l2
        self.gram_ = np.tile(l2 * np.eye(self.n_features), (self.n_arms, 1, 1))
        self.moment_ = np.zeros((self.n_arms, self.n_features))

    def _update(self, arms: np.ndarray, rewards: np.ndarray, contexts: np.ndarray | None) -> None:
        assert contexts is not None  # _contexts insists on it for contextual policies
        np.add.at(self.gram_, arms, contexts[:, :, None] * contexts[:, None, :])
        np.add.at(self.moment_, arms, rewards[:, None] * contexts)

    def _fit(self) -> tuple[np.ndarray, np.ndarray]:
        """Per arm the ridge coefficients and the inverse Gram matrix."""
        inverse = np.linalg.inv(self.gram_)
        return np.einsum("aij,aj->ai", inverse, self.moment_), inverse


class LinUCB(_Linear):
    """The arm with the highest x·theta_a + alpha sqrt(x^T A_a^-1 x) (Li et al. 2010, disjoint LinUCB)."""

    name = "linucb"

    def __init__(self, n_arms: int, n_features: int, *, alpha: float = 1.0, l2: float = 1.0, seed: int = 0) -> None:
        super().__init__(n_arms, n_features, l2=l2, seed=seed)
        _positive("alpha", alpha, zero=True)
        self.alpha = alpha

    def select(self, context: np.ndarray | None = None) -> Selection:
        if context is None:
            raise DataError("linucb is contextual: give the context (user features)")
        x = self._contexts(context, 1)[0]
        theta, inverse = self._fit()
        width = np.sqrt(np.einsum("i,aij,j->a", x, inverse, x))
        return self._ties(theta @ x + self.alpha * width)


class LinearThompson(_Linear, _Thompson):
    """Thompson sampling on the per-arm ridge regression: theta_a ~ Normal(A_a^-1 b_a, scale^2 A_a^-1)
    (Agrawal & Goyal 2013)."""

    name = "linear-thompson"

    def __init__(self, n_arms: int, n_features: int, *, scale: float = 0.5, l2: float = 1.0,
                 propensity_draws: int = 200, seed: int = 0) -> None:
        _Linear.__init__(self, n_arms, n_features, l2=l2, seed=seed)
        _positive("propensity_draws", propensity_draws, integer=True)
        _positive("scale", scale)
        self.propensity_draws, self.scale = int(propensity_draws), scale

    def _draws(self, n: int, context: np.ndarray | None) -> np.ndarray:
        assert context is not None  # select checks it
        theta, inverse = self._fit()
        # x·theta_a is Normal(x·mean_a, scale^2 x^T A_a^-1 x): draw the scores directly, no d-dimensional draws.
        mean = theta @ context
        sd = self.scale * np.sqrt(np.einsum("i,aij,j->a", context, inverse, context))
        return mean + sd * self._rng.standard_normal((n, self.n_arms))


#: Policies by name, for load_policy.
POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in (EpsilonGreedy, UCB1, BetaThompson, GaussianThompson,
                                                               LinUCB, LinearThompson)}
