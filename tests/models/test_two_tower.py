import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories
from recengine.data.vocab import Vocabulary
from recengine.errors import ConfigError, DataError, NotSupportedError
from recengine.models import Recommender
from recengine.models.neural.two_tower import TwoTower
from recengine.serving.ann import ItemIndex
from recengine.testing.checks import contract_dataset

FAST = {"dim": 16, "lr": 1e-2, "epochs": 30, "patience": 0, "batch_size": 64, "temperature": 0.1, "device": "cpu"}


@pytest.fixture(scope="module")
def data():
    return contract_dataset()


@pytest.fixture(scope="module")
def with_content(data):
    """The contract data with genres and titles naming each item's planted group, users with a planted
    attribute, and one more catalogue item ("cold", of group "a") that nobody has interacted with."""
    half = data.n_items // 2
    ids = [*data.items.ids, "cold"]
    group = ["a" if i == "cold" or int(i[1:]) < half else "b" for i in ids]
    titles = [f"{'apple' if g == 'a' else 'banana'} {i}" for g, i in zip(group, ids, strict=True)]
    items = pd.DataFrame({"title": titles,
                          "genres": [[g] for g in group]}, index=pd.Index(ids, name="item"))
    users = pd.DataFrame({"group": [("a", "b")[int(u[1:]) % 2] for u in data.users.ids]},
                         index=pd.Index(data.users.ids, name="user"))
    return Dataset.from_events(data.to_frame(), items, users, items=Vocabulary(np.asarray(ids)))


@pytest.fixture(scope="module")
def content_model(with_content):
    return TwoTower(text_encoder="tfidf", id_dropout=0.5, **FAST).fit(with_content)


def in_group_a(dataset: Dataset) -> np.ndarray:
    return np.array([g == ["a"] for g in dataset.item_features["genres"]])


def test_exact_ann_over_the_item_tower_returns_the_models_top_k(data):
    model = TwoTower(**FAST).fit(data)
    h = data.histories()
    expected_items, expected_scores = model.recommend(h, k=10)
    index = ItemIndex.build(model.item_embeddings())
    assert index.mode == "exact"
    items, scores = index.search(model.user_embeddings(h), 10, exclude=[h.row(r) for r in range(len(h))])
    np.testing.assert_array_equal(items, expected_items)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(model.item_embeddings(), axis=1), 1.0, rtol=1e-5)


def test_an_item_without_interactions_is_placed_by_its_content(content_model, with_content):
    cold = with_content.items.index("cold")
    assert not content_model.item_known_[cold] and content_model.text_encoder_ == "tfidf"
    vectors = content_model.item_embeddings()
    group_a = in_group_a(with_content)
    group_a[cold] = False
    similarity = vectors[cold] @ vectors.T
    assert similarity[group_a].mean() > similarity[~group_a & (np.arange(len(vectors)) != cold)].mean() + 0.1
    # A new user who liked group-a items gets the cold item above most group-b items.
    liked = Histories.from_lists([np.flatnonzero(group_a)[:3].tolist()], with_content.n_items)
    scores = content_model.score(liked)[0]
    assert (scores[cold] > scores[~group_a & (np.arange(len(scores)) != cold)]).mean() >= 0.8


def test_items_outside_the_catalogue_are_embedded_from_their_features(with_content):
    model = TwoTower(text_encoder="none", id_dropout=0.5, **FAST).fit(with_content)
    new = model.embed_items(pd.DataFrame({"genres": [["b"], ["unheard-of"]]}, index=["n1", "n2"]))
    assert new.shape == (2, model.dim) and np.isfinite(new).all()
    vectors = model.item_embeddings()
    group_a = in_group_a(with_content)
    assert (vectors[~group_a] @ new[0]).mean() > (vectors[group_a] @ new[0]).mean() + 0.05
    with pytest.raises(DataError, match="DataFrame"):
        model.embed_items([["b"]])


def test_tfidf_text_cannot_embed_new_documents(content_model):
    with pytest.raises(NotSupportedError, match="minilm"):
        content_model.embed_items(pd.DataFrame({"title": ["apple pie"], "genres": [["a"]]}))


def test_user_attributes_feed_the_user_tower(content_model, with_content):
    net, _ = content_model._network()
    assert len(net["user_attributes"]) == 1 and content_model.user_cardinalities_ == [2]
    h = with_content.histories()[:4]
    # Known users read their id and attributes; the same histories as new users score from their items alone.
    assert not np.allclose(content_model.score(h), content_model.score(h.with_users(None)))


def test_save_and_load_give_identical_scores_and_embeddings(content_model, with_content, tmp_path):
    content_model.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    for h in (with_content.histories(), with_content.histories().with_users(None)):
        np.testing.assert_array_equal(loaded.score(h), content_model.score(h))
    np.testing.assert_array_equal(loaded.item_embeddings(), content_model.item_embeddings())


def test_logq_correction_changes_training_and_a_seed_fixes_it(data):
    a, b = TwoTower(**FAST).fit(data), TwoTower(**FAST).fit(data)
    unweighted = TwoTower(**{**FAST, "logq_correction": False}).fit(data)
    for name, value in a.weights_.items():
        np.testing.assert_array_equal(b.weights_[name], value, err_msg=name)
    assert not all(np.array_equal(unweighted.weights_[name], value) for name, value in a.weights_.items())


def test_early_stopping_keeps_the_best_validation_epoch(data):
    model = TwoTower(**{**FAST, "epochs": 6, "patience": 2}).fit(data)
    curve = model.validation_ndcg_
    assert 1 <= len(curve) <= 6 and model.best_epoch_ == int(np.argmax(curve)) + 1


def test_parameter_mistakes_say_what_to_do(data):
    with pytest.raises(ConfigError, match="temperature"):
        TwoTower(temperature=0.0).fit(data)
    with pytest.raises(ConfigError, match="text_encoder"):
        TwoTower(text_encoder="bert").fit(data)
    single = data.select(np.r_[True, np.zeros(data.n_interactions - 1, dtype=bool)])
    with pytest.raises(DataError, match="patience=0"):
        TwoTower(patience=3, device="cpu").fit(single)
