import dataclasses
import sys

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import ConfigError, DataError, NotSupportedError
from recengine.models import Recommender, content
from recengine.models.content import ContentKNN
from recengine.testing.checks import CHECKS, contract_dataset

SCIFI = [0, 1, 2, 3, 4, 10]  # item 10 is sci-fi too, but nobody has interacted with it
ROMANCE = [5, 6, 7, 8, 9]
#: (text_encoder, neighbors): pruned and full taste, on each encoder.
VARIANTS = [("minilm", 100), ("minilm", 0), ("tfidf", 100), ("tfidf", 0)]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECENGINE_CACHE", str(tmp_path / "cache"))


def planted() -> Dataset:
    """Items 0-4 and 10 are sci-fi, 5-9 romance; romance is far more popular; item 10 has no interactions."""
    features = pd.DataFrame({
        "title": [f"Space Robots {i}" if i in SCIFI else f"Love Letters {i}" for i in range(11)],
        "genres": [["Sci-Fi", "Action"] if i in SCIFI else ["Romance", "Drama"] for i in range(11)],
        "tags": [["aliens"] if i in SCIFI else ["wedding"] for i in range(11)],
    }, index=[str(i) for i in range(11)])
    rows = [[0, 1], [2, 3]] + [[5 + (u + k) % 5 for k in range(3)] for u in range(10)]
    events = [(f"u{u}", str(i), t) for u, items in enumerate(rows) for t, i in enumerate(items)]
    frame = pd.DataFrame(events, columns=["user", "item", "timestamp"])
    return Dataset.from_events(frame, features, items=Vocabulary(range(11)))


@pytest.mark.parametrize(("encoder", "neighbors"), VARIANTS)
def test_scifi_history_gets_scifi_first_including_an_untouched_item(encoder, neighbors):
    ds = planted()
    assert ds.item_popularity()[10] == 0
    model = ContentKNN(text_encoder=encoder, neighbors=neighbors).fit(ds)
    history = Histories.from_lists([[0, 1]], ds.n_items)
    items, _ = model.recommend(history, 4)
    assert set(items[0].tolist()) == {2, 3, 4, 10}
    scores = model.score(history)[0]
    assert scores[[2, 3, 4, 10]].min() > scores[ROMANCE].max()
    similar, _ = model.similar_items(np.array([10]), k=5)
    assert set(similar[0].tolist()) == {0, 1, 2, 3, 4}


def test_auto_uses_minilm_and_falls_back_to_tfidf(monkeypatch):
    ds = planted()
    assert ContentKNN().fit(ds).text_encoder_ == "minilm"
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    model = ContentKNN().fit(ds)
    assert model.text_encoder_ == "tfidf"
    np.testing.assert_array_equal(model.text_vectors_, ContentKNN(text_encoder="tfidf").fit(ds).text_vectors_)
    with pytest.raises(NotSupportedError, match="recengine"):
        ContentKNN(text_encoder="minilm").fit(ds)


def test_weights_are_cosine_of_unit_content_vectors():
    ds = planted()
    model = ContentKNN(text_encoder="tfidf", attribute_weight=2.0, neighbors=ds.n_items).fit(ds)
    vectors = np.hstack([model.text_vectors_, model.attribute_vectors_.toarray()]).astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)
    expected = vectors @ vectors.T
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.item_weights_.toarray(), expected, rtol=1e-5, atol=1e-6)
    # The attribute block (4 genres) has length 2 against a unit text block, before the final normalization:
    # its share of the squared norm is 4 / (1 + 4).
    np.testing.assert_allclose((model.attribute_vectors_.toarray() ** 2).sum(axis=1), 0.8, rtol=1e-6)


@pytest.mark.parametrize("encoder", ["minilm", "tfidf"])
def test_full_taste_equals_unpruned_neighbours(encoder):
    ds = planted()
    history = Histories.from_lists([[0, 5, 1], [7]], ds.n_items)
    full = ContentKNN(text_encoder=encoder, neighbors=0).fit(ds)
    h = history.matrix("binary", half_life=full.history_half_life)
    vectors = np.hstack([full.text_vectors_, full.attribute_vectors_.toarray()])
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, 0.0)
    np.testing.assert_allclose(full.score(history), h @ similarity, rtol=1e-4, atol=1e-5)


def test_neighbors_prunes_each_items_column():
    ds = planted()
    model = ContentKNN(text_encoder="minilm", neighbors=2).fit(ds)
    column_counts = np.diff(model.item_weights_.tocsc().indptr)
    assert (column_counts == 2).all()


@pytest.mark.parametrize(("encoder", "neighbors"), VARIANTS)
def test_explanation_sums_to_the_score_names_shared_genres_and_is_faithful(encoder, neighbors):
    ds = planted()
    model = ContentKNN(text_encoder=encoder, neighbors=neighbors, history_half_life=1.0).fit(ds)
    history = Histories.from_lists([[0, 5, 1]], ds.n_items)
    score = float(model.score(history)[0, 10])
    explanation = model.explain(history, 10, top=10)
    assert explanation.reason == "similar-content" and explanation.score == pytest.approx(score, rel=1e-5)
    # The latest item (1) counts most; the romance item contributes little or nothing to a sci-fi item.
    named = [i for i, _ in explanation.contributions]
    assert named[:2] == [1, 0]
    assert explanation.details["shared"] == ["Sci-Fi", "Action", "aliens"]
    # Only positive contributions are named: together they are at least the score (all of it here for TF-IDF,
    # where the romance item shares nothing with item 10).
    named_total = sum(c for _, c in explanation.contributions)
    assert named_total >= score - 1e-6
    if encoder == "tfidf":
        assert named_total == pytest.approx(score, rel=1e-5)
    without = Histories.from_lists([[i for i in [0, 5, 1] if i not in named]], ds.n_items)
    assert float(model.score(without)[0, 10]) < score


@pytest.mark.parametrize(("encoder", "neighbors"), VARIANTS)
def test_save_load_round_trip_needs_no_encoder(tmp_path, monkeypatch, encoder, neighbors):
    ds = planted()
    model = ContentKNN(text_encoder=encoder, neighbors=neighbors, attribute_weight=1.5).fit(ds)
    model.save(tmp_path / "model")
    monkeypatch.setattr(content, "text_embeddings", None)  # loading and scoring never encode
    loaded = Recommender.load(tmp_path / "model")
    assert isinstance(loaded, ContentKNN) and loaded.get_params() == model.get_params()
    assert loaded.text_encoder_ == encoder
    h = ds.histories()
    np.testing.assert_allclose(loaded.score(h), model.score(h), rtol=1e-6)
    np.testing.assert_array_equal(loaded.similar_items(np.arange(11), 3)[0], model.similar_items(np.arange(11), 3)[0])
    assert loaded.explain(h[:1], 2) == model.explain(h[:1], 2)


def test_without_item_features_raises_data_error():
    with pytest.raises(DataError, match="item features"):
        ContentKNN().fit(contract_dataset())
    ds = planted()
    empty = dataclasses.replace(ds, item_features=pd.DataFrame({"title": [""] * 11}, index=ds.items.ids))
    with pytest.raises(DataError, match="empty"):
        ContentKNN().fit(empty)


@pytest.mark.parametrize("bad", [{"neighbors": -1}, {"attribute_weight": -1.0}, {"values": "rating"},
                                 {"text_encoder": "word2vec"}])
def test_bad_params_raise_config_error(bad):
    with pytest.raises(ConfigError):
        ContentKNN(**bad).fit(planted())


@pytest.mark.parametrize("neighbors", [100, 0])
def test_passes_the_contract_on_data_with_features(neighbors):
    data = contract_dataset()
    half = data.n_items // 2
    groups = [int(i[1:]) < half for i in data.items.ids]
    features = pd.DataFrame({
        "title": [f"{'Galaxy' if g else 'Harbor'} story {i}" for i, g in zip(data.items.ids, groups, strict=True)],
        "genres": [["A"] if g else ["B"] for g in groups],
    }, index=data.items.ids)
    data = dataclasses.replace(data, item_features=features)
    for check in CHECKS:
        check(lambda: ContentKNN(neighbors=neighbors), data)
