"""Metrics computed from top-K lists, vectorized over all users at once.

Ranking metrics take ``items``, an (n_users, K) int array of ranked internal item indices padded
with -1 (as ``Recommender.recommend`` returns), and ``truth``, an (n_users, n_items) sparse matrix whose
stored entries are the relevant items of each row. They return one value per user (NaN for a user without
relevant items), so that confidence intervals and paired tests can be computed from them. Lists are assumed
to hold distinct items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata

from recengine.errors import ConfigError, DataError

__all__ = [
    "RANKING_METRICS", "auc", "average_popularity", "catalog_coverage", "gini_index", "hit_matrix", "hit_rate_at_k",
    "intra_list_diversity", "log_loss", "mae", "map_at_k", "mrr_at_k", "ndcg_at_k", "novelty", "precision_at_k",
    "rating_errors", "ranking_metrics", "recall_at_k", "rmse",
]

#: Per-user ranking metrics by report name.
RANKING_METRICS = ("recall", "precision", "ndcg", "map", "hr", "mrr")


# ------------------------------------------------------------------------------------------------ hits
def _check_lists(items: np.ndarray, n_items: int | None = None) -> np.ndarray:
    items = np.asarray(items)
    if items.ndim != 2 or not np.issubdtype(items.dtype, np.integer):
        raise DataError("recommended items must be a 2-D integer array (n_users, K), padded with -1")
    if n_items is not None and items.size and items.max() >= n_items:
        raise DataError(f"recommended item {int(items.max())} is outside the catalog of {n_items} items")
    return items


def _truth_csr(truth: sp.spmatrix, n_rows: int) -> sp.csr_matrix:
    if not sp.issparse(truth):
        raise DataError("truth must be a scipy sparse matrix (n_users, n_items)")
    truth = sp.csr_matrix(truth, copy=True)
    if truth.shape[0] != n_rows:
        raise DataError(f"truth has {truth.shape[0]} rows but there are {n_rows} recommendation lists")
    truth.sum_duplicates()  # also sorts the indices, which the key search below needs
    return truth


def hit_matrix(items: np.ndarray, truth: sp.spmatrix) -> np.ndarray:
    """Boolean (n_users, K): whether the item at each rank is relevant. Padding (-1) is never a hit."""
    truth = _truth_csr(truth, len(_check_lists(items)))
    return _hits(np.asarray(items), truth)


def _hits(items: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    n_rows, n_items = truth.shape
    # One sorted key per relevant (row, item); a recommended (row, item) is a hit iff its key is among them.
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(truth.indptr))
    relevant = rows * n_items + truth.indices
    keys = np.arange(n_rows, dtype=np.int64)[:, None] * n_items + items
    if len(relevant) == 0:
        return np.zeros(items.shape, dtype=bool)
    pos = np.searchsorted(relevant, keys).clip(max=len(relevant) - 1)
    return (relevant[pos] == keys) & (items >= 0)


def _prepare(items: np.ndarray, truth: sp.spmatrix, k: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    items = _check_lists(items)
    truth = _truth_csr(truth, len(items))
    k = items.shape[1] if k is None else int(k)
    if k < 1 or k > items.shape[1]:
        raise ConfigError(f"k must be in [1, {items.shape[1]}] for lists of length {items.shape[1]}, got {k}")
    return _hits(items[:, :k], truth), np.diff(truth.indptr).astype(np.int64), k


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def _divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (users without relevant items)."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _from_hits(name: str, hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """One per-user metric at cut-off k from the hit matrix (whose width is >= k)."""
    h = hits[:, :k]
    n_hits = h.sum(axis=1).astype(np.float64)
    capped = np.minimum(k, n_relevant)
    no_relevant = n_relevant == 0
    if name == "recall":
        return _divide(n_hits, capped)
    if name == "precision":
        return np.where(no_relevant, np.nan, n_hits / k)
    if name == "ndcg":
        discounts = _discounts(k)
        ideal = np.concatenate([[0.0], np.cumsum(discounts)])[capped]
        return _divide(h @ discounts, ideal)
    if name == "map":
        precision_at_rank = np.cumsum(h, axis=1) / np.arange(1, k + 1)
        return _divide((precision_at_rank * h).sum(axis=1), capped)
    if name == "hr":
        return np.where(no_relevant, np.nan, (n_hits > 0).astype(np.float64))
    if name == "mrr":
        first = h.argmax(axis=1)
        rr = np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0)
        return np.where(no_relevant, np.nan, rr)
    raise ConfigError(f"unknown ranking metric {name!r}; available: {', '.join(RANKING_METRICS)}")


def recall_at_k(items: np.ndarray, truth: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Hits in the top k / min(k, |relevant|), per user."""
    return _from_hits("recall", *_prepare(items, truth, k))


def precision_at_k(items: np.ndarray, truth: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Hits in the top k / k, per user (short lists count their padding as misses)."""
    return _from_hits("precision", *_prepare(items, truth, k))


def ndcg_at_k(items: np.ndarray, truth: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Binary-gain DCG with log2 discount over the ideal DCG of min(k, |relevant|) hits, per user."""
    return _from_hits("ndcg", *_prepare(items, truth, k))


def map_at_k(items: np.ndarray, truth: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Average precision at k (sum of precision at each hit rank / min(k, |relevant|)), per user."""
    return _from_hits("map", *_prepare(items, truth, k))


def hit_rate_at_k(items: np.ndarray, truth: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """1 if any relevant item is in the top k, else 0, per user."""
    return _from_hits("hr", *_prepare(items, truth, k))


def mrr_at_k(items: np.ndarray, truth: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """1 / rank of the first relevant item in the top k (0 if none), per user."""
    return _from_hits("mrr", *_prepare(items, truth, k))


def ranking_metrics(
    items: np.ndarray,
    truth: sp.spmatrix,
    ks: Iterable[int] = (10,),
    metrics: Sequence[str] = RANKING_METRICS,
) -> dict[str, np.ndarray]:
    """Every requested metric at every cut-off, from one hit matrix: {"ndcg@10": per-user array, ...}."""
    ks = sorted({int(k) for k in ks})
    unknown = [m for m in metrics if m not in RANKING_METRICS]
    if unknown:
        raise ConfigError(f"unknown ranking metric(s) {unknown}; available: {', '.join(RANKING_METRICS)}")
    if not ks:
        raise ConfigError("give at least one cut-off k")
    hits, n_relevant, _ = _prepare(items, truth, max(ks))
    return {f"{m}@{k}": _from_hits(m, hits, n_relevant, k) for k in ks for m in metrics}


# -------------------------------------------------------------------------------------- beyond accuracy
def _valid(items: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and item of every non-padding entry of the lists."""
    items = _check_lists(items, n_items)
    mask = items >= 0
    return np.nonzero(mask)[0], items[mask].astype(np.int64)


def catalog_coverage(items: np.ndarray, n_items: int) -> float:
    """Share of the catalog that appears in at least one list."""
    if n_items < 1:
        raise DataError("catalog_coverage needs a catalog of at least one item")
    _, recommended = _valid(items, n_items)
    return float(len(np.unique(recommended)) / n_items)


def intra_list_diversity(items: np.ndarray, item_features: np.ndarray | sp.spmatrix) -> np.ndarray:
    """Mean pairwise cosine distance (1 - cosine) between the items of each list, per user; NaN for lists with
    fewer than two items. Items whose feature vector is all zero count as dissimilar to everything.

    Vectorized through sum_{i<j} cos(v_i, v_j) = (|sum_i v_i|^2 - sum_i |v_i|^2) / 2 for unit-length v_i."""
    n_items = item_features.shape[0]
    rows, recommended = _valid(items, n_items)
    features = sp.csr_matrix(item_features, dtype=np.float64)
    norms = np.sqrt(np.asarray(features.multiply(features).sum(axis=1)).ravel())
    unit = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ features
    n_rows = len(items)
    selection = sp.csr_matrix((np.ones(len(rows)), (rows, recommended)), shape=(n_rows, n_items))
    summed = selection @ unit
    squared_sum = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
    self_similarity = selection @ (norms > 0).astype(np.float64)  # |v_i|^2 is 1, or 0 for featureless items
    length = np.bincount(rows, minlength=n_rows).astype(np.float64)
    pairs = length * (length - 1) / 2
    similarity = (squared_sum - self_similarity) / 2
    return 1.0 - _divide(similarity, pairs)


def _check_popularity(popularity: np.ndarray) -> np.ndarray:
    popularity = np.asarray(popularity, dtype=np.float64)
    if popularity.ndim != 1 or (popularity < 0).any():
        raise DataError("popularity must be a 1-D array of non-negative counts, one per item")
    return popularity


def novelty(items: np.ndarray, popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Mean self-information -log2(popularity[i] / n_users) of each list's items, per user (NaN for empty
    lists). popularity counts the training users of each item; an item never seen in training counts as seen
    once, to keep its information finite."""
    popularity = _check_popularity(popularity)
    if n_users < 1:
        raise DataError("novelty needs the number of training users (>= 1)")
    rows, recommended = _valid(items, len(popularity))
    information = -np.log2(np.maximum(popularity[recommended], 1.0) / n_users)
    total = np.bincount(rows, weights=information, minlength=len(items))
    return _divide(total, np.bincount(rows, minlength=len(items)).astype(np.float64))


def average_popularity(items: np.ndarray, popularity: np.ndarray) -> np.ndarray:
    """Average popularity of each list's items (ARP), per user; NaN for empty lists."""
    popularity = _check_popularity(popularity)
    rows, recommended = _valid(items, len(popularity))
    total = np.bincount(rows, weights=popularity[recommended], minlength=len(items))
    return _divide(total, np.bincount(rows, minlength=len(items)).astype(np.float64))


def gini_index(items: np.ndarray, n_items: int) -> float:
    """Gini coefficient of how often each catalog item is recommended: 0 = all items equally often,
    towards 1 = a few items take every slot."""
    _, recommended = _valid(items, n_items)
    counts = np.sort(np.bincount(recommended, minlength=n_items)).astype(np.float64)
    if counts.sum() == 0:
        return float("nan")
    rank = np.arange(1, n_items + 1)
    return float(((2 * rank - n_items - 1) * counts).sum() / (n_items * counts.sum()))


# ------------------------------------------------------------------------------------------------- ratings
def _errors(predicted: np.ndarray | sp.spmatrix, actual: np.ndarray | sp.spmatrix) -> np.ndarray:
    """predicted - actual over aligned values: two arrays, or two sparse matrices with the same entries."""
    if sp.issparse(predicted) != sp.issparse(actual):
        raise DataError("predicted and true ratings must both be arrays or both be sparse matrices")
    if sp.issparse(predicted):
        p, a = sp.csr_matrix(predicted), sp.csr_matrix(actual)
        same = np.array_equal(p.indptr, a.indptr) and np.array_equal(p.indices, a.indices)
        if p.shape != a.shape or not same:
            raise DataError("predicted and true rating matrices must have the same stored entries")
        predicted, actual = p.data, a.data
    predicted, actual = np.asarray(predicted, np.float64).ravel(), np.asarray(actual, np.float64).ravel()
    if predicted.shape != actual.shape:
        raise DataError(f"{len(predicted)} predicted values for {len(actual)} true values")
    if len(actual) == 0:
        raise DataError("no ratings to compare")
    return predicted - actual


def rmse(predicted: np.ndarray | sp.spmatrix, actual: np.ndarray | sp.spmatrix) -> float:
    """Root mean squared error over all (user, item) entries."""
    return float(np.sqrt(np.mean(_errors(predicted, actual) ** 2)))


def mae(predicted: np.ndarray | sp.spmatrix, actual: np.ndarray | sp.spmatrix) -> float:
    """Mean absolute error over all (user, item) entries."""
    return float(np.mean(np.abs(_errors(predicted, actual))))


def rating_errors(predicted: np.ndarray | sp.spmatrix, actual: np.ndarray | sp.spmatrix) -> np.ndarray:
    """Per-entry signed errors predicted - actual (for intervals and paired tests on RMSE/MAE)."""
    return _errors(predicted, actual)


# ------------------------------------------------------------------------------------------- click models
def _labelled(labels: np.ndarray, values: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    labels, values = np.asarray(labels, dtype=np.float64).ravel(), np.asarray(values, dtype=np.float64).ravel()
    if labels.shape != values.shape:
        raise DataError(f"{len(labels)} labels for {len(values)} {what}")
    if not np.isin(labels, (0.0, 1.0)).all():
        raise DataError("labels must be 0 or 1")
    if not np.isfinite(values).all():
        raise DataError(f"{what} must be finite")
    return labels, values


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: the probability that a random positive outscores a random negative, ties
    counting half (the Mann-Whitney statistic from the ranks of the scores)."""
    labels, scores = _labelled(labels, scores, "scores")
    positive = labels == 1.0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise DataError(f"auc needs positives and negatives, got {n_pos} and {n_neg}")
    return float((rankdata(scores)[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probabilities: np.ndarray, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy of predicted click probabilities (clipped to [eps, 1 - eps]), natural log."""
    labels, p = _labelled(labels, probabilities, "probabilities")
    if len(labels) == 0:
        raise DataError("log_loss needs at least one labelled prediction")
    if ((p < 0) | (p > 1)).any():
        raise DataError("probabilities must lie in [0, 1]; pass sigmoid(logits) for a model's scores")
    p = np.clip(p, eps, 1 - eps)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p)))
