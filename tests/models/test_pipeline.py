import numpy as np
import pytest

from recengine.errors import ConfigError
from recengine.models import Recommender
from recengine.models.pipeline import Pipeline
from recengine.testing.checks import contract_dataset

RANKER = {"name": "deepfm", "params": {"lr": 1e-2, "batch_size": 128, "epochs": 3, "patience": 0,
                                       "device": "cpu"}}


@pytest.fixture(scope="module")
def fitted():
    data = contract_dataset()
    return data, Pipeline(retrieval="itemknn", ranker=RANKER, n_candidates=6).fit(data)


def test_candidates_are_ordered_by_the_ranker_above_every_other_item(fitted):
    data, model = fitted
    h = data.histories()[:8]
    scores = model.score(h)
    pool = model.candidates(h).toarray() > 0
    retrieval, ranker = model.components_
    seen = h.matrix("binary").toarray() > 0
    assert (pool.sum(1) == 6).all() and not (pool & seen).any()
    # the retrieval's top 6 unseen items are the candidates
    masked = np.where(seen, -np.inf, retrieval.score(h))
    assert (np.sort(masked, 1)[:, -6:].min(1)[:, None] <= np.where(pool, masked, np.inf)).all()
    np.testing.assert_allclose(scores[pool], ranker.score(h)[pool], rtol=1e-5, atol=1e-5)
    assert (np.where(pool, scores, np.inf).min(1) > np.where(pool, -np.inf, scores).max(1)).all()


def test_saved_stages_and_explanations(fitted, tmp_path):
    data, model = fitted
    model.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    h = data.histories()[:4]
    np.testing.assert_allclose(loaded.score(h), model.score(h), rtol=1e-5, atol=1e-6)
    history = data.histories([0]).with_users(None)
    candidate = int(np.flatnonzero(model.candidates(history).toarray()[0])[0])
    other = int(np.flatnonzero(~(model.candidates(history).toarray()[0] > 0) &
                               ~np.isin(np.arange(data.n_items), history.items))[0])
    assert model.explain(history, candidate).details["stage"] == "ranker"
    assert model.explain(history, other).details["stage"] == "retrieval"
    assert model.similar_items(np.array([0]), k=3)[0].shape == (1, 3)


@pytest.mark.parametrize("params", [{"n_candidates": 0}, {"ranker": "no-such-model"}])
def test_bad_parameters(params):
    with pytest.raises(ConfigError):
        Pipeline(**params).fit(contract_dataset())
