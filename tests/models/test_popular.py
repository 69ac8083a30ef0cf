"""Most-popular: counts, recency decay, the category prior for new items, and its explanation."""

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import DataError
from recengine.models import create_model


def shop(with_genres: bool = True) -> Dataset:
    """a0, a1 (Action) watched by 4 and 2 users; c0 (Comedy) by 1; a2 (Action) and c1 (Comedy) are new."""
    rows = [(f"u{u}", "a0", u) for u in range(4)] + [("u0", "a1", 10), ("u1", "a1", 11), ("u2", "c0", 12)]
    items = pd.DataFrame({"genres": [["Action"], ["Action"], ["Comedy"], ["Action"], ["Comedy"]]},
                         index=["a0", "a1", "c0", "a2", "c1"])
    return Dataset.from_events(pd.DataFrame(rows, columns=["user", "item", "timestamp"]),
                               items if with_genres else None, items=Vocabulary(items.index))


def test_counts_distinct_users():
    model = create_model("popular").fit(shop())
    np.testing.assert_array_equal(model.item_scores_, [4, 2, 1, 0, 0])


def test_category_prior_scores_new_items_by_their_category():
    model = create_model("popular", category_prior=True).fit(shop())
    np.testing.assert_allclose(model.item_scores_, [4, 2, 1, 3, 1])  # a2: mean of 4 and 2; c1: c0's 1
    items, _ = model.recommend(Histories.from_lists([[0, 1, 2]], 5), k=2)
    assert items[0].tolist() == [3, 4]


def test_category_prior_needs_categories():
    with pytest.raises(DataError, match="category_prior needs item categories"):
        create_model("popular", category_prior=True).fit(shop(with_genres=False))


def test_explanation_gives_the_rank():
    model = create_model("popular").fit(shop())
    explanation = model.explain(Histories.from_lists([[]], 5), 1)
    assert explanation.reason == "popular" and explanation.details["rank"] == 2 and not explanation.contributions


def test_random_tie_break_keeps_the_order_of_distinct_counts_and_shuffles_ties():
    data = shop()
    orders = set()
    for seed in range(8):
        scores = create_model("popular", tie_break="random", random_state=seed).fit(data).item_scores_
        assert (np.argsort(-scores)[:3] == [0, 1, 2]).all() and sorted(scores) == [1, 2, 3, 4, 5]
        orders.add(tuple(np.argsort(-scores)[3:]))
    assert orders == {(3, 4), (4, 3)}, "the two new items tie; seeds put either first"
