"""Re-rankers that trade a little relevance for diversity, calibration or novelty at recommendation time.

Each takes the candidate lists a model returned (``items`` (n_users, C), padded with PAD_ITEM = -1, and their
``scores``, -inf for padding), picks ``k`` of them per user and returns ``(items, scores)`` of shape (n_users, k),
padded with -1 / -inf. The returned scores are the ORIGINAL relevance scores of the chosen items (not the
re-ranking objective), so downstream code can still read them as the model's confidence. Results are
deterministic: ties go to the candidate that came first in the input. Repeated candidates in a row count once.

The greedy set re-rankers (MMR, MaxSum, DPP) choose the set step by step; ``order="relevance"`` (their default)
then lists the chosen items by relevance, ``order="greedy"`` in the order they were picked. The set, and so any
set measure such as intra-list diversity, is the same either way; position-weighted accuracy (NDCG) is higher in
relevance order, since the diverse low-relevance picks sink to the tail instead of taking middle slots.

Where relevance is mixed with another term, it is first min-max scaled to [0, 1] per user, because raw model
scores have arbitrary scales (EASE scores are not probabilities) and the knob should mean the same for every model.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from recengine.errors import ConfigError, DataError
from recengine.models.topk import PAD_ITEM

#: Steck (2018) mixes a little of the target distribution into the list's one so that KL stays finite.
CALIBRATION_ALPHA = 0.01
#: Added to the DPP similarity kernel's diagonal. It keeps the kernel positive definite, so a candidate inside the
#: span of the items already picked (a duplicate, an already covered genre combination) costs a large but finite
#: log-determinant penalty and stays selectable; on ml-latest-small 1e-6 and 1e-3 gave the same trade-off.
DPP_JITTER = 1e-3
#: Upper bound on the elements of the per-batch work arrays (users x candidates x features).
_BATCH_ELEMENTS = 4_000_000

#: The list orders of the greedy set re-rankers (see the module docstring).
ORDERS = ("relevance", "greedy")

__all__ = ["ORDERS", "calibrate", "category_cap", "dpp", "max_sum", "mmr", "novelty_boost"]


# ---------------------------------------------------------------- shared plumbing


def _prepare(items: np.ndarray, scores: np.ndarray, k: int, n_items: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate the candidates; return (items int64 with pads clipped to 0, scores float64, valid mask)."""
    items = np.asarray(items)
    scores = np.asarray(scores, dtype=np.float64)
    if items.ndim != 2 or scores.shape != items.shape:
        raise DataError(f"items and scores must be 2-D arrays of the same shape; got {items.shape} and {scores.shape}")
    if not np.issubdtype(items.dtype, np.integer):
        raise DataError("items must hold integer item indices (PAD_ITEM = -1 for padding)")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be a positive integer; got {k!r}")
    if items.size and (items.min() < PAD_ITEM or items.max() >= n_items):
        raise DataError(f"items must lie in [0, {n_items}) or be {PAD_ITEM} for padding; check that the item "
                        "vectors / categories / popularity cover every candidate item")
    valid = (items >= 0) & (scores > -np.inf) & ~np.isnan(scores)
    if items.shape[1] > 1:  # a repeated candidate counts once: keep its first occurrence
        order = np.argsort(items, axis=1, kind="stable")
        ranked = np.take_along_axis(items, order, axis=1)
        repeat = (ranked[:, 1:] == ranked[:, :-1]) & (ranked[:, 1:] >= 0)
        rows = np.nonzero(repeat)[0]
        valid[rows, order[:, 1:][repeat]] = False
    return np.where(items >= 0, items, 0).astype(np.int64), scores, valid


def _scaled_relevance(scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Scores min-max scaled to [0, 1] per row over the valid entries (1 where a row's scores are all equal)."""
    low = np.where(valid, scores, np.inf).min(axis=1, initial=np.inf, keepdims=True)
    high = np.where(valid, scores, -np.inf).max(axis=1, initial=-np.inf, keepdims=True)
    span = high - low
    with np.errstate(invalid="ignore"):
        scaled = np.where(span > 0, (scores - low) / np.where(span > 0, span, 1.0), 1.0)
    return np.where(valid, scaled, -np.inf)


def _output(items: np.ndarray, scores: np.ndarray, picks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gather the picked candidate positions (-1 = none) into padded (items, original scores)."""
    items, scores = np.asarray(items), np.asarray(scores)
    score_dtype = scores.dtype if np.issubdtype(scores.dtype, np.floating) else np.float64
    chosen = picks >= 0
    safe = np.where(chosen, picks, 0)
    out_items = np.where(chosen, np.take_along_axis(items, safe, axis=1), PAD_ITEM).astype(items.dtype)
    out_scores = np.where(chosen, np.take_along_axis(scores, safe, axis=1), -np.inf).astype(score_dtype)
    return out_items, out_scores


def _picks_by_order(objective: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """The positions of the k best valid entries per row by objective (stable: ties keep input order)."""
    keyed = np.where(valid, objective, -np.inf)
    order = np.argsort(-keyed, axis=1, kind="stable")[:, :k]
    picks = np.where(np.take_along_axis(valid, order, axis=1), order, -1)
    if picks.shape[1] < k:
        picks = np.pad(picks, ((0, 0), (0, k - picks.shape[1])), constant_values=-1)
    return picks


def _ordered(picks: np.ndarray, scores: np.ndarray, order: str) -> np.ndarray:
    """The greedy picks ((n_users, k) positions into the candidates, -1 last) in the requested list order: as
    picked, or by original score (ties: the candidate first in the input)."""
    if order == "greedy":
        return picks
    chosen = picks >= 0
    relevance = np.where(chosen, np.take_along_axis(scores, np.where(chosen, picks, 0), axis=1), -np.inf)
    # lexsort's last key is the primary one: score descending, then input position, the padding last.
    by_relevance = np.lexsort((np.where(chosen, picks, np.iinfo(np.int64).max), -relevance, ~chosen), axis=1)
    return np.take_along_axis(picks, by_relevance, axis=1)


def _check_order(order: str) -> str:
    if order not in ORDERS:
        raise ConfigError(f"order must be one of {', '.join(map(repr, ORDERS))}; got {order!r}")
    return order


def _batches(n_users: int, per_user: int):
    size = max(1, _BATCH_ELEMENTS // max(1, per_user))
    for start in range(0, n_users, size):
        yield slice(start, min(n_users, start + size))


def _check_trade_off(value: float, name: str = "lambda_") -> float:
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{name} must lie in [0, 1]; got {value!r}")
    return float(value)


# ---------------------------------------------------------------- MMR


def _unit_rows(vectors: np.ndarray | sp.spmatrix) -> np.ndarray | sp.csr_matrix:
    """Item vectors scaled to unit length (all-zero vectors stay zero: similar to nothing)."""
    if sp.issparse(vectors):
        vectors = sp.csr_matrix(vectors, dtype=np.float64)
        norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
        inverse = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return sp.csr_matrix(sp.diags(inverse) @ vectors)
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2:
        raise DataError("item_vectors must be a 2-D (n_items, d) array or sparse matrix")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _similarity_to(unit, candidates: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Cosine similarity of each user's candidates (b, C) to that user's chosen item (b,)."""
    b, c = candidates.shape
    if sp.issparse(unit):
        left = unit[candidates.ravel()]
        right = unit[np.repeat(chosen, c)]
        return np.asarray(left.multiply(right).sum(axis=1)).reshape(b, c)
    return np.einsum("bcd,bd->bc", unit[candidates], unit[chosen])


def mmr(
    items: np.ndarray, scores: np.ndarray, item_vectors: np.ndarray | sp.spmatrix, k: int, lambda_: float = 0.5,
    order: str = "relevance",
) -> tuple[np.ndarray, np.ndarray]:
    """Maximal marginal relevance: greedily pick argmax lambda_ * relevance - (1 - lambda_) * max cosine
    similarity to the items already picked. lambda_ = 1 keeps the relevance order; smaller is more diverse.

    Relevance is min-max scaled to [0, 1] per user; item_vectors is (n_items, d), dense or sparse (e.g. a
    category matrix). order: "relevance" or "greedy" (see the module docstring). Returns (items, original
    scores), (n_users, k)."""
    lambda_ = _check_trade_off(lambda_)
    # The state is each candidate's largest similarity to the picked items.
    return _greedy_by_similarity(
        items, scores, item_vectors, k, order,
        gain=lambda relevance, penalty, step: lambda_ * relevance - (1.0 - lambda_) * penalty,
        fold=lambda penalty, similarity, step: similarity if step == 0 else np.maximum(penalty, similarity),
        diversifies=lambda_ < 1.0)


# ---------------------------------------------------------------- MaxSum


def max_sum(
    items: np.ndarray, scores: np.ndarray, item_vectors: np.ndarray | sp.spmatrix, k: int, lambda_: float = 0.5,
    order: str = "relevance",
) -> tuple[np.ndarray, np.ndarray]:
    """MaxSum diversification (Gollapudi & Sharma, WWW 2009), greedily: start from the most relevant candidate,
    then pick argmax (1 - lambda_) * relevance + lambda_ * mean cosine distance to the items already picked.

    Where MMR penalizes the largest similarity to any one picked item, the mean distance is each candidate's
    contribution to intra-list diversity (the mean pairwise distance of the list), so the greedy climbs the
    measure itself. lambda_ = 0 keeps the relevance order; larger is more diverse. Distances are 1 - cosine,
    so a featureless (all-zero) item is at distance 1 from everything, as in intra-list diversity. Relevance is
    min-max scaled to [0, 1] per user; item_vectors is (n_items, d), dense or sparse. order: "relevance" or
    "greedy" (see the module docstring). Returns (items, original scores), (n_users, k)."""
    lambda_ = _check_trade_off(lambda_)
    # The state is each candidate's summed similarity to the picked items; nothing picked yet, no distance to
    # weigh: the first pick is the most relevant candidate.
    return _greedy_by_similarity(
        items, scores, item_vectors, k, order,
        gain=lambda relevance, similarity_sum, step: relevance if step == 0 else
        (1.0 - lambda_) * relevance + lambda_ * (1.0 - similarity_sum / step),
        fold=lambda similarity_sum, similarity, step: similarity_sum + similarity,
        diversifies=lambda_ > 0.0)


def _greedy_by_similarity(items: np.ndarray, scores: np.ndarray, item_vectors: np.ndarray | sp.spmatrix, k: int,
                          order: str, gain, fold, diversifies: bool) -> tuple[np.ndarray, np.ndarray]:
    """The greedy of MMR and MaxSum: per step, pick each user's available candidate of largest
    gain(relevance, state, step), then fold the candidates' cosine similarity to the pick into the per-candidate
    state (zeros at first) with fold(state, similarity, step). diversifies False (a knob at its relevance end)
    skips the similarities, which cannot change a pick then."""
    order = _check_order(order)
    unit = _unit_rows(item_vectors)
    safe, raw, valid = _prepare(items, scores, k, unit.shape[0])
    n_users, n_candidates = safe.shape
    picks = np.full((n_users, k), -1, dtype=np.int64)
    width = unit.shape[1] if not sp.issparse(unit) else 1 + unit.nnz // max(1, unit.shape[0])
    for batch in _batches(n_users, n_candidates * width):
        relevance = _scaled_relevance(raw[batch], valid[batch])
        available = valid[batch].copy()
        candidates = safe[batch]
        rows = np.arange(len(candidates))
        state = np.zeros(candidates.shape)
        for step in range(min(k, n_candidates)):
            picked = _pick(np.where(available, gain(relevance, state, step), -np.inf), available, picks[batch], step)
            if picked is None:
                break
            position = picked[0]
            if diversifies and step + 1 < k:
                state = fold(state, _similarity_to(unit, candidates, candidates[rows, position]), step)
    return _output(items, scores, _ordered(picks, raw, order))


def _pick(objective: np.ndarray, available: np.ndarray, picks: np.ndarray, step: int
          ) -> tuple[np.ndarray, np.ndarray] | None:
    """One greedy step of the set re-rankers and calibration: each row's best available candidate (ties to the
    first) becomes its pick number `step` and unavailable; rows with none left keep -1. Returns the chosen
    positions and which rows had one, or None when no row had a candidate left."""
    rows = np.arange(len(objective))
    position = np.argmax(objective, axis=1)
    found = available[rows, position]
    if not found.any():
        return None
    picks[found, step] = position[found]
    available[rows[found], position[found]] = False
    return position, found


# ---------------------------------------------------------------- DPP


def _candidate_kernel(unit, candidates: np.ndarray) -> np.ndarray:
    """Each user's candidate similarity kernel S (b, C, C): cosine similarities off the diagonal, 1 + DPP_JITTER on
    it. A featureless (all-zero) item is similar to nothing but itself, as in MMR and intra-list diversity; S is
    the Gram matrix of the unit vectors plus a non-negative diagonal, so it is positive definite."""
    b, c = candidates.shape
    vectors = unit[candidates.ravel()].toarray().reshape(b, c, -1) if sp.issparse(unit) else unit[candidates]
    kernel = np.einsum("bid,bjd->bij", vectors, vectors)
    diagonal = np.arange(c)
    kernel[:, diagonal, diagonal] = 1.0 + DPP_JITTER
    return kernel


def dpp(
    items: np.ndarray, scores: np.ndarray, item_vectors: np.ndarray | sp.spmatrix, k: int, theta: float = 0.5,
    order: str = "relevance",
) -> tuple[np.ndarray, np.ndarray]:
    """Determinantal point process re-ranking by greedy MAP inference (Chen, Zhang & Zhou, NeurIPS 2018): greedily
    add the candidate that most increases theta * (sum of relevance) + (1 - theta) * log det S_Y, where S_Y is the
    cosine-similarity kernel of the list Y so far (see _candidate_kernel). That is the MAP objective of the DPP
    with kernel L = diag(exp(a r)) S diag(exp(a r)), a = theta / (2 (1 - theta)), up to a positive factor.

    Where MMR penalizes a candidate's largest similarity to any one picked item, the log-determinant gain of a
    candidate is its squared distance to the span of all the picked ones, so redundancy with the whole list
    counts. theta = 1 keeps the relevance order; smaller is more diverse, 0 maximizes the volume alone. Relevance
    is min-max scaled to [0, 1] per user; item_vectors is (n_items, d), dense or sparse. The gains come from an
    incremental Cholesky factorization (the paper's Algorithm 1), O(k C) work per user and step besides the
    kernel. order: "relevance" or "greedy" (see the module docstring). Returns (items, original scores),
    (n_users, k)."""
    theta = _check_trade_off(theta, "theta")
    order = _check_order(order)
    unit = _unit_rows(item_vectors)
    safe, raw, valid = _prepare(items, scores, k, unit.shape[0])
    n_users, n_candidates = safe.shape
    steps = min(k, n_candidates)
    picks = np.full((n_users, k), -1, dtype=np.int64)
    # Per user: the kernel, the candidates' vectors (sparse rows are densified per batch) and the Cholesky rows.
    for batch in _batches(n_users, n_candidates * (n_candidates + unit.shape[1] + steps)):
        # 0 rather than -inf at the padding, which is never available: theta = 0 would turn -inf into NaN.
        relevance = np.where(valid[batch], _scaled_relevance(raw[batch], valid[batch]), 0.0)
        available = valid[batch].copy()
        kernel = _candidate_kernel(unit, safe[batch])
        b = len(kernel)
        rows = np.arange(b)
        # gain[i] = log of candidate i's conditional variance given the picked items, d_i^2 = S_ii - |c_i|^2, where
        # the rows c_i of the Cholesky factor grow by one entry per pick.
        variance = kernel[:, np.arange(n_candidates), np.arange(n_candidates)].copy()
        factor = np.zeros((b, n_candidates, steps))
        for step in range(steps):
            objective = np.where(available, theta * relevance + (1.0 - theta) * np.log(variance), -np.inf)
            picked = _pick(objective, available, picks[batch], step)
            if picked is None:
                break
            position = picked[0]
            if theta < 1.0 and step + 1 < steps:
                picked_row = factor[rows, position, :step]
                entry = (kernel[rows, position] - np.einsum("bct,bt->bc", factor[:, :, :step], picked_row)) \
                    / np.sqrt(variance[rows, position])[:, None]
                factor[:, :, step] = entry
                # The kernel's smallest eigenvalue, at least DPP_JITTER, bounds every conditional variance from
                # below; clipping there only removes round-off.
                variance = np.maximum(variance - entry**2, DPP_JITTER)
    return _output(items, scores, _ordered(picks, raw, order))


# ---------------------------------------------------------------- category cap


@numba.njit(parallel=True, cache=True, nogil=True)
def _cap_rows(items, valid, order, indptr, indices, n_categories, k, cap, picks):  # pragma: no cover - compiled
    n_users, n_candidates = items.shape
    for u in numba.prange(n_users):
        counts = np.zeros(n_categories, dtype=np.int64)
        taken = np.zeros(n_candidates, dtype=np.bool_)
        n_valid = 0
        for position in range(n_candidates):
            n_valid += valid[u, position]
        filled = 0
        # One pass per cap value, each best first over the candidates not yet taken. A pass at limit >= k takes
        # every remaining candidate (no category can hold k picks before the list is full), so the last pass
        # fills the list whenever there are enough candidates.
        for limit in range(cap, max(cap, k) + 1):
            if filled == k or filled == n_valid:
                break
            for j in range(n_candidates):
                position = order[u, j]
                if filled == k or not valid[u, position]:
                    break  # order puts the invalid entries last
                if taken[position]:
                    continue
                item = items[u, position]
                fits = True
                for p in range(indptr[item], indptr[item + 1]):
                    if counts[indices[p]] >= limit:
                        fits = False
                        break
                if fits:
                    for p in range(indptr[item], indptr[item + 1]):
                        counts[indices[p]] += 1
                    picks[u, filled] = position
                    taken[position] = True
                    filled += 1


def category_cap(
    items: np.ndarray, scores: np.ndarray, categories: sp.spmatrix, k: int, max_per_category: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Walk the candidates best first and keep an item unless one of its categories already holds
    max_per_category picks (an item counts toward each of its categories).

    If fewer than k items fit, the cap is relaxed one step at a time: the skipped candidates are walked again,
    best first, under max_per_category + 1, then + 2, and so on until the list is full. Each pass's picks
    follow the previous pass's, so the list is ordered by pass, then by relevance. Filling the leftover slots
    this way keeps them as spread over the categories as the candidates allow, instead of handing them to the
    best skipped candidates, which are the ones from the most crowded categories. Returns (items, original
    scores), (n_users, k)."""
    if isinstance(max_per_category, bool) or not isinstance(max_per_category, int | np.integer) \
            or max_per_category < 1:
        raise ConfigError(f"max_per_category must be a positive integer; got {max_per_category!r}")
    categories = sp.csr_matrix(categories)
    categories.sort_indices()
    safe, raw, valid = _prepare(items, scores, k, categories.shape[0])
    order = np.argsort(-np.where(valid, raw, -np.inf), axis=1, kind="stable")
    picks = np.full((safe.shape[0], k), -1, dtype=np.int64)
    if safe.shape[1]:
        _cap_rows(safe, valid, order, categories.indptr.astype(np.int64), categories.indices.astype(np.int64),
                  categories.shape[1], k, int(max_per_category), picks)
    return _output(items, scores, picks)


# ---------------------------------------------------------------- calibration


def calibrate(
    items: np.ndarray, scores: np.ndarray, categories: sp.spmatrix, history_categories: np.ndarray | sp.spmatrix,
    k: int, lambda_: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated recommendations (Steck, RecSys 2018): greedily add the candidate that maximizes
    (1 - lambda_) * relevance - lambda_ * KL(p || q~) of the list so far plus that candidate.

    p is the user's category distribution (history_categories (n_users, n_cat), rows rescaled to sum to 1;
    an all-zero row means no target, so relevance alone decides); q is the mean of the list items' category
    distributions (an item's categories share its unit mass); q~ = (1 - a) q + a p with a = 0.01. Relevance
    is min-max scaled to [0, 1] per user. lambda_ = 0 keeps the relevance order. Returns (items, original
    scores), (n_users, k)."""
    lambda_ = _check_trade_off(lambda_)
    categories = sp.csr_matrix(categories, dtype=np.float64)
    safe, raw, valid = _prepare(items, scores, k, categories.shape[0])
    n_users, n_candidates = safe.shape
    n_categories = categories.shape[1]
    target = history_categories.toarray() if sp.issparse(history_categories) else np.asarray(history_categories)
    target = target.astype(np.float64)
    if target.shape != (n_users, n_categories) or (target < 0).any():
        raise DataError(f"history_categories must be a non-negative ({n_users}, {n_categories}) matrix: one "
                        "category distribution per user, over the columns of categories")
    mass = target.sum(axis=1, keepdims=True)
    target = np.divide(target, mass, out=np.zeros_like(target), where=mass > 0)
    counts = np.asarray(categories.sum(axis=1)).ravel()
    shares = sp.csr_matrix(sp.diags(np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0))
                           @ categories)
    picks = np.full((n_users, k), -1, dtype=np.int64)
    for batch in _batches(n_users, n_candidates * max(1, n_categories)):
        relevance = _scaled_relevance(raw[batch], valid[batch])
        available = valid[batch].copy()
        p = target[batch]
        b = len(p)
        rows = np.arange(b)
        candidate_shares = shares[safe[batch].ravel()].toarray().reshape(b, n_candidates, n_categories)
        p_log_p = np.einsum("bg,bg->b", p, np.log(np.where(p > 0, p, 1.0)))
        picked_sum = np.zeros((b, n_categories))
        for step in range(min(k, n_candidates)):
            q = (picked_sum[:, None, :] + candidate_shares) / (step + 1)
            q_tilde = (1.0 - CALIBRATION_ALPHA) * q + CALIBRATION_ALPHA * p[:, None, :]
            # KL(p || q~) = sum p log p - sum p log q~; q~ >= a p > 0 wherever p > 0, 0 * log(tiny) = 0 elsewhere
            kl = p_log_p[:, None] - np.einsum("bg,bcg->bc", p, np.log(np.maximum(q_tilde, 1e-300)))
            objective = np.where(available, (1.0 - lambda_) * relevance - lambda_ * kl, -np.inf)
            picked = _pick(objective, available, picks[batch], step)
            if picked is None:
                break
            position, found = picked
            picked_sum[found] += candidate_shares[rows[found], position[found]]
    return _output(items, scores, picks)


# ---------------------------------------------------------------- novelty


def novelty_boost(
    items: np.ndarray, scores: np.ndarray, popularity: np.ndarray, k: int, weight: float = 0.1,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-sort by relevance + weight * novelty, where relevance is min-max scaled to [0, 1] per user and
    novelty is the self-information -log2(popularity share) scaled to [0, 1] over the catalog (an unseen item
    counts as seen once). weight = 0 keeps the relevance order. Returns (items, original scores), (n_users, k)."""
    popularity = np.asarray(popularity, dtype=np.float64)
    if popularity.ndim != 1 or (popularity < 0).any() or not np.isfinite(popularity).all():
        raise DataError("popularity must be a 1-D array of non-negative counts, one per item")
    if not np.isfinite(weight) or weight < 0:
        raise ConfigError(f"weight must be a finite number >= 0; got {weight!r}")
    safe, raw, valid = _prepare(items, scores, k, len(popularity))
    counts = np.maximum(popularity, 1.0)
    information = -np.log2(counts / counts.sum())
    span = information.max(initial=0.0) - information.min(initial=0.0)
    novelty = (information - information.min(initial=0.0)) / span if span > 0 else np.zeros_like(information)
    objective = _scaled_relevance(raw, valid) + float(weight) * novelty[safe]
    return _output(items, scores, _picks_by_order(objective, valid, k))
