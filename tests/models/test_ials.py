import numpy as np
import pandas as pd
import pytest

from recengine.data import Dataset, Histories, Vocabulary
from recengine.errors import ConfigError, DataError, NotFittedError
from recengine.models import Recommender, create_model
from recengine.models.ials import HalfStep, ImplicitALS, _transpose


def block_data(n_users: int = 60, n_items: int = 40, density: float = 0.6, held_out: int = 2, seed: int = 0):
    """Two user groups x two item groups; users only touch items of their own group (a rank-2 pattern).

    Returns the train dataset and, per user, `held_out` in-group items removed from train.
    """
    rng = np.random.default_rng(seed)
    in_block = (np.arange(n_users)[:, None] % 2) == (np.arange(n_items)[None, :] % 2)
    observed = in_block & (rng.random((n_users, n_items)) < density)
    hidden = np.zeros_like(observed)
    for u in range(n_users):
        hidden[u, rng.choice(np.flatnonzero(observed[u]), held_out, replace=False)] = True
    u, i = np.nonzero(observed & ~hidden)
    events = pd.DataFrame({"user": u, "item": i, "timestamp": np.arange(len(u))})
    ds = Dataset.from_events(events, users=Vocabulary(np.arange(n_users)), items=Vocabulary(np.arange(n_items)))
    return ds, hidden, in_block


def fitted(**params) -> tuple[ImplicitALS, Dataset]:
    ds, _, _ = block_data()
    defaults = {"factors": 4, "iterations": 10, "regularization": 1.0, "alpha": 10.0, "reg_exponent": 0.0}
    return ImplicitALS(**{**defaults, **params}).fit(ds), ds


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_held_out_block_items_outrank_every_off_block_item(solver):
    ds, hidden, in_block = block_data()
    model = ImplicitALS(factors=4, iterations=10, regularization=10.0, alpha=10.0, reg_exponent=0.0,
                        solver=solver).fit(ds)
    scores = model.score(ds.histories())
    worst_hidden = np.where(hidden, scores, np.inf).min(axis=1)
    best_off_block = np.where(~in_block, scores, -np.inf).max(axis=1)
    assert (worst_hidden > best_off_block).all()


def test_fold_in_is_the_exact_least_squares_solution():
    model, ds = fitted(alpha=3.0, confidence="log", epsilon=0.5, reg_exponent=1.0, regularization=0.01)
    history = Histories.from_lists([[1, 3, 3, 5]], ds.n_items)  # item 3 twice: weight 2
    Y = model.item_factors_.astype(np.float64)
    items, w = np.array([1, 3, 5]), np.array([1.0, 2.0, 1.0])
    c = 1 + 3.0 * np.log1p(w / 0.5)
    reg = 0.01 * (ds.n_items + (c - 1).sum())  # frequency-scaled: regularization * W_u ** 1
    A = Y.T @ Y + reg * np.eye(4) + (Y[items].T * (c - 1)) @ Y[items]
    expected = np.linalg.solve(A, Y[items].T @ c)
    np.testing.assert_allclose(model.fold_in(history)[0], expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.score(history)[0], Y @ expected, rtol=1e-4, atol=1e-6)


def test_fold_in_of_a_known_history_recommends_like_the_learned_factor():
    model, ds = fitted(iterations=15)
    histories = ds.histories()
    learned, _ = model.recommend(histories, 5)
    folded, _ = model.recommend(histories.with_users(None), 5)
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(learned, folded, strict=True)])
    assert overlap >= 0.9
    # Mixed batch: a known row uses its learned factor, an unknown row is folded in.
    mixed = histories[np.array([0, 1])].with_users(np.array([0, -1]))
    np.testing.assert_allclose(model.score(mixed)[0], model.user_factors_[0] @ model.item_factors_.T, rtol=1e-5)
    np.testing.assert_allclose(model.score(mixed)[1], model.score(histories[[1]].with_users(None))[0], rtol=1e-5)


def test_explain_contributions_sum_to_the_folded_in_score():
    model, ds = fitted()
    history = ds.histories([3]).with_users(None)
    score = model.score(history)[0]
    for item in (0, 7, 10):
        explanation = model.explain(history, item, top=100)
        assert len(explanation.contributions) == len(set(history.row(0)))
        assert sum(c for _, c in explanation.contributions) == pytest.approx(float(score[item]), rel=1e-4,
                                                                             abs=1e-6)
        assert explanation.score == pytest.approx(float(score[item]), rel=1e-4, abs=1e-6)
        values = [c for _, c in explanation.contributions]
        assert values == sorted(values, reverse=True)
    assert len(model.explain(history, 0, top=2).contributions) == 2


def test_similar_items_stay_in_their_block():
    model, ds = fitted()
    items, scores = model.similar_items(np.array([0, 1]), k=5)
    assert (items[0] % 2 == 0).all() and (items[1] % 2 == 1).all()
    assert 0 not in items[0] and 1 not in items[1]
    assert (np.diff(scores, axis=1) <= 1e-6).all() and scores.max() <= 1 + 1e-5


def test_cg_converges_to_cholesky_and_streaming_equals_gathering():
    ds, _, _ = block_data(n_users=80, n_items=30)
    model = ImplicitALS()
    rows = _transpose(model._confidence_matrix(ds.matrix()))  # items x users
    rng = np.random.default_rng(1)
    X = rng.standard_normal((ds.n_users, 6)).astype(np.float32)
    Y0 = rng.standard_normal((ds.n_items, 6)).astype(np.float32)
    reg = np.linspace(0.5, 2.0, ds.n_items).astype(np.float32)
    results = {}
    for name, streamed, steps, exact in [("pull", None, 3, False), ("push", 0, 3, False),
                                         ("cg-many", None, 30, False), ("cholesky", None, 1, True)]:
        Y = Y0.copy()
        plan = HalfStep(rows, 6, streamed)
        assert len(plan.streamed_rows) == (ds.n_items if streamed == 0 else 0)
        plan.solve(X, reg, Y, steps, exact)
        results[name] = Y
    np.testing.assert_allclose(results["push"], results["pull"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(results["cg-many"], results["cholesky"], rtol=1e-3, atol=1e-4)
    assert np.abs(results["pull"] - Y0).max() > 0.1  # the step did move the factors


def test_same_seed_same_model_other_seed_other_model():
    a, _ = fitted(random_state=3)
    b, _ = fitted(random_state=3)
    c, _ = fitted(random_state=4)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert not np.allclose(a.item_factors_, c.item_factors_)


def test_save_load_round_trip(tmp_path):
    model, ds = fitted()
    model.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    assert isinstance(back, ImplicitALS) and back.get_params() == model.get_params()
    h = ds.histories([0, 5])
    np.testing.assert_array_equal(back.score(h), model.score(h))
    np.testing.assert_allclose(back.score(h.with_users(None)), model.score(h.with_users(None)), rtol=1e-6)


def test_registry_errors_and_unfitted_use():
    assert isinstance(create_model("ials", factors=8), ImplicitALS)
    ds, _, _ = block_data()
    with pytest.raises(NotFittedError):
        ImplicitALS().score(ds.histories())
    with pytest.raises(ConfigError):
        ImplicitALS(factors=0).fit(ds)
    with pytest.raises(ConfigError):
        ImplicitALS(solver="lu").fit(ds)
    model, _ = fitted()
    with pytest.raises(DataError):
        model.explain(ds.histories([0, 1]), 0)
