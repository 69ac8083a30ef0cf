import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import ConfigError, NotFittedError
from recengine.models import Recommender, create_model
from recengine.models.bpr import BPR


def block_data(n_users: int = 60, n_items: int = 40, density: float = 0.6, held_out: int = 2, seed: int = 0):
    """Two user groups x two item groups; users only touch items of their own group. Returns the train data,
    the held-out in-group items per user and the in-group mask."""
    rng = np.random.default_rng(seed)
    in_block = (np.arange(n_users)[:, None] % 2) == (np.arange(n_items)[None, :] % 2)
    observed = in_block & (rng.random((n_users, n_items)) < density)
    hidden = np.zeros_like(observed)
    for u in range(n_users):
        hidden[u, rng.choice(np.flatnonzero(observed[u]), held_out, replace=False)] = True
    u, i = np.nonzero(observed & ~hidden)
    events = pd.DataFrame({"user": u, "item": i, "timestamp": np.arange(len(u))})
    ds = Dataset.from_events(events, users=Vocabulary(np.arange(n_users)), items=Vocabulary(np.arange(n_items)))
    return ds, hidden, in_block


def fitted(**params) -> tuple[BPR, Dataset]:
    ds, _, _ = block_data()
    defaults = {"factors": 8, "epochs": 60}
    return BPR(**{**defaults, **params}).fit(ds), ds


def ranked_above_off_block(scores: np.ndarray, hidden: np.ndarray, in_block: np.ndarray) -> float:
    """Share of (held-out item, off-block item) pairs of each user that the scores order right (an AUC)."""
    pairs = hidden[:, :, None] & ~in_block[:, None, :]
    right = scores[:, :, None] > scores[:, None, :]
    return float((pairs & right).sum() / pairs.sum())


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_held_out_block_items_outrank_off_block_items(n_jobs):
    ds, hidden, in_block = block_data()
    model = BPR(factors=8, epochs=60, n_jobs=n_jobs).fit(ds)
    assert ranked_above_off_block(model.score(ds.histories()), hidden, in_block) > 0.97
    assert model.accuracy_ > 0.8  # training triples mostly ordered right by the last epoch


def test_fold_in_ranks_like_the_learned_factors():
    model, ds = fitted()
    _, hidden, in_block = block_data()
    folded = model.score(ds.histories().with_users(None))
    assert ranked_above_off_block(folded, hidden, in_block) > 0.97
    # Same history, same folded vector, wherever it sits in a batch.
    a = model.fold_in(Histories.from_lists([[0, 2, 4], [1, 3]], ds.n_items))
    b = model.fold_in(Histories.from_lists([[1, 3], [0, 2, 4]], ds.n_items))
    np.testing.assert_array_equal(a, b[::-1])
    assert (model.fold_in(Histories.from_lists([[]], ds.n_items)) == 0).all()


def test_item_biases_can_be_switched_off():
    model, _ = fitted(item_bias=False, epochs=5)
    assert (model.item_biases_ == 0).all()
    with_bias, _ = fitted(epochs=5)
    assert np.abs(with_bias.item_biases_).max() > 0


def test_similar_items_stay_in_their_block():
    model, _ = fitted()
    items, _ = model.similar_items(np.array([0, 1]), k=5)
    assert (items[0] % 2 == 0).all() and (items[1] % 2 == 1).all()


def test_single_thread_training_is_reproducible():
    a, _ = fitted(random_state=7, epochs=10)
    b, _ = fitted(random_state=7, epochs=10)
    c, _ = fitted(random_state=8, epochs=10)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_biases_, b.item_biases_)
    assert not np.allclose(a.item_factors_, c.item_factors_)


def test_save_load_round_trip(tmp_path):
    model, ds = fitted(epochs=10)
    model.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert isinstance(back, BPR) and back.get_params() == model.get_params()
    h = ds.histories([0, 3])
    np.testing.assert_array_equal(back.score(h), model.score(h))
    np.testing.assert_array_equal(back.score(h.with_users(None)), model.score(h.with_users(None)))


def test_registry_errors_and_unfitted_use():
    assert isinstance(create_model("bpr", factors=8), BPR)
    ds, _, _ = block_data()
    with pytest.raises(NotFittedError):
        BPR().recommend(ds.histories(), 3)
    with pytest.raises(ConfigError):
        BPR(learning_rate=0.0).fit(ds)
    with pytest.raises(ConfigError):
        BPR(item_bias="yes").fit(ds)
