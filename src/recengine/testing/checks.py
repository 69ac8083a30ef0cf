"""The Recommender contract, as executable checks."""

from __future__ import annotations

import tempfile
from collections.abc import Callable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.data.vocab import Vocabulary
from recengine.errors import NotFittedError
from recengine.models.base import REASONS, Recommender
from recengine.models.topk import PAD_ITEM


def contract_dataset(n_users: int = 60, n_items: int = 40, seed: int = 0) -> Dataset:
    """Small data with two planted taste groups, ratings 1-5 and timestamps."""
    rng = np.random.default_rng(seed)
    rows = []
    half = n_items // 2
    for u in range(n_users):
        group = u % 2
        liked = rng.choice(np.arange(group * half, (group + 1) * half), size=8, replace=False)
        other = rng.choice(np.arange((1 - group) * half, (2 - group) * half), size=2, replace=False)
        for t, i in enumerate(rng.permutation(np.concatenate([liked, other]))):
            rating = float(rng.integers(4, 6) if i in liked else rng.integers(1, 3))
            rows.append((f"u{u}", f"i{i}", 1_000 + 10 * t + u, rating))
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp", "rating"])
    return Dataset.from_events(frame, name="contract")


def planted_ratings(
    n_users: int = 120, n_items: int = 80, density: float = 0.5, seed: int = 0,
) -> tuple[Dataset, pd.DataFrame, np.ndarray]:
    """Ratings mu + b_u + b_i + rank-2 interaction + small noise on a random half of the matrix, split 80/20.

    Returns (train dataset, test frame, the full true rating matrix)."""
    rng = np.random.default_rng(seed)
    U, V = rng.normal(0, 0.6, (n_users, 2)), rng.normal(0, 0.6, (n_items, 2))
    truth = 3.0 + rng.normal(0, 0.3, (n_users, 1)) + rng.normal(0, 0.3, (1, n_items)) + U @ V.T
    u, i = np.nonzero(rng.random((n_users, n_items)) < density)
    frame = pd.DataFrame({"user": u, "item": i, "timestamp": np.arange(len(u)),
                          "rating": truth[u, i] + rng.normal(0, 0.1, len(u))})
    test = rng.random(len(frame)) < 0.2
    train = Dataset.from_events(frame[~test], users=Vocabulary(np.arange(n_users)),
                                items=Vocabulary(np.arange(n_items)))
    return train, frame[test], truth


def check_recommender(make: Callable[[], Recommender]) -> None:
    """Run every contract check on fresh models from `make` (a factory returning an unfitted model)."""
    data = contract_dataset()
    for check in CHECKS:
        check(make, data)


def check_params_and_unfitted(make: Callable[[], Recommender], data: Dataset) -> None:
    model = make()
    assert model.name, "a registered model needs a name"
    params = model.get_params()
    clone = model.clone()
    assert clone.get_params() == params and clone is not model
    assert not model.is_fitted
    try:
        model.recommend(data.histories()[:2], k=3)
    except NotFittedError:
        pass
    else:
        raise AssertionError("an unfitted model must raise NotFittedError")


def check_fit_returns_self_and_shapes(make: Callable[[], Recommender], data: Dataset) -> None:
    model = make()
    assert model.fit(data) is model
    h = data.histories()[:7]
    scores = np.asarray(model.score(h))
    assert scores.shape == (7, data.n_items) and np.isfinite(scores).all()
    items, best = model.recommend(h, k=5)
    assert items.shape == (7, 5) and best.shape == (7, 5)
    assert (np.diff(best, axis=1) <= 1e-6).all(), "recommendations must be sorted best first"


def check_excludes_seen_and_respects_candidates(make: Callable[[], Recommender], data: Dataset) -> None:
    model = make().fit(data)
    h = data.histories()
    items, _ = model.recommend(h, k=10)
    seen = h.matrix("binary")
    for r in range(len(h)):
        assert not np.intersect1d(items[r], seen[r].indices).size, "seen items must be excluded"
    candidates = sp.csr_matrix(np.tile(np.isin(np.arange(data.n_items), [0, 5, 25, 30]), (len(h), 1)))
    items, _ = model.recommend(h, k=10, exclude_seen=False, candidates=candidates)
    assert set(items[items != PAD_ITEM].ravel()) <= {0, 5, 25, 30}
    assert (items[:, :4] != PAD_ITEM).all() and (items[:, 4:] == PAD_ITEM).all()


def check_new_users_and_padding(make: Callable[[], Recommender], data: Dataset) -> None:
    model = make().fit(data)
    fresh = Histories.from_lists([[], [0, 1, 2], list(range(data.n_items))], data.n_items,
                                 ratings=[[], [5, 4, 5], [3.0] * data.n_items])
    items, _ = model.recommend(fresh, k=5)
    assert items.shape == (3, 5)
    assert (items[2] == PAD_ITEM).all(), "a user who has seen everything gets padding"
    assert not np.isin(items[1], [0, 1, 2]).any()


def check_planted_taste(make: Callable[[], Recommender], data: Dataset) -> None:
    """A new user who liked items of one group gets mostly that group (personalized models only)."""
    model = make().fit(data)
    if not model.personalized:
        return
    half = data.n_items // 2
    liked = [data.items.index(f"i{i}") for i in range(3)]
    fresh = Histories.from_lists([liked], data.n_items, ratings=[[5.0] * 3], weights=[[1.0] * 3])
    items, _ = model.recommend(fresh, k=5)
    group = np.array([int(data.items.ids[i][1:]) < half for i in items[0]])
    assert group.mean() >= 0.6, f"{model.name} does not follow the planted taste: {data.items.ids[items[0]]}"


def check_deterministic_and_save_load(make: Callable[[], Recommender], data: Dataset) -> None:
    h = data.histories()
    first = make().fit(data)
    second = make().fit(data)
    a, _ = first.recommend(h, k=5)
    b, _ = second.recommend(h, k=5)
    np.testing.assert_array_equal(a, b, err_msg="fitting twice with the same seed must give the same model")
    with tempfile.TemporaryDirectory() as tmp:
        first.save(tmp)
        loaded = Recommender.load(tmp)
    assert type(loaded) is type(first) and loaded.get_params() == first.get_params()
    np.testing.assert_allclose(loaded.score(h), first.score(h), rtol=1e-5, atol=1e-6)


def check_explanations_are_faithful(make: Callable[[], Recommender], data: Dataset) -> None:
    """Every model explains its top recommendation, and the explanation is faithful: removing the history items
    it names lowers the item's score (the history scored as a fresh one, as explain does)."""
    model = make().fit(data)
    lowered = 0
    for user in range(6):
        history = data.histories([user]).with_users(None)
        top = int(model.recommend(history, k=1)[0][0, 0])
        explanation = model.explain(history, top, top=3)
        assert explanation.item == top and np.isfinite(explanation.score)
        assert explanation.reason in REASONS, f"unknown reason {explanation.reason!r}"
        named = [j for j, weight in explanation.contributions if weight > 0]
        if not named:
            assert explanation.reason != "liked", "a 'because you liked' explanation must name history items"
            continue
        assert set(named) <= set(history.items.tolist()), "explanations name items of the history"
        before = float(model.score(history)[0, top])
        kept = ~np.isin(history.items, named)
        rest = Histories(np.array([0, int(kept.sum())]), history.items[kept], history.n_items,
                         *(None if a is None else a[kept] for a in (history.weights, history.timestamps,
                                                                    history.ratings)))
        after = float(model.score(rest)[0, top])
        assert after < before, f"{model.name}: removing {named} did not lower the score of {top}"
        lowered += 1
    assert lowered or not model.personalized, f"{model.name} named no history item for anyone"


CHECKS = [
    check_params_and_unfitted,
    check_fit_returns_self_and_shapes,
    check_excludes_seen_and_respects_candidates,
    check_new_users_and_padding,
    check_planted_taste,
    check_deterministic_and_save_load,
    check_explanations_are_faithful,
]
