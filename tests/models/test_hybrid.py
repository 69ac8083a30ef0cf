import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from recengine.data import Histories
from recengine.errors import ConfigError, NotSupportedError
from recengine.models import Recommender, create_model
from recengine.models.ease import EASE
from recengine.models.hybrid import StackingHybrid, SwitchingHybrid, WeightedHybrid, normalize
from recengine.models.itemknn import ItemKNN
from recengine.models.popular import MostPopular
from recengine.testing import check_recommender, contract_dataset
from recengine.testing.checks import CHECKS

#: Scores that carry no signal.
NOISE = "random"


def with_features(data):
    """The contract data with content matching its two planted taste groups."""
    half = data.n_items // 2
    groups = [int(i[1:]) < half for i in data.items.ids]
    features = pd.DataFrame({
        "title": [f"{'Galaxy' if g else 'Harbor'} story {i}" for i, g in zip(data.items.ids, groups, strict=True)],
        "genres": [["A"] if g else ["B"] for g in groups],
    }, index=data.items.ids)
    return dataclasses.replace(data, item_features=features)


@pytest.mark.parametrize("make", [
    WeightedHybrid, SwitchingHybrid, StackingHybrid,
    lambda: SwitchingHybrid(models=["popular", "itemknn", "ease"], min_history=[1, 5]),
    lambda: StackingHybrid(models=["ease", "itemknn", "popular"], candidates=10),
])
def test_passes_the_contract(make):
    check_recommender(make)


@pytest.mark.parametrize("cls", [WeightedHybrid, StackingHybrid])
def test_mixes_content_and_collaborative_components_on_data_with_features(cls):
    make = lambda: cls(models=["content", "itemknn"])  # noqa: E731
    assert make().requires_item_features and not cls.requires_item_features
    data = with_features(contract_dataset())
    for check in CHECKS:
        check(make, data)


def test_weight_zero_gives_the_other_components_ranking():
    data = contract_dataset()
    h = data.histories()
    blend = WeightedHybrid(models=["ease", "itemknn"], weights=[0.0, 2.0]).fit(data)
    items, _ = blend.recommend(h, k=10)
    np.testing.assert_array_equal(items, ItemKNN().fit(data).recommend(h, k=10)[0])
    np.testing.assert_allclose(blend.score(h), 2.0 * normalize(ItemKNN().fit(data).score(h), "zscore"), atol=1e-5)


def test_equal_weights_sum_the_normalized_scores():
    data = contract_dataset()
    h = data.histories()
    blend = WeightedHybrid(normalization="minmax").fit(data)
    expected = 0.5 * (normalize(EASE().fit(data).score(h), "minmax") + normalize(ItemKNN().fit(data).score(h),
                                                                                  "minmax"))
    np.testing.assert_allclose(blend.score(h), expected, rtol=1e-5, atol=1e-6)
    z = normalize(EASE().fit(data).score(h), "zscore")
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=1), 1.0, rtol=1e-4)
    assert (normalize(np.ones((2, 5)), "zscore") == 0).all()  # a constant row leaves the ranking to the others


def test_switching_serves_each_history_from_the_model_for_its_length():
    data = contract_dataset()
    model = SwitchingHybrid(models=["popular", "itemknn", "ease"], min_history=[1, 4]).fit(data)
    h = Histories.from_lists([[], [0], [0, 1, 2], [0, 1, 2, 3], list(range(10))], data.n_items)
    np.testing.assert_array_equal(model.serving(h), [0, 1, 1, 2, 2])
    scores = model.score(h)
    np.testing.assert_array_equal(scores[[0]], MostPopular().fit(data).score(h[[0]]))
    np.testing.assert_array_equal(scores[1:3], ItemKNN().fit(data).score(h[[1, 2]]))
    np.testing.assert_array_equal(scores[3:], EASE().fit(data).score(h[[3, 4]]))
    explanation = model.explain(h[[3]], 7)
    assert explanation.details["component"] == "ease"
    assert explanation.score == pytest.approx(float(scores[3, 7]), rel=1e-5, abs=1e-6)
    assert model.explain(h[[0]], 7).reason == "popular"
    # popular has no item similarity: the first component that has one answers.
    np.testing.assert_array_equal(model.similar_items(np.array([3]), k=4)[0],
                                  ItemKNN().fit(data).similar_items(np.array([3]), k=4)[0])


def test_stacking_learns_to_trust_the_useful_component_over_noise():
    data = contract_dataset(n_users=120)
    model = StackingHybrid(models=[NOISE, "itemknn"]).fit(data)
    names = model.feature_names_
    assert names[:4] == ["0:random", "0:random x log-length", "1:itemknn", "1:itemknn x log-length"]
    noise, useful = model.coef_[0], model.coef_[2]
    assert useful > 0.2 and useful > 5 * abs(noise)
    weights = model.component_weights(8)
    assert weights[1] > 5 * abs(weights[0])
    assert 0 < model.candidate_recall_ <= 1
    # The blend ranks like ItemKNN: the planted taste comes through the noise.
    h = data.histories()
    top = model.recommend(h, k=5)[0]
    knn = ItemKNN().fit(data).recommend(h, k=5)[0]
    assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(top, knn, strict=True)]) >= 3.5


def test_stacking_scores_candidates_above_a_finite_floor():
    data = contract_dataset()
    model = StackingHybrid(candidates=3).fit(data)
    h = data.histories()[:5]
    scores = model.score(h)
    raw = [c.score(h) for c in model._components()]
    pool = model._candidate_pool(raw, h).toarray() > 0
    assert np.isfinite(scores).all() and (pool.sum(axis=1) >= 3).all()
    for r in range(len(h)):
        assert scores[r, pool[r]].min() >= scores[r, ~pool[r]].max() + 1.0 - 1e-4


@pytest.mark.parametrize("make", [
    lambda: WeightedHybrid(models=["ease", {"name": "itemknn", "params": {"neighbors": 10}}], weights=[1.0, 3.0]),
    lambda: SwitchingHybrid(models=["popular", "itemknn"], min_history=3),
    lambda: StackingHybrid(models=["ease", {"name": "rp3beta", "params": {"alpha": 0.8}}], candidates=20),
])
def test_save_load_round_trip_gives_identical_scores(make, tmp_path):
    data = contract_dataset()
    model = make().fit(data)
    model.save(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["params"] == model.get_params()
    back = Recommender.load(tmp_path / "m")
    h = data.histories()
    fresh = Histories.from_lists([[0, 3], [5, 6, 7, 8]], data.n_items)
    for batch in (h, h.with_users(None), fresh):
        np.testing.assert_array_equal(back.score(batch), model.score(batch))
    back.save(tmp_path / "again")  # a loaded hybrid saves again
    np.testing.assert_array_equal(Recommender.load(tmp_path / "again").score(h), model.score(h))


@pytest.mark.parametrize("make", [
    lambda: WeightedHybrid(weights=[1.0, 3.0]),
    lambda: StackingHybrid(),
])
def test_explain_reports_the_component_that_adds_most(make):
    data = contract_dataset()
    model = make().fit(data)
    h = data.histories()[[0]]
    item = int(model.recommend(h, k=1)[0][0, 0])
    explanation = model.explain(h, item)
    assert explanation.item == item and explanation.reason == "liked"
    assert explanation.details["component"] in ("ease", "itemknn")
    assert explanation.score == pytest.approx(float(model.score(h)[0, item]), rel=1e-5)
    assert explanation.contributions and set(j for j, _ in explanation.contributions) <= set(h.row(0).tolist())
    # Contributions come from the component, rescaled by its (positive) effective weight: same order.
    component = {"ease": EASE, "itemknn": ItemKNN}[explanation.details["component"]]().fit(data)
    own = component.explain(h, item)
    assert [j for j, _ in explanation.contributions] == [j for j, _ in own.contributions]
    ratios = np.array([c for _, c in explanation.contributions]) / np.array([c for _, c in own.contributions])
    assert (ratios > 0).all() and np.ptp(ratios) < 1e-6 * ratios.max()


def test_personalizes_and_defines_similarity_only_through_its_components():
    data = contract_dataset()
    model = WeightedHybrid(models=["popular", "random"]).fit(data)
    assert not model.personalized and WeightedHybrid.personalized
    assert model.explain(data.histories()[[0]], 3).reason in ("popular", "explore")
    with pytest.raises(NotSupportedError, match="item similarity"):
        model.similar_items(np.array([0]))


@pytest.mark.parametrize(("cls", "params", "message"), [
    (WeightedHybrid, {"models": []}, "non-empty list"),
    (WeightedHybrid, {"models": "ease"}, "non-empty list"),
    (WeightedHybrid, {"models": ["no-such-model"]}, "unknown model 'no-such-model'"),
    (WeightedHybrid, {"models": [{"model": "ease"}]}, "bad model entry"),
    (WeightedHybrid, {"models": [42]}, "bad model entry"),
    (WeightedHybrid, {"models": [{"name": "ease", "params": {"no_such": 1}}]}, "component 'ease'.*no_such"),
    (WeightedHybrid, {"models": [{"name": "ease", "params": {"l2": -1.0}}]}, "component 'ease'.*l2"),
    (WeightedHybrid, {"weights": [1.0]}, "list of 2 numbers"),
    (WeightedHybrid, {"weights": [1.0, -1.0]}, "weight must be >= 0"),
    (WeightedHybrid, {"weights": [0.0, 0.0]}, "not all 0"),
    (WeightedHybrid, {"normalization": "rank"}, "normalization"),
    (SwitchingHybrid, {"models": ["ease"]}, "at least two models"),
    (SwitchingHybrid, {"min_history": [1, 5]}, "list of 1 ints"),
    (SwitchingHybrid, {"models": ["popular", "itemknn", "ease"], "min_history": [5, 5]}, "increasing list"),
    (SwitchingHybrid, {"min_history": 0}, "min_history must be >= 1"),
    (StackingHybrid, {"candidates": 0}, "candidates"),
    (StackingHybrid, {"validation_fraction": 1.0}, "validation_fraction"),
])
def test_bad_configurations_raise_config_error(cls, params, message):
    with pytest.raises(ConfigError, match=message):
        cls(**params).fit(contract_dataset())


def test_registered_with_defaults_that_need_no_item_features():
    for name, cls in (("weighted", WeightedHybrid), ("switching", SwitchingHybrid), ("stacking", StackingHybrid)):
        model = create_model(name)
        assert isinstance(model, cls) and not model.requires_item_features


def test_weighted_similar_items_blend_the_components_similarities():
    data = contract_dataset()
    query = np.array([0, 25])
    ease = EASE().fit(data).similar_items(query, k=5)[0]
    itemknn = ItemKNN().fit(data).similar_items(query, k=5)[0]
    alone = WeightedHybrid(models=["ease", "itemknn"], weights=[1.0, 0.0]).fit(data).similar_items(query, k=5)[0]
    np.testing.assert_array_equal(alone, ease, err_msg="one component with weight: its own neighbours")
    items, scores = WeightedHybrid(models=["ease", "itemknn"]).fit(data).similar_items(query, k=5)
    assert not np.isin(query[:, None], items).any(axis=1).any(), "an item is not its own neighbour"
    assert (np.diff(scores, axis=1) <= 1e-6).all()
    for row in range(2):  # the blend's best neighbour is among the best of a component
        assert items[row, 0] in set(ease[row]) | set(itemknn[row])
