"""The Service's item index for factor models: the index path answers as scoring every item does (exact index),
reaches recall@20 >= 0.95 with HNSW on 60k items, and is rebuilt with the model on a swap."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

from recengine.data.dataset import Dataset
from recengine.data.vocab import Vocabulary
from recengine.errors import ConfigError
from recengine.models.ials import ImplicitALS
from recengine.models.popular import MostPopular
from recengine.models.registry import create_model
from recengine.serving import Service, Settings
from recengine.store import Store
from recengine.trained import TrainedModel

needs_faiss = pytest.mark.skipif(importlib.util.find_spec("faiss") is None, reason="faiss-cpu not installed")

GENRES = [f"g{j}" for j in range(8)]
N_ITEMS, N_USERS, T0 = 400, 120, 1_600_000_000


def genre_world() -> Dataset:
    """120 users who each like two of 8 genres, 12 events each over 400 items with titles and one genre."""
    rng = np.random.default_rng(0)
    genre = rng.integers(0, len(GENRES), N_ITEMS)
    rows = []
    for u in range(N_USERS):
        liked = np.flatnonzero(np.isin(genre, rng.choice(len(GENRES), 2, replace=False)))
        rows += [(f"u{u}", f"i{j}") for j in rng.choice(liked, 12, replace=False)]
    frame = pd.DataFrame(rows, columns=["user", "item"])
    frame["timestamp"] = T0 - len(frame) + np.arange(len(frame))
    items = pd.DataFrame({"title": [f"Film {j} of {GENRES[g]}" for j, g in enumerate(genre)],
                          "genres": [[GENRES[g]] for g in genre]}, index=pd.Index([f"i{j}" for j in range(N_ITEMS)]))
    return Dataset.from_events(frame, items, name="genres")


@pytest.fixture(scope="module")
def world() -> Dataset:
    return genre_world()


@pytest.fixture(scope="module", params=["ials", "bpr"])
def factor_model(request, world) -> TrainedModel:
    params = {"factors": 16, "iterations": 4} if request.param == "ials" else {"factors": 16, "epochs": 5}
    return TrainedModel.fit(create_model(request.param, **params), world)


def open_service(url: str, trained: TrainedModel, **ann) -> Service:
    return Service(Store.open(url), trained, {"model_dir": "test"}, **ann)


def slate(result) -> tuple[list[str], np.ndarray]:
    return [r.item for r in result.items], np.array([r.score for r in result.items])


REQUESTS = [
    {},
    {"k": 50},
    {"exclude_seen": False},
    {"exclude": ["i1", "i2", "i3", "new1"]},
    {"candidates": [f"i{j}" for j in range(0, N_ITEMS, 7)] + ["new0", "nonesuch"]},
    {"categories": ["g0"]},  # an eighth of the catalogue: scored exactly
    {"categories": GENRES[:6]},  # most of it: searched, then filtered
    {"categories": GENRES[:6], "k": 200},
    {"diversity": 0.5},
]


def test_the_index_path_answers_as_scoring_every_item(store_url, factor_model):
    with Store.open(store_url) as store:
        # Posted after training (folded in), and new items served through their content.
        store.add_events(pd.DataFrame({"user": ["u0", "u0", "u1", "newcomer"], "item": ["i5", "i6", "i7", "i8"],
                                       "timestamp": T0 + 10}))
        store.upsert_items(pd.DataFrame({"title": ["New g0 film", "New g1 film"], "genres": [["g0"], ["g1"]]},
                                        index=pd.Index(["new0", "new1"])))
    n_items = factor_model.dataset.n_items
    everything = open_service(store_url, factor_model, ann_min_items=n_items + 1)
    indexed = open_service(store_url, factor_model, ann_min_items=n_items, ann_search="exact")
    try:
        assert everything.model_info()["retrieval"] is None
        assert indexed.model_info()["retrieval"]["search"] == "exact"
        assert indexed.model_info()["new_items"] == 2
        for service in (everything, indexed):
            service.delete_item("i9")
        compared = 0
        for user in ["u0", "u1", "newcomer", *(f"u{u}" for u in range(2, N_USERS, 9))]:
            for request in REQUESTS:
                want_items, want_scores = slate(everything.recommend(user, **{"k": 20, **request}))
                got_items, got_scores = slate(indexed.recommend(user, **{"k": 20, **request}))
                assert got_items == want_items, (user, request)
                np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)
                compared += len(want_items)
        # The slates hold what they should: new items among them, the deleted item never.
        shown = {r.item for u in ("u0", "u1") for r in indexed.recommend(u, n_items).items}
        assert {"new0", "new1"} <= shown and "i9" not in shown and compared > 1_000
    finally:
        everything.close()
        indexed.close()


def clustered(rng: np.random.Generator, n: int, centers: np.ndarray) -> np.ndarray:
    """Factor-like vectors: around cluster centres (tastes), with a lognormal norm spread (popularity)."""
    v = centers[rng.integers(0, len(centers), n)] + 0.7 * rng.standard_normal((n, centers.shape[1]))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return (v * rng.lognormal(0.0, 0.5, n)[:, None]).astype(np.float32)


def synthetic_ials(n_items: int, n_users: int, dim: int, seed: int = 0) -> TrainedModel:
    """An iALS bundle with structured random factors over n_items items; each user has seen 20 items drawn
    from the ones near them (what fold-in and training would have put there)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((200, dim))
    model = ImplicitALS(factors=dim, device="cpu")
    model.item_factors_ = clustered(rng, n_items, centers)
    model.user_factors_ = clustered(rng, n_users, centers)
    model.n_items_, model.n_users_ = n_items, n_users
    near = np.argpartition(-(model.user_factors_ @ model.item_factors_.T), 200, axis=1)[:, :200]
    seen = np.concatenate([rng.choice(row, 20, replace=False) for row in near])
    frame = pd.DataFrame({"user": np.repeat([f"u{u}" for u in range(n_users)], 20),
                          "item": [f"i{j}" for j in seen], "timestamp": np.arange(len(seen))})
    dataset = Dataset.from_events(frame, users=Vocabulary([f"u{u}" for u in range(n_users)]),
                                  items=Vocabulary([f"i{j}" for j in range(n_items)]), name="synthetic")
    return TrainedModel(model, dataset, MostPopular().fit(dataset), {"model": "ials"})


@needs_faiss
def test_hnsw_recall_at_20_against_exact_on_60k_items(store_url):
    trained = synthetic_ials(60_000, 200, 16)
    service = open_service(store_url, trained)  # the default threshold: 50,000 items
    try:
        info = service.model_info()["retrieval"]
        assert info["search"] == "hnsw" and info["items"] == 60_000
        users = [f"u{u}" for u in range(200)]
        exact = trained.recommend(users, 20).groupby("user")["item"].apply(set)
        recall = np.mean([len({r.item for r in service.recommend(u, 20).items} & exact[u]) / 20 for u in users])
        assert recall >= 0.95, recall
        # Seen items stay out, as on the exact path.
        seen = set(trained.dataset.items.lookup(trained.histories_for(["u0"]).items))
        assert seen.isdisjoint(r.item for r in service.recommend("u0", 100).items)
    finally:
        service.close()


def test_too_few_survivors_fall_back_to_exact_scoring():
    from recengine.serving.retrieval import VectorRetrieval

    trained = synthetic_ials(3_000, 1, 16, seed=3)
    retrieval = VectorRetrieval.build(trained.model, min_items=0, search="hnsw" if importlib.util.find_spec(
        "faiss") else "exact")
    query = retrieval.query(trained.histories_for(["u0"]))
    scores = (query @ trained.model.item_factors_.T)[0]
    order = np.argsort(-scores, kind="stable")
    # Allowed: the worst 40% for this user. A search fetches about k / 0.4 items, all of them good ones.
    allowed = np.sort(order[-1_200:])
    assert not np.isin(retrieval.index.search(query, 30)[0][0], allowed).any()
    items, values = retrieval.top(query, 10, np.zeros(0, dtype=np.int64), allowed)
    np.testing.assert_array_equal(items, order[-1_200:][:10])
    np.testing.assert_allclose(values, scores[items], rtol=1e-5)
    # Excluded items never come back, and the list is still full.
    items, _ = retrieval.top(query, 10, np.sort(order[:25]))
    assert len(items) == 10 and not np.isin(items, order[:25]).any()


def test_the_index_follows_the_model_through_swaps(store_url, world):
    ials = TrainedModel.fit(create_model("ials", factors=8, iterations=2), world)
    service = open_service(store_url, ials, ann_min_items=world.n_items, ann_search="exact")
    try:
        assert service.model_info()["retrieval"]["dim"] == 8
        service.swap(TrainedModel.fit(create_model("itemknn"), world))
        assert service.model_info()["retrieval"] is None  # no vectors: every item scored
        wider = TrainedModel.fit(create_model("ials", factors=12, iterations=2), world)
        service.swap(wider)
        assert service.model_info()["retrieval"]["dim"] == 12
        want = wider.recommend(["u3"], 10)["item"].tolist()
        assert [r.item for r in service.recommend("u3", 10).items] == want
        assert service.recommend("u3", 10, candidates=["nonesuch"]).items == []  # nothing eligible
    finally:
        service.close()
    below = open_service(store_url, ials, ann_min_items=world.n_items + 1)
    assert below.model_info()["retrieval"] is None
    below.close()


def test_ann_settings():
    settings = Settings.from_env({"RECENGINE_ANN_MIN_ITEMS": "0", "RECENGINE_ANN_SEARCH": "exact"})
    assert (settings.ann_min_items, settings.ann_search) == (0, "exact")
    with pytest.raises(ConfigError, match="ann_search"):
        Settings(ann_search="lsh")
    with pytest.raises(ConfigError, match="ann_min_items"):
        Settings(ann_min_items=-1)
