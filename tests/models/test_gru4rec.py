import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories, Vocabulary
from recengine.models import Recommender
from recengine.models.neural.gru4rec import GRU4Rec

N_ITEMS = 30


def successor_data(n_users: int = 200, seed: int = 0) -> Dataset:
    """Every user walks the items in order: item i is always followed by item i + 1 (mod N_ITEMS)."""
    rng = np.random.default_rng(seed)
    starts, lengths = rng.integers(0, N_ITEMS, n_users), rng.integers(3, 12, n_users)
    rows = [(f"u{u}", str((s + t) % N_ITEMS), t) for u, (s, n) in enumerate(zip(starts, lengths, strict=True))
            for t in range(n)]
    return Dataset.from_events(pd.DataFrame(rows, columns=["user", "item", "timestamp"]),
                               items=Vocabulary([str(i) for i in range(N_ITEMS)]))


def tiny(**params) -> GRU4Rec:
    return GRU4Rec(**{"hidden": 16, "dropout": 0.0, "lr": 1e-2, "batch_size": 32, "epochs": 15, "patience": 0,
                      "device": "cpu", **params})


@pytest.fixture(scope="module")
def fitted() -> GRU4Rec:
    return tiny().fit(successor_data())


def test_learns_the_next_item(fitted):
    histories = Histories.from_lists([[(i - 2) % N_ITEMS, (i - 1) % N_ITEMS, i] for i in range(N_ITEMS)], N_ITEMS)
    top = fitted.recommend(histories, k=1)[0][:, 0]
    assert (top == (np.arange(N_ITEMS) + 1) % N_ITEMS).mean() >= 0.9


def test_a_new_event_changes_the_next_item_without_refitting(fitted):
    before = fitted.recommend(Histories.from_lists([[3, 4, 5]], N_ITEMS), k=1)[0][0, 0]
    after = fitted.recommend(Histories.from_lists([[3, 4, 5, 20]], N_ITEMS), k=1)[0][0, 0]
    assert (before, after) == (6, 21)


def test_scores_do_not_depend_on_the_batch_or_padding(fitted):
    alone = fitted.score(Histories.from_lists([[7, 8]], N_ITEMS))
    batched = fitted.score(Histories.from_lists([list(range(N_ITEMS)) * 3, [7, 8], []], N_ITEMS))
    np.testing.assert_allclose(batched[1:2], alone, rtol=1e-5, atol=1e-5)
    assert np.isfinite(batched).all(), "an empty history scores from padding alone, with finite numbers"


def test_save_and_load_give_identical_scores(fitted, tmp_path):
    fitted.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    h = successor_data().histories()
    np.testing.assert_array_equal(loaded.score(h), fitted.score(h))


def test_a_seed_makes_fitting_deterministic():
    data = successor_data(60)
    a, b = tiny(epochs=2, dropout=0.3).fit(data), tiny(epochs=2, dropout=0.3).fit(data)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert not np.array_equal(a.weights_, tiny(epochs=2, random_state=1).fit(data).weights_)


def test_early_stopping_on_validation():
    model = tiny(epochs=5, patience=2).fit(successor_data())
    assert model.best_epoch_ == int(np.argmax(model.validation_ndcg_)) + 1
    assert max(model.validation_ndcg_) > 0.5
