"""TrainedModel: explanations people can read, and the cold-start chain for someone new."""

import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Vocabulary
from recengine.errors import DataError
from recengine.models import create_model
from recengine.trained import TrainedModel

DAY = 86400
GENRES = {"c": "Comedy", "d": "Drama"}


def films() -> Dataset:
    """Comedies c0..c9 and dramas d0..d9; women mostly watch comedies and men dramas; c9 has no events."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(40):
        gender = "F" if u % 2 else "M"
        mine, other = ("c", "d") if gender == "F" else ("d", "c")
        picks = [f"{mine}{i}" for i in rng.choice(9, 6, replace=False)] + [f"{other}{rng.integers(9)}"]
        rows += [(f"u{u}", item, 1_600_000_000 + DAY * (t + u % 5)) for t, item in enumerate(picks)]
    events = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    ids = [f"{g}{i}" for g in "cd" for i in range(10)]
    items = pd.DataFrame({"title": [f"Film {i}" for i in ids], "genres": [[GENRES[i[0]]] for i in ids]},
                         index=ids)
    users = pd.DataFrame({"gender": ["F" if u % 2 else "M" for u in range(40)]},
                         index=[f"u{u}" for u in range(40)])
    return Dataset.from_events(events, items, users, items=Vocabulary(ids))


@pytest.fixture(scope="module")
def trained() -> TrainedModel:
    return TrainedModel.fit(create_model("itemknn"), films())


def test_explanations_name_history_items_in_a_sentence(trained):
    recs = trained.recommend(["u1"], k=3, explain=True)
    assert (recs["reason"] == "liked").all()
    first = trained.explain("u1", recs["item"].iloc[0])
    history = set(trained.dataset.items.ids[trained.dataset.histories([trained.dataset.users.index("u1")]).items])
    named = [b["item"] for b in first["because"]]
    assert named and set(named) <= history
    assert first["text"].startswith("Because you liked Film ")
    assert first["because"][0]["title"] in first["text"]


def test_a_user_without_history_hears_about_popularity(trained):
    frame = trained.recommend_new_user(3, explain=True)
    assert (frame["source"] == "popular").all() and (frame["reason"] == "popular").all()
    assert frame["text"].str.match(r"Popular in (Comedy|Drama)").all()
    popularity = trained.dataset.item_popularity()
    assert list(frame["score"]) == sorted(popularity, reverse=True)[:3]


def test_popularity_within_a_demographic_group_and_categories(trained):
    women = trained.recommend_new_user(5, attributes={"gender": "F"})
    assert (women["source"] == "popular-in-group").all()
    assert women["item"].str.startswith("c").all(), "women here watch comedies"
    men = trained.recommend_new_user(5, attributes={"gender": "M"})
    assert men["item"].str.startswith("d").all()
    comedies = trained.recommend_new_user(5, categories=["Comedy"])
    assert comedies["item"].str.startswith("c").all()


def test_onboarding_with_liked_items_personalizes_without_retraining(trained):
    frame = trained.recommend_new_user(4, liked=["d0", "d1"], explain=True)
    assert (frame["source"] == "model").all()
    assert frame["item"].str.startswith("d").mean() >= 0.75
    assert not frame["item"].isin(["d0", "d1"]).any()
    assert (frame["reason"] == "liked").all()


def test_cold_start_input_errors_say_what_is_known(trained):
    with pytest.raises(DataError, match="unknown categories.*Comedy"):
        trained.recommend_new_user(3, categories=["Horror"])
    with pytest.raises(DataError, match="unknown user attribute"):
        trained.recommend_new_user(3, attributes={"age": 30})
    with pytest.raises(DataError, match="no training user"):
        trained.recommend_new_user(3, attributes={"gender": "X"})


def test_a_new_item_reached_through_content_says_so():
    data = films()
    trained = TrainedModel.fit(create_model("content", neighbors=19), data)
    explanation = trained.explain("u1", "c9")  # c9 has no events: only its genre can place it
    assert explanation["reason"] == "new-item"
    assert explanation["details"]["interest"] == ["Comedy"]
    assert explanation["text"] == "New item matching your interest in Comedy"


def test_an_item_nothing_in_the_history_supports_is_not_called_liked():
    data = films()
    trained = TrainedModel.fit(create_model("itemknn", neighbors=1), data)
    history = trained.histories_for(["u1"])
    scores = trained.model.score(history)[0]
    unsupported = int(np.flatnonzero((scores == 0) & (data.item_popularity() > 0))[0])
    explanation = trained.explain("u1", trained.dataset.items.ids[unsupported])
    assert explanation["reason"] == "popular" and explanation["text"].startswith("Popular")
