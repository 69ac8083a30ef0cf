"""Shared parts of the neighbourhood and item-item models.

* interaction weighting (TF-IDF, BM25) of a documents x terms matrix, fitted on training data and applied to
  training and query rows alike;
* pairwise similarity formulas (cosine, asymmetric cosine, Jaccard/Tanimoto, Pearson) from dot products;
* a blocked, top-N sparse similarity matrix between the rows of two sparse matrices, so that tens of thousands
  of items or users stay in memory;
* ``ItemItemModel``: the base of models that score a history as ``history_matrix @ item_weights_``
  (ItemKNN, RP3beta, EASE), with ``similar_items`` and ``explain`` shared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from recengine.data.histories import Histories
from recengine.errors import DataError
from recengine.models.base import Explanation, Recommender
from recengine.models.topk import keep_only, topk

WEIGHTINGS = ("none", "tfidf", "bm25")
SIMILARITIES = ("cosine", "asymmetric", "jaccard", "pearson")
#: Floats of one dense similarity block (float64): 2**23 = 64 MiB.
BLOCK_FLOATS = 1 << 23


# --------------------------------------------------------------------------------------------- weighting
@dataclass(frozen=True)
class TermWeights:
    """What weighting learns from training documents: per-term idf and the mean document length."""

    idf: np.ndarray
    avg_length: float


def fit_weighting(docs: sp.csr_matrix, weighting: str) -> TermWeights:
    """Learn per-term (column) idf and the mean length of the non-empty rows of a documents x terms matrix.

    tfidf: idf = ln((1 + N) / (1 + df)) + 1 (the smoothed form, always >= 1);
    bm25: idf = ln(1 + (N - df + 0.5) / (df + 0.5)) (Robertson/Lucene, always > 0).
    N is the number of documents, df the number of documents containing the term.
    """
    docs = sp.csr_matrix(docs)
    n_docs = docs.shape[0]
    df = np.bincount(docs.indices, minlength=docs.shape[1]).astype(np.float64)
    if weighting == "tfidf":
        idf = np.log((1.0 + n_docs) / (1.0 + df)) + 1.0
    elif weighting == "bm25":
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
    elif weighting == "none":
        idf = np.ones(docs.shape[1])
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    lengths = np.asarray(docs.sum(axis=1)).ravel()
    nonempty = np.diff(docs.indptr) > 0
    avg_length = float(lengths[nonempty].mean()) if nonempty.any() else 1.0
    return TermWeights(idf, avg_length)


def apply_weighting(
    docs: sp.csr_matrix, weighting: str, weights: TermWeights, k1: float = 1.2, b: float = 0.75,
) -> sp.csr_matrix:
    """Weighted copy of a documents x terms matrix (float64).

    tfidf: x * idf[term]; bm25: x (k1 + 1) / (x + k1 (1 - b + b len / avg_len)) * idf[term], where len is the
    row sum of the document's raw values.
    """
    docs = sp.csr_matrix(docs, dtype=np.float64, copy=True)
    if weighting == "none":
        return docs
    if docs.nnz and docs.data.min() < 0:
        raise DataError(f"{weighting} weighting needs non-negative interaction weights; use weighting='none' "
                        "or values='binary'")
    terms = docs.indices
    if weighting == "tfidf":
        docs.data *= weights.idf[terms]
        return docs
    lengths = np.asarray(docs.sum(axis=1)).ravel()
    norm = (1.0 - b) + b * lengths / weights.avg_length
    rows = np.repeat(np.arange(docs.shape[0]), np.diff(docs.indptr))
    docs.data = docs.data * (k1 + 1.0) / (docs.data + k1 * norm[rows]) * weights.idf[terms]
    return docs


def centre_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Subtract from every stored entry the mean of its row's stored entries."""
    m = sp.csr_matrix(m, dtype=np.float64, copy=True)
    counts = np.diff(m.indptr)
    sums = np.add.reduceat(m.data, m.indptr[:-1][counts > 0]) if m.nnz else np.zeros(0)
    means = np.zeros(m.shape[0])
    means[counts > 0] = sums / counts[counts > 0]
    m.data -= np.repeat(means, counts)
    m.eliminate_zeros()
    return m


# -------------------------------------------------------------------------------------------- similarity
@dataclass(frozen=True)
class RowStats:
    """Per-row statistics the similarity formulas need: sum of squares and plain sum of stored values."""

    sq: np.ndarray
    total: np.ndarray

    @classmethod
    def of(cls, m: sp.csr_matrix) -> RowStats:
        m = sp.csr_matrix(m)
        sq = np.asarray(m.multiply(m).sum(axis=1), dtype=np.float64).ravel()
        total = np.asarray(m.sum(axis=1), dtype=np.float64).ravel()
        return cls(sq, total)


def pairwise_similarity(
    dot: np.ndarray, rows: RowStats, cols: RowStats, kind: str, *, shrink: float = 0.0, alpha: float = 0.5,
    n_dims: int = 1,
) -> np.ndarray:
    """Similarities from dot products ``dot[a, b] = <r_a, c_b>`` (float64, modified in place and returned).

    cosine: dot / (|r| |c| + shrink); asymmetric: dot / (|r|^2alpha |c|^2(1-alpha) + shrink), where rows are
    the targets (alpha = 0.5 is cosine); jaccard (Tanimoto on weights): dot / (|r|^2 + |c|^2 - dot + shrink);
    pearson: correlation over all n_dims coordinates (absent entries count as 0),
    (dot - s_r s_c / n) / (sqrt(var_r var_c) + shrink). Zero denominators give similarity 0.
    """
    if kind == "cosine":
        denom = np.sqrt(rows.sq)[:, None] * np.sqrt(cols.sq)[None, :]
    elif kind == "asymmetric":
        denom = np.power(rows.sq, alpha)[:, None] * np.power(cols.sq, 1.0 - alpha)[None, :]
    elif kind == "jaccard":
        denom = rows.sq[:, None] + cols.sq[None, :] - dot
    elif kind == "pearson":
        dot -= np.outer(rows.total, cols.total) / n_dims
        var_r = np.maximum(rows.sq - rows.total ** 2 / n_dims, 0.0)
        var_c = np.maximum(cols.sq - cols.total ** 2 / n_dims, 0.0)
        denom = np.sqrt(var_r)[:, None] * np.sqrt(var_c)[None, :]
    else:
        raise ValueError(f"unknown similarity {kind!r}")
    # An empty vector has a zero denominator: its similarity is 0 whatever the shrinkage.
    empty = denom <= 0
    denom += shrink
    np.divide(dot, denom, out=dot, where=~empty)
    dot[empty] = 0.0
    return dot


def top_n_similarity(
    targets: sp.csr_matrix,
    neighbours_t: sp.csr_matrix,
    target_stats: RowStats,
    neighbour_stats: RowStats,
    kind: str,
    n_neighbors: int,
    *,
    shrink: float = 0.0,
    alpha: float = 0.5,
    exclude: np.ndarray | None = None,
) -> sp.csr_matrix:
    """(n_targets, n_neighbours) CSR float32: per target row, its n_neighbors most similar neighbour rows.

    targets is (n_targets, d); neighbours_t is the neighbours' matrix transposed, (d, n_neighbours), in CSR so
    that each block is one sparse product. Rows are processed in blocks of bounded size; only positive
    similarities are kept (a negative neighbour would push an item down for liking something unrelated).
    exclude[r] is a neighbour column never kept for target r (its own index), or -1.
    """
    targets = sp.csr_matrix(targets)
    n_targets, n_nb = targets.shape[0], neighbours_t.shape[1]
    step = max(1, BLOCK_FLOATS // max(1, n_nb))
    rows_out, cols_out, vals_out = [], [], []
    for start in range(0, n_targets, step):
        stop = min(start + step, n_targets)
        dot = (targets[start:stop] @ neighbours_t).toarray().astype(np.float64, copy=False)
        block_stats = RowStats(target_stats.sq[start:stop], target_stats.total[start:stop])
        sim = pairwise_similarity(dot, block_stats, neighbour_stats, kind, shrink=shrink, alpha=alpha,
                                  n_dims=targets.shape[1])
        if exclude is not None:
            own = exclude[start:stop]
            hit = np.flatnonzero(own >= 0)
            sim[hit, own[hit]] = 0.0
        rows, cols, vals = top_n_positive(sim, n_neighbors)
        rows_out.append(rows + start)
        cols_out.append(cols)
        vals_out.append(vals)
    return assemble(rows_out, cols_out, vals_out, (n_targets, n_nb))


def top_n_positive(block: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The n largest positive entries of each row of a block, as COO: rows, cols (int64), values (float32)."""
    keep = min(n, block.shape[1])
    if keep < block.shape[1]:
        cols = np.argpartition(-block, keep - 1, axis=1)[:, :keep]
    else:
        cols = np.broadcast_to(np.arange(block.shape[1]), block.shape)
    vals = np.take_along_axis(block, cols, axis=1)
    positive = vals > 0
    return (np.nonzero(positive)[0].astype(np.int64), cols[positive].astype(np.int64),
            vals[positive].astype(np.float32))


def assemble(rows: list[np.ndarray], cols: list[np.ndarray], vals: list[np.ndarray],
             shape: tuple[int, int]) -> sp.csr_matrix:
    """A float32 CSR matrix from lists of COO blocks."""
    if not rows:
        return sp.csr_matrix(shape, dtype=np.float32)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=shape,
                         dtype=np.float32)


def normalize_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Scale each row of a non-negative CSR matrix to sum to 1 (empty rows stay empty)."""
    m = sp.csr_matrix(m, copy=True)
    sums = np.asarray(m.sum(axis=1)).ravel()
    scale = np.divide(1.0, sums, out=np.zeros_like(sums, dtype=np.float64), where=sums > 0)
    m.data = (m.data * np.repeat(scale, np.diff(m.indptr))).astype(m.dtype)
    return m


# ----------------------------------------------------------------------------------------- item-item base
class ItemItemModel(Recommender):
    """Base of models whose scores are ``histories.matrix(values) @ item_weights_``.

    item_weights_ is an (n_items, n_items) float32 matrix, CSR or dense: row i holds what having item i in
    the history adds to every item's score. Subclasses set ``_neighbours_along`` to the side that lists an
    item's neighbours for similar_items: "column" (the items that score it) or "row" (the items it scores).
    """

    _neighbours_along: ClassVar[str] = "column"
    values: str
    history_half_life: float

    def _history_matrix(self, histories: Histories) -> sp.csr_matrix:
        """The histories as model input; with history_half_life > 0 recent items weigh more (the latest
        counts 1, the one history_half_life interactions earlier 1/2), which follows a drifting taste."""
        return histories.matrix(self.values, half_life=self.history_half_life)

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        out = self._history_matrix(histories) @ self.item_weights_
        out = out.toarray() if sp.issparse(out) else np.asarray(out)
        return out.astype(np.float32, copy=False)

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items with the largest weights next to each given item (itself excluded), best first.

        Sparse models only return stored neighbours (the rest padded with item -1, score -inf).
        """
        self._check_fitted()
        items = self._check_items(items)
        weights = self.item_weights_
        if self._neighbours_along == "column":
            weights = weights.T.tocsr() if sp.issparse(weights) else weights.T
        out_items = np.empty((len(items), k), dtype=np.int32)
        out_scores = np.empty((len(items), k), dtype=np.float32)
        step = max(1, BLOCK_FLOATS // max(1, self.n_items_))
        for start in range(0, len(items), step):
            block = items[start:start + step]
            rows = weights[block]
            dense = np.array(rows.toarray() if sp.issparse(rows) else rows, dtype=np.float32)
            if sp.issparse(rows):
                keep_only(dense, rows)
            dense[np.arange(len(block)), block] = -np.inf
            out_items[start:start + step], out_scores[start:start + step] = topk(dense, k)
        return out_items, out_scores

    def explain(self, history: Histories, item: int, top: int = 5) -> Explanation:
        """The history items with the largest contributions weight x item_weights_[history_item, item].

        All contributions (not only the top ones shown) sum to the item's score.
        """
        self._check_fitted(history)
        if len(history) != 1:
            raise DataError(f"explain takes one history, got {len(history)}")
        item = int(self._check_items(np.array([item]))[0])
        row = self._history_matrix(history)
        hist_items, hist_weights = row.indices, row.data.astype(np.float64)
        weights = self.item_weights_
        column = weights[hist_items][:, [item]]
        column = column.toarray().ravel() if sp.issparse(column) else np.asarray(column).ravel()
        contrib = hist_weights * column.astype(np.float64)
        order = np.argsort(-contrib, kind="stable")
        order = order[contrib[order] != 0][:top]
        return Explanation(item=item, score=float(contrib.sum()),
                           contributions=[(int(hist_items[o]), float(contrib[o])) for o in order])
