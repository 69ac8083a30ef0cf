import numpy as np
import pytest

from recengine.data import Histories
from recengine.errors import ConfigError, DataError
from recengine.models import Recommender
from recengine.models.neural.ncf import GMF, MLP, NeuMF
from recengine.testing.checks import contract_dataset

FAST = {"lr": 1e-2, "epochs": 6, "patience": 0, "fold_in_steps": 10, "device": "cpu"}


def flat_weights(model) -> np.ndarray:
    return np.concatenate([w.ravel() for w in model.weights_.values()])


@pytest.fixture(scope="module")
def data():
    return contract_dataset()


def group_share(model, data, group: int) -> float:
    """Share of a new user's top 5 in the planted group of the three items they liked."""
    half = data.n_items // 2
    liked = [data.items.index(f"i{group * half + i}") for i in range(3)]
    items, _ = model.recommend(Histories.from_lists([liked], data.n_items), k=5)
    return float(np.mean([(int(data.items.ids[i][1:]) >= half) == bool(group) for i in items[0]]))


# The MLP tower learns the planted groups more slowly than GMF's dot product.
@pytest.mark.parametrize("make", [lambda: GMF(**FAST), lambda: MLP(**{**FAST, "epochs": 30}),
                                  lambda: NeuMF(**{**FAST, "epochs": 20}),
                                  lambda: NeuMF(pretrain=True, finetune_lr=0.05, **{**FAST, "epochs": 20})],
                         ids=["gmf", "mlp", "neumf", "neumf-pretrain"])
def test_folded_in_users_follow_the_planted_taste(make, data):
    model = make().fit(data)
    assert group_share(model, data, 0) >= 0.6 and group_share(model, data, 1) >= 0.6


def test_known_users_score_with_their_learned_embedding(data):
    model = GMF(**FAST).fit(data)
    h = data.histories()
    # Known users read their own embedding: the same history folded in scores differently, but ranks their group.
    assert not np.allclose(model.score(h[:4]), model.score(h[:4].with_users(None)))
    half = data.n_items // 2
    top = model.recommend(h, k=3)[0]
    planted = (np.arange(data.n_users) % 2)[:, None]
    in_group = np.array([[int(data.items.ids[i][1:]) >= half for i in row] for row in top]) == planted.astype(bool)
    assert in_group.mean() >= 0.6, "chance is 0.4: 12 of the 30 unseen items are in the user's group"


def test_fold_in_does_not_depend_on_the_batch(data):
    model = MLP(**FAST).fit(data)
    alone = model.score(Histories.from_lists([[1, 2, 3]], data.n_items))
    batched = model.score(Histories.from_lists([[5, 6], [1, 2, 3], []], data.n_items))
    np.testing.assert_allclose(batched[1:2], alone, rtol=1e-4, atol=1e-5)
    assert np.isfinite(batched).all()


def test_pretraining_initialises_from_gmf_and_mlp(data):
    model = NeuMF(pretrain=True, **{**FAST, "epochs": 2}).fit(data)
    assert len(model.pretrain_best_epochs_) == 2 and model.best_epoch_ == 2


@pytest.mark.parametrize("cls", [GMF, NeuMF])
def test_save_and_load_give_identical_scores(cls, data, tmp_path):
    model = cls(**FAST).fit(data)
    model.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    for h in (data.histories(), data.histories().with_users(None)):
        np.testing.assert_array_equal(loaded.score(h), model.score(h))


def test_a_seed_makes_fitting_deterministic(data):
    a, b = NeuMF(**FAST).fit(data), NeuMF(**FAST).fit(data)
    np.testing.assert_array_equal(flat_weights(a), flat_weights(b))
    assert not np.array_equal(flat_weights(a), flat_weights(NeuMF(**{**FAST, "random_state": 1}).fit(data)))


def test_early_stopping_keeps_the_best_validation_epoch(data):
    model = GMF(**{**FAST, "epochs": 6, "patience": 2}).fit(data)
    curve = model.validation_ndcg_
    assert 1 <= len(curve) <= 6 and model.best_epoch_ == int(np.argmax(curve)) + 1


def test_parameter_mistakes_say_what_to_do(data):
    with pytest.raises(ConfigError, match="mlp_layers"):
        MLP(mlp_layers=0).fit(data)
    single = data.select(np.r_[True, np.zeros(data.n_interactions - 1, dtype=bool)])
    with pytest.raises(DataError, match="patience=0"):
        GMF(patience=3, device="cpu").fit(single)
