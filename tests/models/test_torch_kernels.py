"""The PyTorch paths of iALS, EASE and many-user top-K, run on the CPU, against the NumPy/numba paths."""

import sys

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from recengine.errors import ConfigError  # noqa: E402
from recengine.models import Recommender, _torch_kernels, ease, ials, topk  # noqa: E402
from recengine.models.topk import PAD_ITEM, accelerator, keep_only, mask_entries  # noqa: E402
from recengine.testing import contract_dataset  # noqa: E402

CPU = torch.device("cpu")


def torch_unless_cpu(device: str):
    """An accelerator() that sends every device but "cpu" to the torch path on the CPU."""
    return None if device == "cpu" else CPU


@pytest.fixture
def torch_on_cpu(monkeypatch):
    """Run the models' torch paths on the CPU, for batches of any size; yields the count of ranked batches."""
    for module in (ials, ease):
        monkeypatch.setattr(module, "accelerator", torch_unless_cpu)
        monkeypatch.setattr(module, "DEVICE_MIN_ROWS", 1)
    ranked = []
    rank_blocks = _torch_kernels.rank_blocks
    monkeypatch.setattr(_torch_kernels, "rank_blocks", lambda *args, **kw: ranked.append(1) or rank_blocks(*args,
                                                                                                           **kw))
    return ranked


def fit_both(model_cls, data, monkeypatch, **params):
    """(model fitted on the CPU path, model fitted by the torch path) with the same hyper-parameters."""
    reference = model_cls(device="cpu", **params).fit(data)
    with monkeypatch.context() as patch:
        patch.setattr(sys.modules[model_cls.__module__], "accelerator", torch_unless_cpu)
        on_torch = model_cls(device="auto", **params).fit(data)
    return reference, on_torch


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("params", [{}, {"reg_exponent": 0.0, "regularization": 1.0, "confidence": "log"}])
def test_ials_factors_match_the_numba_path(monkeypatch, solver, params):
    data = contract_dataset(80, 30)
    reference, on_torch = fit_both(ials.ImplicitALS, data, monkeypatch, factors=6, iterations=5, solver=solver,
                                   **params)
    start = ials.ImplicitALS(factors=6, iterations=0).fit(data)
    assert np.abs(reference.item_factors_ - start.item_factors_).max() > 0.1  # the iterations moved them
    np.testing.assert_allclose(on_torch.user_factors_, reference.user_factors_, atol=1e-4)
    np.testing.assert_allclose(on_torch.item_factors_, reference.item_factors_, atol=1e-4)
    assert on_torch.user_factors_.dtype == np.float32 and len(on_torch._iteration_seconds) == 5


def test_ials_half_steps_split_rows_into_padded_blocks():
    rows = sp.random(50, 20, density=0.3, random_state=3, format="csr", dtype=np.float32)
    rows.data += 1.0
    plan = _torch_kernels.HalfStep(rows, 4, CPU)
    assert sorted(np.concatenate([b.rows.numpy() for b in plan.blocks]).tolist()) == list(range(50))
    for block in plan.blocks:  # every stored entry in its row's block, padding weighing nothing
        for position, row in enumerate(block.rows.tolist()):
            lo, hi = rows.indptr[row], rows.indptr[row + 1]
            width = hi - lo
            assert block.indices[position, :width].tolist() == rows.indices[lo:hi].tolist()
            assert not block.confidence[position, width:].any() and not block.weight[position, width:].any()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_torch_kernels, "_CPU_BLOCK_FLOATS", 64)  # 16 padded entries of 4 factors per block
        assert len(_torch_kernels.HalfStep(rows, 4, CPU).blocks) > 5


@pytest.mark.parametrize("params", [{"dtype": "float64"}, {"dtype": "float32"}, {"prune_threshold": 0.01}])
def test_ease_weights_match_the_lapack_path(monkeypatch, params):
    data = contract_dataset()
    reference, on_torch = fit_both(ease.EASE, data, monkeypatch, l2=7.0, **params)
    if sp.issparse(reference.item_weights_):
        assert sp.issparse(on_torch.item_weights_)
        reference_weights, torch_weights = reference.item_weights_.toarray(), on_torch.item_weights_.toarray()
    else:
        reference_weights, torch_weights = reference.item_weights_, on_torch.item_weights_
    assert torch_weights.dtype == np.float32
    np.testing.assert_allclose(torch_weights, reference_weights, atol=1e-6)
    assert np.abs(reference_weights).max() > 0.05


def test_ease_gram_by_column_blocks_and_a_clear_error_when_not_positive_definite(monkeypatch):
    x = sp.random(40, 30, density=0.2, random_state=1, format="csr", dtype=np.float64)
    monkeypatch.setattr(_torch_kernels, "_CPU_BLOCK_FLOATS", 40 * 7)  # blocks of 7 columns, the last ragged
    np.testing.assert_allclose(_torch_kernels.gram(x, torch.float64, CPU).numpy(), (x.T @ x).toarray())
    with pytest.raises(ConfigError, match="increase l2"):
        _torch_kernels.ease_weights(x, -1.0, "float64", CPU)


def test_topk_rows_equals_topk_with_ties_masks_nan_and_padding():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(200, 30)).astype(np.float32)  # many ties, also at the k-th place
    scores[rng.random(scores.shape) < 0.3] = -np.inf
    scores[5, :] = -np.inf
    scores[7, 3] = np.nan
    for k in (1, 5, 30, 40):
        expected_items, expected_scores = topk.topk(scores, k)
        items, values = _torch_kernels.topk_rows(torch.as_tensor(scores), k)
        np.testing.assert_array_equal(items.numpy(), expected_items)
        np.testing.assert_array_equal(values.numpy(), expected_scores)
    assert (expected_items[5] == PAD_ITEM).all()


def test_rank_factors_masks_seen_excluded_and_non_candidates_in_blocks():
    rng = np.random.default_rng(1)
    users = rng.integers(-2, 3, size=(45, 4)).astype(np.float32)  # small integers: exact scores, many ties
    items = rng.integers(-2, 3, size=(25, 4)).astype(np.float32)
    seen = sp.random(45, 25, density=0.2, random_state=2, format="csr", dtype=np.float32)
    excluded = sp.random(45, 25, density=0.1, random_state=3, format="csr", dtype=np.float32)
    candidates = sp.random(45, 25, density=0.6, random_state=4, format="csr", dtype=np.float32)
    for allowed in (None, candidates):
        expected = users @ items.T
        mask_entries(expected, seen)
        mask_entries(expected, excluded)
        if allowed is not None:
            keep_only(expected, allowed)
        expected_items, expected_scores = topk.topk(expected, 10)
        for block_rows in (None, 7):
            got_items, got_scores = _torch_kernels.rank_factors(users, items, 10, [seen, excluded], allowed, CPU,
                                                                block_rows)
            np.testing.assert_array_equal(got_items, expected_items)
            np.testing.assert_array_equal(got_scores, expected_scores)
            assert got_items.dtype == np.int32 and got_scores.dtype == np.float32


def assert_same_ranking(got, expected, tolerance=1e-5):
    """Equal top-K lists, except where two items' scores are within rounding of each other (ties aside)."""
    (got_items, got_scores), (expected_items, expected_scores) = got, expected
    np.testing.assert_allclose(got_scores, expected_scores, rtol=tolerance, atol=tolerance)
    differ = got_items != expected_items
    assert differ.mean() < 0.05
    neighbours = np.isclose(expected_scores[:, 1:], expected_scores[:, :-1], rtol=tolerance, atol=tolerance)
    near_tie = np.zeros_like(differ)
    near_tie[:, 1:] |= neighbours
    near_tie[:, :-1] |= neighbours
    assert not (differ & ~near_tie).any()


@pytest.mark.parametrize("model_cls, params", [(ials.ImplicitALS, {"factors": 6, "iterations": 3}),
                                               (ease.EASE, {"l2": 5.0}), (ease.EASE, {"prune_threshold": 0.01})])
def test_recommend_through_the_device_path_matches_the_cpu_path(torch_on_cpu, model_cls, params):
    data = contract_dataset(70, 25, seed=5)
    model = model_cls(**params).fit(data)
    histories = data.histories()
    exclude = sp.random(len(histories), data.n_items, density=0.05, random_state=0, format="csr")
    candidates = sp.random(len(histories), data.n_items, density=0.5, random_state=1, format="csr")
    reference = model.clone().set_params(device="cpu")
    reference.__dict__.update({key: value for key, value in vars(model).items() if key.endswith("_")})
    for options in ({}, {"exclude": exclude, "candidates": candidates}, {"exclude_seen": False}):
        got = model.recommend(histories, 7, **options)
        expected = reference.recommend(histories, 7, **options)
        assert_same_ranking(got, expected)
    # Unknown users are folded in on the CPU, then ranked on the device.
    assert_same_ranking(model.recommend(histories.with_users(None), 5), reference.recommend(
        histories.with_users(None), 5))
    assert len(torch_on_cpu) == 4  # every batch of the model went through the torch ranking


def test_a_model_trained_by_the_torch_path_saves_loads_and_serves_on_the_cpu_path(monkeypatch, tmp_path):
    data = contract_dataset()
    _, on_torch = fit_both(ials.ImplicitALS, data, monkeypatch, factors=4, iterations=3)
    on_torch.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m")
    np.testing.assert_array_equal(back.item_factors_, on_torch.item_factors_)
    histories = data.histories([0, 3])
    np.testing.assert_array_equal(back.recommend(histories, 5)[0], on_torch.recommend(histories, 5)[0])


def test_device_names_and_cuda_without_a_gpu():
    data = contract_dataset()
    with pytest.raises(ConfigError, match="device"):
        ease.EASE(device="gpu").fit(data)
    with pytest.raises(ConfigError, match="device"):
        accelerator("tpu")
    assert accelerator("cpu") is None
    if torch.cuda.is_available():
        assert accelerator("auto").type == "cuda"
        return
    assert accelerator("auto") is None
    for model in (ials.ImplicitALS(device="cuda"), ease.EASE(device="cuda")):
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            model.fit(data)
