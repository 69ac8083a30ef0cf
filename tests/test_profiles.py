"""User profiles and segments on planted data whose answers are known."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.errors import ConfigError, DataError, UnknownIdError
from recengine.models.popular import MostPopular
from recengine.profiles import Segments, segment_users, user_profile
from recengine.trained import TrainedModel

DAY = 86_400
NOW = 1_600_000_000  # 2020-09-13


def make_dataset(events: list[tuple], genres: dict[str, list[str]] | None = None,
                 tags: dict[str, list[str]] | None = None) -> Dataset:
    frame = pd.DataFrame(events, columns=["user", "item", "timestamp", "rating"][:len(events[0])])
    items = None
    if genres is not None:
        items = pd.DataFrame({"genres": pd.Series(genres)})
        if tags is not None:
            items["tags"] = pd.Series(tags).reindex(items.index).map(lambda v: v if isinstance(v, list) else [])
    return Dataset.from_events(frame, items, name="planted")


GENRES = {"c1": ["Comedy"], "c2": ["Comedy"], "h1": ["Horror"], "h2": ["Horror"], "d1": ["Drama", "Comedy"]}


def planted_groups(n_users: int = 40, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """Even users watch mostly comedies, odd users mostly horror films; one item of the other kind each."""
    rng = np.random.default_rng(seed)
    comedies, horrors = [f"c{i}" for i in range(20)], [f"h{i}" for i in range(20)]
    events = []
    for u in range(n_users):
        mine, other = (comedies, horrors) if u % 2 == 0 else (horrors, comedies)
        chosen = [*rng.choice(mine, size=6, replace=False), rng.choice(other)]
        events += [(f"u{u}", item, NOW + t * DAY) for t, item in enumerate(rng.permutation(chosen))]
    genres = {i: ["Comedy"] for i in comedies} | {i: ["Horror"] for i in horrors}
    return make_dataset(events, genres), np.arange(n_users) % 2


def test_a_user_who_only_watched_comedies_is_all_comedy():
    data = make_dataset([("a", "c1", NOW), ("a", "c2", NOW + 3 * DAY), ("a", "c1", NOW + 3 * DAY + 60),
                         ("b", "h1", NOW)], GENRES)
    profile = user_profile(data, "a")
    assert profile.category_column == "genres"
    assert profile.categories == [("Comedy", 1.0)]
    a = profile.activity
    assert (a.interactions, a.distinct_items, a.active_days) == (3, 2, 2)
    assert (a.first_seen, a.last_seen) == ("2020-09-13", "2020-09-16")
    assert a.per_active_day == pytest.approx(1.5)
    assert a.ratings == 0 and a.mean_rating is None
    # Of the 3 items with events the top 10% is one: c1 (all are tied, and ties go to the first); a has 2.
    assert a.mainstreamness == pytest.approx(0.5)
    assert profile.notes == [] and profile.segment is None


def test_an_item_with_several_categories_splits_its_weight_and_weights_sum_to_one():
    data = make_dataset([("b", "d1", NOW), ("b", "h1", NOW)], GENRES)
    profile = user_profile(data, "b", half_life_days=None)
    assert dict(profile.categories) == pytest.approx({"Horror": 0.5, "Drama": 0.25, "Comedy": 0.25})
    assert sum(w for _, w in profile.categories) == pytest.approx(1.0)
    # The default taste vector is the mean of the items' category rows, each normalised to sum 1.
    assert profile.taste.sum() == pytest.approx(1.0)


def test_recency_weighting_moves_weight_to_the_recent_categories():
    events = [("a", "h1", NOW - 2 * 365 * DAY), ("a", "c1", NOW)]
    data = make_dataset(events, GENRES)
    flat = dict(user_profile(data, "a", half_life_days=None).categories)
    recent = dict(user_profile(data, "a", half_life_days=365).categories)
    assert flat == pytest.approx({"Horror": 0.5, "Comedy": 0.5})
    # Two half-lives back the horror film counts 1/4 of the comedy.
    assert recent == pytest.approx({"Comedy": 0.8, "Horror": 0.2})
    assert user_profile(data, "a", half_life_days=365).categories[0][0] == "Comedy"


def test_tags_ratings_and_json():
    tags = {"c1": ["funny", "classic"], "c2": ["funny"]}
    data = make_dataset([("a", "c1", NOW, 4.0), ("a", "c2", NOW + 1, 2.0), ("a", "h1", NOW + 2, 5.0)],
                        GENRES, tags)
    profile = user_profile(data, "a", half_life_days=None, top=5)
    assert profile.tags == [("funny", pytest.approx(2 / 3)), ("classic", pytest.approx(1 / 3))]
    assert profile.activity.ratings == 3 and profile.activity.mean_rating == pytest.approx(11 / 3)
    payload = json.loads(json.dumps(profile.to_dict()))
    assert payload["categories"][0] == {"name": "Comedy", "weight": pytest.approx(2 / 3)}
    assert payload["activity"]["mean_rating"] == pytest.approx(11 / 3)


def test_features_read_back_from_disk_give_the_same_profile(tmp_path):
    # Parquet gives list features back as arrays; the profile reads both.
    data, _ = planted_groups()
    data.save(tmp_path / "data")
    again = Dataset.load(tmp_path / "data")
    assert user_profile(again, "u3").categories == user_profile(data, "u3").categories


def test_given_item_vectors_make_the_taste_their_weighted_mean():
    data = make_dataset([("a", "c1", NOW), ("a", "h1", NOW)], GENRES)
    vectors = np.zeros((data.n_items, 2))
    vectors[data.items.index("c1")] = [1.0, 0.0]
    vectors[data.items.index("h1")] = [0.0, 3.0]
    taste = user_profile(data, "a", half_life_days=None, item_vectors=vectors).taste
    np.testing.assert_allclose(taste, [0.5, 1.5])
    sparse_taste = user_profile(data, "a", half_life_days=None, item_vectors=sp.csr_matrix(vectors)).taste
    np.testing.assert_allclose(sparse_taste, taste)
    with pytest.raises(DataError, match="n_items"):
        user_profile(data, "a", item_vectors=vectors[:1])


def test_an_unknown_user_is_a_clear_error():
    data = make_dataset([("a", "c1", NOW)], GENRES)
    with pytest.raises(UnknownIdError, match="'zed'") as error:
        user_profile(data, "zed")
    assert isinstance(error.value, DataError)


def test_data_without_item_features_still_has_activity():
    data = make_dataset([("a", "x", NOW), ("a", "y", NOW + DAY), ("b", "x", NOW)])
    profile = user_profile(data, "a")
    assert profile.categories == [] and profile.tags == [] and profile.category_column is None
    assert profile.taste.size == 0
    assert any("no item categories" in note for note in profile.notes)
    assert profile.activity.interactions == 2 and profile.activity.active_days == 2
    with pytest.raises(DataError, match="item categories"):
        segment_users(data, 2)
    vectors = np.eye(data.n_items)
    segments = segment_users(data, 2, item_vectors=vectors)
    assert segments.space == "item-vectors" and segments.names == ["segment 0", "segment 1"]


def test_segments_recover_two_planted_groups_and_name_them():
    data, group = planted_groups()
    segments = segment_users(data, 2, random_state=3, half_life_days=None)
    labels = segments.labels_
    # The same partition as the planted groups, whichever number each got.
    assert len(set(zip(labels, group, strict=True))) == 2 and (labels >= 0).all()
    comedy_segment = labels[0]
    assert segments.names[comedy_segment] == "Comedy" and segments.names[1 - comedy_segment] == "Horror"
    assert segments.sizes.tolist() == [20, 20]
    top = segments.top_categories(comedy_segment)
    assert top[0][0] == "Comedy" and top[0][1] == pytest.approx(1 - 1 / 7)
    # A new user's category shares land in the nearest segment; an empty vector in none.
    order = list(segments.categories)
    new = np.zeros((2, len(order)))
    new[0, order.index("Horror")] = 1.0
    assert segments.assign(new).tolist() == [1 - comedy_segment, -1]
    frame = segments.to_frame()
    assert list(frame.columns) == ["segment", "name", "users", "share", "top categories"]
    assert json.loads(json.dumps(segments.to_dict()))["segments"][0]["users"] == 20


def test_segments_are_deterministic_for_a_seed_and_numbered_by_size():
    data = make_dataset(
        [(f"u{u}", item, NOW + t) for u in range(30)
         for t, item in enumerate(["c1", "h1", "d1", "c2", "h2"][: 1 + u % 5])], GENRES)
    first = segment_users(data, 3, random_state=7)
    again = segment_users(data, 3, random_state=7)
    np.testing.assert_array_equal(first.labels_, again.labels_)
    np.testing.assert_allclose(first.centroids, again.centroids)
    assert first.names == again.names
    assert (np.diff(first.sizes) <= 0).all()


def test_segments_round_trip_and_place_a_profile(tmp_path):
    data, _ = planted_groups()
    segments = segment_users(data, 2)
    segments.save(tmp_path / "segments")
    loaded = Segments.load(tmp_path / "segments")
    np.testing.assert_array_equal(loaded.labels_, segments.labels_)
    assert loaded.names == segments.names and loaded.space == segments.space
    profile = user_profile(data, "u1", segments=loaded)
    assert profile.segment == loaded.label_of("u1") and profile.segment_name == "Horror"
    # A user of other data is placed by their category shares.
    other = make_dataset([("new", "c1", NOW), ("new", "c2", NOW)], {"c1": ["Comedy"], "c2": ["Comedy"]})
    assert user_profile(other, "new", segments=loaded).segment_name == "Comedy"


def test_bad_segment_requests_say_what_to_ask_for():
    data, _ = planted_groups(n_users=4)
    with pytest.raises(ConfigError, match="at most 4 segments"):
        segment_users(data, 5)
    same = make_dataset([(f"u{u}", "c1", NOW) for u in range(5)], GENRES)
    with pytest.raises(ConfigError, match="only 1 distinct"):
        segment_users(same, 2)
    with pytest.raises(ConfigError, match="half_life_days"):
        user_profile(same, "u0", half_life_days=-1)


def test_trained_model_profile():
    data, _ = planted_groups()
    trained = TrainedModel.fit(MostPopular(), data)
    profile = trained.profile("u0", top=1)
    assert profile.categories[0][0] == "Comedy" and len(profile.categories) == 1
