"""What every neural next-item model (SASRec, GRU4Rec, FMLP-Rec) must do, on data with a planted successor."""

import sys

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import ArtifactError, ConfigError, DataError, NotSupportedError
from recengine.models import Recommender, neural
from recengine.models.neural.fmlp import FMLPRec
from recengine.models.neural.gru4rec import GRU4Rec
from recengine.models.neural.sasrec import SASRec

N_ITEMS = 30
#: Tiny settings per model that learn the planted successor in a few seconds.
TINY = {
    SASRec: {"hidden": 16, "dropout": 0.1, "lr": 5e-3, "batch_size": 32, "epochs": 15, "patience": 0,
             "device": "cpu"},
    GRU4Rec: {"hidden": 16, "dropout": 0.0, "lr": 1e-2, "batch_size": 32, "epochs": 15, "patience": 0,
              "device": "cpu"},
    FMLPRec: {"hidden": 16, "dropout": 0.1, "lr": 5e-3, "batch_size": 32, "epochs": 15, "patience": 0,
              "device": "cpu"},
}
MODELS = pytest.mark.parametrize("cls", list(TINY), ids=lambda cls: cls.name)


def successor_data(n_users: int = 200, seed: int = 0) -> Dataset:
    """Every user walks the items in order: item i is always followed by item i + 1 (mod N_ITEMS)."""
    rng = np.random.default_rng(seed)
    starts, lengths = rng.integers(0, N_ITEMS, n_users), rng.integers(3, 12, n_users)
    rows = [(f"u{u}", str((s + t) % N_ITEMS), t) for u, (s, n) in enumerate(zip(starts, lengths, strict=True))
            for t in range(n)]
    return Dataset.from_events(pd.DataFrame(rows, columns=["user", "item", "timestamp"]),
                               items=Vocabulary([str(i) for i in range(N_ITEMS)]))


def tiny(cls, **params):
    return cls(**{**TINY[cls], **params})


def flat_weights(model) -> np.ndarray:
    return np.concatenate([w.ravel() for w in model.weights_.values()])


@pytest.fixture(scope="module", params=list(TINY), ids=lambda cls: cls.name)
def fitted(request):
    return tiny(request.param).fit(successor_data())


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


def test_a_position_reads_only_itself_and_earlier_items(fitted):
    """Training predicts the next item at every position, so an output that read a later item would read its
    answer: changing items after position i (or the amount of padding before the history) leaves i's output."""
    import torch

    net, _ = fitted._network()
    history = torch.tensor([[3, 9, 4, 17, 11, 25]])
    with torch.no_grad():
        encoded = fitted._encode(net, history)
        for i in range(history.shape[1] - 1):
            changed = history.clone()
            changed[0, i + 1:] = torch.tensor([1, 2, 5, 6, 7][:history.shape[1] - i - 1])
            np.testing.assert_allclose(fitted._encode(net, changed)[0, :i + 1], encoded[0, :i + 1], atol=1e-5)
        assert not np.allclose(fitted._encode(net, changed)[0, -1], encoded[0, -1], atol=1e-3)
        padded = fitted._encode(net, torch.cat([torch.zeros(1, 4, dtype=torch.long), history], 1))
    np.testing.assert_allclose(padded[0, 4:], encoded[0], atol=1e-5)


def test_similar_items_are_embedding_neighbours(fitted):
    items, scores = fitted.similar_items(np.array([4, 9]), k=3)
    assert items.shape == (2, 3) and not np.isin(items[0], [4]).any() and (np.diff(scores, axis=1) <= 1e-6).all()


def test_save_and_load_give_identical_scores(fitted, tmp_path):
    fitted.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    h = successor_data().histories()
    np.testing.assert_array_equal(loaded.score(h), fitted.score(h))


def test_training_loss_goes_down(fitted):
    loss = fitted.training_loss_
    assert len(loss) == 15 and loss[-1] < 0.5 * loss[0]


@MODELS
def test_a_seed_makes_fitting_deterministic(cls):
    data = successor_data(60)
    a, b = tiny(cls, epochs=2, dropout=0.3).fit(data), tiny(cls, epochs=2, dropout=0.3).fit(data)
    np.testing.assert_array_equal(flat_weights(a), flat_weights(b))
    assert not np.array_equal(flat_weights(a), flat_weights(tiny(cls, epochs=2, random_state=1).fit(data)))


@MODELS
def test_early_stopping_keeps_the_best_validation_epoch(cls):
    model = tiny(cls, epochs=6, patience=2).fit(successor_data())
    curve = model.validation_ndcg_
    assert 1 <= len(curve) <= 6 and model.best_epoch_ == int(np.argmax(curve)) + 1
    assert max(curve) > 0.5, "the planted successor is easy to rank first on validation"


@MODELS
def test_refit_trains_again_on_all_the_data_for_the_chosen_epochs(cls, tmp_path):
    data = successor_data(80)
    selected = tiny(cls, epochs=5, patience=2).fit(data)
    refitted = tiny(cls, epochs=5, patience=2, refit=True, checkpoint_dir=str(tmp_path)).fit(data)
    # Early stopping chose as without refit; the kept weights are those of a fixed-epoch fit on all of `data`.
    assert refitted.validation_ndcg_ == selected.validation_ndcg_
    assert refitted.best_epoch_ == selected.best_epoch_
    fixed = tiny(cls, epochs=selected.best_epoch_, patience=0).fit(data)
    np.testing.assert_array_equal(flat_weights(refitted), flat_weights(fixed))
    assert not np.array_equal(flat_weights(refitted), flat_weights(selected))
    assert (tmp_path / "refit" / "checkpoint.pt").is_file()  # each stage checkpoints apart, so both resume


def test_refit_resumes_both_stages_and_refuses_a_refit_checkpoint_of_other_epochs(tmp_path):
    data = successor_data(80)
    params = {"epochs": 5, "patience": 2, "refit": True, "checkpoint_dir": str(tmp_path), "resume": True}
    first = tiny(SASRec, **params).fit(data)
    again = tiny(SASRec, **params).fit(data)  # both stages restored from their finished checkpoints
    np.testing.assert_array_equal(flat_weights(again), flat_weights(first))
    assert again.validation_ndcg_ == first.validation_ndcg_ and again.best_epoch_ == first.best_epoch_
    tiny(SASRec, epochs=first.best_epoch_ + 1, patience=0, checkpoint_dir=str(tmp_path / "refit")).fit(data)
    with pytest.raises(ArtifactError, match="remove it or set resume=False"):
        tiny(SASRec, **params).fit(data)


# ---------------------------------------------------------------------------------------------- SASRec only
def test_sampled_softmax_learns_too():
    model = tiny(SASRec, loss="sampled", negatives=8, epochs=20).fit(successor_data())
    top = model.recommend(Histories.from_lists([[3, 4, 5], [10, 11]], N_ITEMS), k=1)[0][:, 0]
    np.testing.assert_array_equal(top, [6, 12])


def test_parameter_mistakes_say_what_to_do():
    with pytest.raises(ConfigError, match="set patience"):
        tiny(SASRec, refit=True, patience=0).fit(successor_data(20))
    with pytest.raises(ConfigError, match="multiple of heads"):
        tiny(SASRec, hidden=10, heads=3).fit(successor_data(20))
    with pytest.raises(DataError, match="patience=0"):
        tiny(SASRec, patience=3).fit(Dataset.from_events(pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"],
                                                               "timestamp": [0, 1]})))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        tiny(SASRec, device="cuda").fit(successor_data(20))


def test_without_torch_fitting_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.delitem(sys.modules, "recengine.models.neural._training", raising=False)
    monkeypatch.delattr(neural, "_training", raising=False)
    with pytest.raises(NotSupportedError, match=r"recengine\[text\]"):
        tiny(SASRec).fit(successor_data(20))
