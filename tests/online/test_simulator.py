"""The user simulator: seeded runs, the configured position bias, satiation, releases, calibration, policies."""

import numpy as np
import pytest

from recengine.data.movielens import bundled_movielens
from recengine.errors import ConfigError, DataError, NotFittedError
from recengine.models.popular import MostPopular
from recengine.online.simulator import RecommenderPolicy, UserSimulator, exposure_gini, impressions_dataset

EXAMINATION = (1.0, 0.5, 0.25)


@pytest.fixture(scope="module")
def movielens():
    return bundled_movielens()


@pytest.fixture(scope="module")
def sim(movielens):
    return UserSimulator(factors=16, iterations=5, examination=EXAMINATION, satiation=0.0, seed=1).fit(movielens)


def random_slates(sim, seed=0, pool=300):
    """A policy showing distinct items drawn uniformly from the `pool` most appealing released items (on
    average over users), so that clicks are frequent enough to measure."""
    rng = np.random.default_rng(seed)
    mean_appeal = sim.true_scores(np.arange(0, sim.n_users_, 10)).mean(axis=0)
    released = np.flatnonzero(sim.released_)
    items = released[np.argsort(-mean_appeal[released])[:pool]].astype(np.int32)

    def recommend(users, k):
        return items[np.argsort(rng.random((len(users), len(items))), axis=1)[:, :k]]
    return recommend


def test_unfitted_and_bad_parameters(movielens):
    with pytest.raises(NotFittedError):
        UserSimulator().reset()
    with pytest.raises(ConfigError, match="click_model"):
        UserSimulator(click_model="dbn").fit(movielens)
    with pytest.raises(ConfigError, match="examination"):
        UserSimulator(examination=(1.0, 0.0)).fit(movielens)


def test_seeded_runs_are_identical(sim):
    logs = []
    for _ in range(2):
        sim.reset()
        logs.append(sim.run(random_slates(sim), days=2, sessions=50, session_length=3, k=3))
    for name in ("user", "item", "click", "day", "session"):
        assert np.array_equal(getattr(logs[0], name), getattr(logs[1], name))
    sim.reset()
    other = sim.run(random_slates(sim, seed=5), days=2, sessions=50, session_length=3, k=3)
    assert not np.array_equal(other.item, logs[0].item)


def test_link_is_calibrated_on_the_data(sim, movielens):
    """The prior-corrected link's mean probability over all pairs is the data's density (logistic regression
    with an intercept matches the mean label), and observed pairs are far more appealing than random ones."""
    rng = np.random.default_rng(0)
    users = rng.integers(0, movielens.n_users, 200_000)
    items = rng.integers(0, movielens.n_items, 200_000)
    density = movielens.n_interactions / (movielens.n_users * movielens.n_items)
    mean = sim.appeal(users, items, satiated=False).mean()
    assert mean == pytest.approx(density, rel=0.15)
    observed = sim.appeal(movielens.user_index, movielens.item_index, satiated=False).mean()
    assert observed > 20 * density


def test_position_bias_is_the_configured_examination(sim):
    """Per position, clicks / sum of the shown items' appeal estimates the examination probability; the
    tolerance (4 standard errors, themselves below 0.02) is far below the gaps between 1, 0.5 and 0.25."""
    sim.reset()
    log = sim.run(random_slates(sim), days=30, sessions=500, session_length=2, k=3)
    appeal = sim.appeal(log.user, log.item, satiated=False)
    for position, expected in enumerate(EXAMINATION, start=1):
        at = log.position == position
        estimate = log.click[at].sum() / appeal[at].sum()
        p = expected * appeal[at]
        se = np.sqrt((p * (1 - p)).sum()) / appeal[at].sum()
        assert se < 0.02
        assert abs(estimate - expected) < 4 * se, (position, estimate, expected)


def test_cascade_clicks_at_most_once_and_only_below_no_click(movielens):
    sim = UserSimulator(factors=8, iterations=3, click_model="cascade", satiation=0.0, seed=2).fit(movielens)
    log = sim.run(random_slates(sim), days=5, sessions=200, session_length=2, k=5)
    per_request = np.bincount(log.request, weights=log.click)
    assert per_request.max() == 1 and per_request.sum() > 50
    # Position 2 is clicked at rate appeal_2 * (1 - appeal_1): compare with the model's own marginal.
    slates = log.item.reshape(-1, 5)
    users = log.user.reshape(-1, 5)[:, 0]
    expected = sim.click_probabilities(users, slates).sum()
    assert log.click.sum() == pytest.approx(expected, rel=0.15)


def test_satiation_lowers_repeat_clicks(movielens):
    """The same slate shown again and again is clicked less each time; without satiation it is not."""
    rates = {}
    fixed = np.argsort(-movielens.item_popularity())[:5].astype(np.int32)
    for satiation in (0.0, 0.5):
        sim = UserSimulator(factors=16, iterations=5, satiation=satiation, seed=3).fit(movielens)
        log = sim.run(lambda users, k: np.tile(fixed, (len(users), 1)), days=1, sessions=600, session_length=4,
                      k=5)
        rates[satiation] = [log.click[log.step == s].mean() for s in range(4)]
    assert rates[0.5][3] < 0.5 * rates[0.5][0]
    assert rates[0.0][3] > 0.8 * rates[0.0][0]


def test_new_items_are_released_over_the_days(movielens):
    sim = UserSimulator(factors=8, iterations=3, new_items=0.2, release_days=3, seed=4).fit(movielens)
    released = []
    sim.run(random_slates(sim), days=2, sessions=10, session_length=1, k=2, on_release=released.append)
    assert len(released[0]) == movielens.n_items - len(sim.new_item_order_)
    assert len(released) == 2 and not sim.released_.all()  # day 1's share; days 2 and 3 still to come
    sim.run(random_slates(sim), days=3, sessions=10, session_length=1, k=2, on_release=released.append)
    assert len(released) == 4 and sum(len(r) for r in released) == movielens.n_items and sim.released_.all()
    assert np.diff([len(r) for r in released[1:]]).max() <= 1  # evenly spread


def test_bad_slates_are_errors(sim):
    sim.reset()
    unreleased = int(np.flatnonzero(~sim.released_)[0]) if (~sim.released_).any() else None
    with pytest.raises(DataError, match="repeated"):
        sim.run(lambda users, k: np.zeros((len(users), k), dtype=np.int32), sessions=5, k=3)
    with pytest.raises(DataError, match=r"\(5, 3\)"):
        sim.run(lambda users, k: np.zeros((len(users), 2), dtype=np.int32), sessions=5, k=3)
    if unreleased is not None:
        with pytest.raises(DataError, match="not released"):
            sim.run(lambda users, k: np.tile([unreleased, 0, 1], (len(users), 1)), sessions=5, k=3)
    with pytest.raises(ConfigError, match="sessions"):
        sim.run(random_slates(sim), sessions=10**6, k=3)


def test_exposure_gini_closed_forms():
    assert exposure_gini(np.arange(10), 10) == pytest.approx(0.0)
    assert exposure_gini(np.zeros(50, dtype=np.int64), 10) == pytest.approx(0.9)


def test_recommender_policy_learns_from_clicks_and_explores(sim, movielens):
    sim.reset()
    model = MostPopular().fit(movielens)
    policy = RecommenderPolicy(model, movielens.histories(), exploration="epsilon", epsilon=0.2, seed=0)
    log = sim.run(policy, days=2, sessions=100, session_length=3, k=3, on_release=policy.release,
                  observe=policy.observe)
    greedy = np.isclose(log.propensity, 0.8)
    assert abs(1 - greedy.mean() - 0.2) < 0.03
    clicked = log.click.nonzero()[0][0]
    user = log.user[clicked]
    assert log.item[clicked] in policy.histories(np.array([user])).items
    retrained = impressions_dataset(movielens, log)
    assert retrained.n_interactions == movielens.n_interactions + log.click.sum()
    assert retrained.n_items == movielens.n_items
