"""ContentKNN: scores from item text embeddings and attributes, so that items nobody has touched are scored."""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.embeddings import ENCODERS, resolve_encoder, text_embeddings
from recengine.data.histories import Histories
from recengine.data.text import TEXT_FIELDS, item_documents, l2_normalize_rows
from recengine.errors import DataError
from recengine.models._similarity import BLOCK_FLOATS, assemble, top_n_positive
from recengine.models.base import Explanation, Interval, Options, Recommender
from recengine.models.topk import topk

_NO_FEATURES = "content needs item features (title, genres, tags or text)"
#: List-valued item features whose values an explanation names as shared ("Sci-Fi", "space opera").
_NAMED_FIELDS = ("genres", "categories", "attributes", "tags")


class ContentKNN(Recommender):
    """A user's taste is the recency-weighted sum of the content vectors of their history items; an item's
    score is its similarity to that taste: ``score = (H @ V) @ V.T`` with H = histories.matrix(values,
    history_half_life), less each history item's similarity to itself (an item does not recommend itself).

    An item's content vector V[i] is the text embedding of its document (title, genres, categories, tags, text,
    description; ``recengine.data.embeddings.text_embeddings`` with text_encoder "minilm", "tfidf" or "auto")
    next to its one-hot genres/categories (Dataset.category_matrix), scaled so that the attribute part has
    length attribute_weight against a unit-length text part; the whole vector is L2-normalized, so V V^T holds
    cosine similarities. Interactions play no part in V: new items are scored as soon as they have features.

    neighbors > 0 keeps, for every scored item, only its `neighbors` most similar (positive) items:
    ``score = H @ S`` with S the pruned cosine matrix, which drops the weak similarities that add up to noise
    over a long history. neighbors = 0 uses every item.
    values: "binary" or "weight" — which interaction values scoring reads; history_half_life > 0 weighs recent
    history items more (the latest counts 1, the one history_half_life interactions earlier 1/2).
    """

    name = "content"
    requires_item_features: ClassVar[bool] = True
    parameter_constraints = {
        "text_encoder": Options(ENCODERS),
        "attribute_weight": Interval(float, 0),
        "neighbors": Interval(int, 0),
        "values": Options(("binary", "weight")),
        "history_half_life": Interval(float, 0),
    }
    search_space = {
        "text_encoder": ("cat", ["minilm", "tfidf"]),
        "attribute_weight": ("float", 0.0, 4.0),
        "neighbors": ("cat", [0, 20, 50, 100, 200, 500, 1000]),
        "history_half_life": ("cat", [0.0, 2.0, 5.0, 10.0, 20.0, 50.0]),
    }

    def __init__(
        self,
        text_encoder: str = "auto",
        attribute_weight: float = 0.5,
        neighbors: int = 100,
        values: str = "binary",
        history_half_life: float = 5.0,
    ):
        self.text_encoder = text_encoder
        self.attribute_weight = attribute_weight
        self.neighbors = neighbors
        self.values = values
        self.history_half_life = history_half_life

    # ------------------------------------------------------------------------------------------- fitting
    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        features = dataset.item_features
        if features is None or not any(f in features.columns for f in (*TEXT_FIELDS, "attributes")):
            raise DataError(f"{_NO_FEATURES}; build the Dataset with item_features (e.g. a MovieLens reader)")
        self.text_encoder_ = resolve_encoder(self.text_encoder)
        text = text_embeddings(item_documents(features), self.text_encoder_)
        categories = dataset.category_matrix()
        if categories is None or self.attribute_weight == 0:
            categories = sp.csr_matrix((dataset.n_items, 0), dtype=np.float32)
        attributes = l2_normalize_rows(categories) * float(self.attribute_weight)
        # Scale each row of [text | attributes] to unit length; the parts stay apart (text dense, attributes
        # sparse) so that a catalogue with thousands of categories does not become a dense matrix.
        norms = np.sqrt((text.astype(np.float64) ** 2).sum(axis=1) + attributes.multiply(attributes).sum(axis=1).A1)
        if not (norms > 0).any():
            raise DataError(f"{_NO_FEATURES}; every item's features are empty here")
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        self.text_vectors_ = (text * scale[:, None]).astype(np.float32)
        self.attribute_vectors_ = sp.csr_matrix(sp.diags(scale) @ attributes, dtype=np.float32)
        self.item_terms_, self.term_names_ = _named_terms(features)
        self.n_items_ = dataset.n_items
        if self.neighbors:
            self.item_weights_ = self._pruned_similarity(int(self.neighbors))
        return self

    def _similarity(self, items: np.ndarray) -> np.ndarray:
        """(len(items), n_items) float32 cosine similarities of the given items to every item."""
        text = self.text_vectors_[items] @ self.text_vectors_.T
        attributes = (self.attribute_vectors_[items] @ self.attribute_vectors_.T).toarray()
        return (text + attributes).astype(np.float32, copy=False)

    def _pruned_similarity(self, n: int) -> sp.csr_matrix:
        """S[i, j]: the cosine of items i and j for the n items i most similar to j (positive only), else 0."""
        step = max(1, BLOCK_FLOATS // max(1, self.n_items_))
        rows_out, cols_out, vals_out = [], [], []
        for start in range(0, self.n_items_, step):
            block = np.arange(start, min(start + step, self.n_items_))
            sim = self._similarity(block)
            sim[np.arange(len(block)), block] = 0.0
            rows, cols, vals = top_n_positive(sim, n)
            rows_out.append(rows + start)
            cols_out.append(cols)
            vals_out.append(vals)
        # Rows of the blocks are the scored items and columns their neighbours: S is the transpose.
        nearest = assemble(rows_out, cols_out, vals_out, (self.n_items_, self.n_items_))
        similarity = nearest.T.tocsr()
        similarity.sort_indices()
        return similarity

    # ------------------------------------------------------------------------------------------- scoring
    def _history_matrix(self, histories: Histories) -> sp.csr_matrix:
        return histories.matrix(self.values, half_life=self.history_half_life)

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        h = self._history_matrix(histories)
        if self.neighbors:
            return (h @ self.item_weights_).toarray().astype(np.float32, copy=False)
        taste_text = np.asarray(h @ self.text_vectors_)
        taste_attributes = (h @ self.attribute_vectors_).toarray()
        scores = taste_text @ self.text_vectors_.T + (self.attribute_vectors_ @ taste_attributes.T).T
        # Take out each history item's similarity to itself, as the pruned matrix (zero diagonal) does.
        rows = np.repeat(np.arange(h.shape[0]), np.diff(h.indptr))
        scores[rows, h.indices] -= h.data * self._self_similarity()[h.indices]
        return scores.astype(np.float32, copy=False)

    def _self_similarity(self) -> np.ndarray:
        """|V[i]|^2 per item: 1, or 0 for an item without features."""
        return (self.text_vectors_ ** 2).sum(axis=1) + self.attribute_vectors_.multiply(
            self.attribute_vectors_).sum(axis=1).A1

    def _weights_between(self, history_items: np.ndarray, item: int) -> np.ndarray:
        """What one unit of each history item adds to the score of `item` (float64)."""
        if self.neighbors:
            column = self.item_weights_[history_items][:, [item]]
            return column.toarray().ravel().astype(np.float64)
        weights = self._similarity(np.array([item]))[0, history_items].astype(np.float64)
        weights[history_items == item] = 0.0
        return weights

    # ------------------------------------------------------------------------------------- similar, why
    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k items with the most similar content (cosine of the item vectors; itself excluded), best first.

        Unaffected by `neighbors`: pruning only decides which similarities add up in a score.
        """
        self._check_fitted()
        items = self._check_items(items)
        out_items = np.empty((len(items), k), dtype=np.int32)
        out_scores = np.empty((len(items), k), dtype=np.float32)
        step = max(1, BLOCK_FLOATS // max(1, self.n_items_))
        for start in range(0, len(items), step):
            block = items[start:start + step]
            sim = self._similarity(block)
            sim[np.arange(len(block)), block] = -np.inf
            out_items[start:start + step], out_scores[start:start + step] = topk(sim, k)
        return out_items, out_scores

    def explain(self, history: Histories, item: int, top: int = 5) -> Explanation:
        """The history items with the largest positive contributions weight x similarity to `item`.

        All contributions (not only the top ones shown) sum to the item's score. details["shared"] lists the
        genres, categories and tags `item` shares with its largest contributor.
        """
        self._check_fitted(history)
        if len(history) != 1:
            raise DataError(f"explain takes one history, got {len(history)}")
        item = int(self._check_items(np.array([item]))[0])
        row = self._history_matrix(history)
        hist_items = row.indices.astype(np.int64)
        contrib = row.data.astype(np.float64) * self._weights_between(hist_items, item)
        order = np.argsort(-contrib, kind="stable")
        order = order[contrib[order] > 0][:top]
        shared: list[str] = []
        if len(order):
            both = self.item_terms_[item].multiply(self.item_terms_[int(hist_items[order[0]])])
            shared = [str(t) for t in self.term_names_[np.sort(sp.csr_matrix(both).indices)]]
        return Explanation(item=item, score=float(contrib.sum()),
                           contributions=[(int(hist_items[o]), float(contrib[o])) for o in order],
                           reason="similar-content", details={"shared": shared})


def _named_terms(features: pd.DataFrame) -> tuple[sp.csr_matrix, np.ndarray]:
    """(n_items, n_terms) binary CSR of each item's genre, category, attribute and tag values, and the names
    of the terms (a str array, so that the model saves without pickles), in field order then first use."""
    values: list[list[str]] = [[] for _ in range(len(features))]
    for field in _NAMED_FIELDS:
        if field not in features.columns:
            continue
        for i, value in enumerate(features[field]):
            if isinstance(value, list | tuple | np.ndarray):
                values[i].extend(str(v) for v in value)
            elif isinstance(value, str) and value:
                values[i].append(value)
    lengths = np.fromiter((len(v) for v in values), dtype=np.int64, count=len(values))
    codes, names = pd.factorize(pd.Series([v for vs in values for v in vs], dtype=object))
    rows = np.repeat(np.arange(len(values)), lengths)
    terms = sp.csr_matrix((np.ones(len(codes), np.float32), (rows, codes)), shape=(len(values), len(names)))
    terms.sum_duplicates()
    terms.data[:] = 1.0
    return terms, np.asarray(names, dtype=str)
