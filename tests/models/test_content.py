import dataclasses

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import ConfigError, DataError
from recengine.models import Recommender
from recengine.models.content import ContentKNN
from recengine.testing.checks import CHECKS, contract_dataset

SCIFI = [0, 1, 2, 3, 4, 10]  # item 10 is sci-fi too, but nobody has interacted with it
ROMANCE = [5, 6, 7, 8, 9]


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


def test_scifi_history_gets_scifi_first_including_an_untouched_item():
    ds = planted()
    assert ds.item_popularity()[10] == 0
    model = ContentKNN().fit(ds)
    history = Histories.from_lists([[0, 1]], ds.n_items)
    items, _ = model.recommend(history, 4)
    assert set(items[0].tolist()) == {2, 3, 4, 10}
    scores = model.score(history)[0]
    assert scores[[2, 3, 4, 10]].min() > scores[ROMANCE].max()
    similar, _ = model.similar_items(np.array([10]), k=5)
    assert set(similar[0].tolist()) == {0, 1, 2, 3, 4}


def test_weights_are_cosine_of_unit_content_vectors():
    ds = planted()
    model = ContentKNN(attribute_weight=2.0).fit(ds)
    vectors = model.item_vectors(ds).toarray()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-12)
    expected = vectors @ vectors.T
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.item_weights_.toarray(), expected, rtol=1e-5, atol=1e-7)
    # The attribute block (last 4 columns: 4 genres) has length 2 against a unit text block, before the final
    # normalization: its share of the squared norm is 4 / (1 + 4).
    np.testing.assert_allclose((vectors[:, -4:] ** 2).sum(axis=1), 0.8, rtol=1e-9)


def test_neighbors_prunes_each_items_column():
    ds = planted()
    model = ContentKNN(neighbors=2).fit(ds)
    column_counts = np.diff(model.item_weights_.tocsc().indptr)
    assert (column_counts == 2).all()


def test_explain_contributions_sum_to_the_score():
    ds = planted()
    model = ContentKNN(history_half_life=1.0).fit(ds)
    history = Histories.from_lists([[0, 5, 1]], ds.n_items)
    score = model.score(history)[0]
    explanation = model.explain(history, 10, top=10)
    assert explanation.score == pytest.approx(float(score[10]), rel=1e-5)
    assert sum(c for _, c in explanation.contributions) == pytest.approx(float(score[10]), rel=1e-5)
    # The latest item (1) counts most; the romance item contributes nothing to a sci-fi item.
    assert [i for i, _ in explanation.contributions] == [1, 0]


def test_save_load_round_trip(tmp_path):
    ds = planted()
    model = ContentKNN(neighbors=3, attribute_weight=1.5).fit(ds)
    model.save(tmp_path)
    loaded = Recommender.load(tmp_path)
    assert isinstance(loaded, ContentKNN) and loaded.get_params() == model.get_params()
    h = ds.histories()
    np.testing.assert_allclose(loaded.score(h), model.score(h), rtol=1e-6)


def test_without_item_features_raises_data_error():
    with pytest.raises(DataError, match="item features"):
        ContentKNN().fit(contract_dataset())
    ds = planted()
    empty = dataclasses.replace(ds, item_features=pd.DataFrame({"title": [""] * 11}, index=ds.items.ids))
    with pytest.raises(DataError, match="empty"):
        ContentKNN().fit(empty)


@pytest.mark.parametrize("bad", [{"neighbors": 0}, {"attribute_weight": -1.0}, {"values": "rating"}])
def test_bad_params_raise_config_error(bad):
    with pytest.raises(ConfigError):
        ContentKNN(**bad).fit(planted())


def test_passes_the_contract_on_data_with_features():
    data = contract_dataset()
    half = data.n_items // 2
    groups = [int(i[1:]) < half for i in data.items.ids]
    features = pd.DataFrame({
        "title": [f"{'Galaxy' if g else 'Harbor'} story {i}" for i, g in zip(data.items.ids, groups, strict=True)],
        "genres": [["A"] if g else ["B"] for g in groups],
    }, index=data.items.ids)
    data = dataclasses.replace(data, item_features=features)
    for check in CHECKS:
        check(ContentKNN, data)
