"""ContentKNN: item-item similarity from item text and attributes, so that items nobody has touched are scored."""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.text import TEXT_FIELDS, item_documents, l2_normalize_rows, tfidf_matrix
from recengine.errors import DataError
from recengine.models._similarity import ItemItemModel, RowStats, top_n_similarity
from recengine.models.base import Interval, Options

_NO_FEATURES = "content needs item features (title, genres, tags or text)"


class ContentKNN(ItemItemModel):
    """Score = history_matrix @ S, with S[i, j] the cosine similarity of the content vectors of items i and j,
    pruned to the `neighbors` most similar items i of every item j.

    An item's content vector is the TF-IDF of its document (title, genres, categories, tags, text, description;
    terms in fewer than min_df items dropped) next to its one-hot genres/categories (Dataset.category_matrix)
    scaled so that the attribute part has length attribute_weight against a unit-length text part; the whole
    vector is L2-normalized. Interactions play no part in S: new items are scored as soon as they have features.
    values: "binary" or "weight" — which interaction values scoring reads; history_half_life > 0 weighs recent
    history items more.
    """

    name = "content"
    requires_item_features: ClassVar[bool] = True
    _neighbours_along = "column"
    parameter_constraints = {
        "neighbors": Interval(int, 1),
        "attribute_weight": Interval(float, 0),
        "min_df": Interval(int, 1),
        "values": Options(("binary", "weight")),
        "history_half_life": Interval(float, 0),
    }
    search_space = {
        "neighbors": ("int", 5, 1000),
        "attribute_weight": ("float", 0.0, 4.0),
        "min_df": ("int", 1, 5),
        "history_half_life": ("cat", [0.0, 2.0, 5.0, 10.0, 20.0, 50.0]),
    }

    def __init__(
        self,
        neighbors: int = 100,
        attribute_weight: float = 0.5,
        min_df: int = 1,
        values: str = "binary",
        history_half_life: float = 5.0,
    ):
        self.neighbors = neighbors
        self.attribute_weight = attribute_weight
        self.min_df = min_df
        self.values = values
        self.history_half_life = history_half_life

    def item_vectors(self, dataset: Dataset) -> sp.csr_matrix:
        """(n_items, n_terms + n_categories) float64 content vectors with unit (or zero) rows."""
        features = dataset.item_features
        if features is None or not any(f in features.columns for f in (*TEXT_FIELDS, "attributes")):
            raise DataError(f"{_NO_FEATURES}; build the Dataset with item_features (e.g. a MovieLens reader)")
        text, _ = tfidf_matrix(item_documents(features), min_df=self.min_df)
        parts = [text]
        categories = dataset.category_matrix()
        if categories is not None and categories.shape[1] and self.attribute_weight > 0:
            parts.append(l2_normalize_rows(categories) * float(self.attribute_weight))
        vectors = l2_normalize_rows(sp.hstack(parts, format="csr"))
        if vectors.nnz == 0:
            raise DataError(f"{_NO_FEATURES}; every item's features are empty here")
        return vectors

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        vectors = self.item_vectors(dataset)
        stats = RowStats.of(vectors)
        # Rows of the result are the scored items, columns their neighbours: S is its transpose.
        nearest = top_n_similarity(vectors, vectors.T.tocsr(), stats, stats, "cosine", self.neighbors,
                                   exclude=np.arange(dataset.n_items))
        similarity = nearest.T.tocsr()
        similarity.sort_indices()
        self.item_weights_ = sp.csr_matrix(similarity, dtype=np.float32)
        self.n_items_ = dataset.n_items
        return self
