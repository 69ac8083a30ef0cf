import numpy as np
import pytest

from recengine.data import Histories
from recengine.data.splits import split
from recengine.errors import DataError
from recengine.models import Recommender
from recengine.models.neural.multvae import MultVAE
from recengine.testing.checks import contract_dataset

FAST = {"hidden": 64, "latent": 16, "lr": 3e-3, "batch_size": 64, "epochs": 40, "patience": 0,
        "total_anneal_steps": 20, "device": "cpu"}


def flat_weights(model) -> np.ndarray:
    return np.concatenate([w.ravel() for w in model.weights_.values()])


@pytest.fixture(scope="module")
def data():
    return contract_dataset()


@pytest.fixture(scope="module")
def fitted(data):
    return MultVAE(**FAST).fit(data)


def test_new_users_follow_the_planted_taste(fitted, data):
    half = data.n_items // 2
    for group in (0, 1):
        liked = [data.items.index(f"i{group * half + i}") for i in range(3)]
        items, _ = fitted.recommend(Histories.from_lists([liked], data.n_items), k=5)
        assert np.mean([(int(data.items.ids[i][1:]) >= half) == bool(group) for i in items[0]]) >= 0.8


def test_strong_generalization_scores_held_out_users(data):
    strong = split(data, "strong", test_users_fraction=0.2)
    model = MultVAE(**FAST).fit(strong.train)
    items, _ = model.recommend(strong.query, k=5)
    hits = np.take_along_axis(strong.truth.toarray(), items, 1) > 0
    assert hits.any(axis=1).mean() >= 0.5, "held-out users' remaining items rank high"


def test_scores_ignore_the_user_and_the_batch(fitted, data):
    h = data.histories()[:5]
    np.testing.assert_array_equal(fitted.score(h), fitted.score(h.with_users(None)))
    np.testing.assert_allclose(fitted.score(h[2:3]), fitted.score(h)[2:3], rtol=1e-5, atol=1e-6)


def test_save_and_load_give_identical_scores(fitted, data, tmp_path):
    fitted.save(tmp_path)
    np.testing.assert_array_equal(Recommender.load(tmp_path).score(data.histories()), fitted.score(data.histories()))


def test_a_seed_makes_fitting_deterministic(data):
    a, b = MultVAE(**{**FAST, "epochs": 3}).fit(data), MultVAE(**{**FAST, "epochs": 3}).fit(data)
    np.testing.assert_array_equal(flat_weights(a), flat_weights(b))
    other = MultVAE(**{**FAST, "epochs": 3, "random_state": 1}).fit(data)
    assert not np.array_equal(flat_weights(a), flat_weights(other))


def test_early_stopping_on_held_out_users(data):
    model = MultVAE(**{**FAST, "epochs": 8, "patience": 3, "validation_users": 0.2}).fit(data)
    curve = model.validation_ndcg_
    assert 1 <= len(curve) <= 8 and model.best_epoch_ == int(np.argmax(curve)) + 1 and 0 <= max(curve) <= 1


def test_too_few_users_to_validate_says_what_to_do(data):
    one_user = data.select(data.user_index == 0)
    with pytest.raises(DataError, match="patience=0"):
        MultVAE(**{**FAST, "patience": 2}).fit(one_user)
