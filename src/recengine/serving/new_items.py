"""Items added after training, recommendable at once through their content.

The model has no column for an item it was not trained on. The service gives such an item (upserted with a
title, text or categories) the next served index after the model's (n_items, n_items + 1, ...) and scores it
the way ContentKNN scores every item: ``score = sum_i h_i * sim(i, new)`` over the user's recency-weighted live
history h (ContentKNN's ``values`` and ``history_half_life``), with sim the cosine of content vectors (text
embedding next to one-hot categories scaled by ``attribute_weight``) kept for the new item's ``neighbors``
most similar catalogue items only. Those similarities are computed once, when the item is upserted; a request
costs two sparse products of the 1-row history.

The content settings are those of the model's content component (ContentKNN, or a hybrid's ContentKNN); a
model without one gets ContentKNN's defaults with the TF-IDF encoder (no MiniLM load for a model that never
used it). Text is embedded with the model's encoder: MiniLM through ``text_embeddings`` against the model's own
catalogue vectors; TF-IDF with the catalogue's vocabulary and document frequencies, so a new document is
weighted as it would be among the catalogue's (ContentKNN's LSA vectors are a rotation of those same TF-IDF
rows, exactly so on catalogues of up to TFIDF_DIMENSIONS documents).

The model's scores and content scores live on unrelated scales, so a new item enters a user's ranking on the
model's z-scale: ``mean_r + std_r * NEW_ITEM_WEIGHT * z``, with mean_r and std_r those of the user's model
scores over the catalogue, and z the new item's content score as a z-score among the content scores of
PROBES catalogue items (a seeded sample, scored by the same pruned formula as new items: their own neighbours
only). With weight 1, a new item ranks where a catalogue item with the same content standing would rank under
a pure content model; for a ContentKNN model that is its own score, up to the sample.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.data.embeddings import text_embeddings
from recengine.data.histories import Histories
from recengine.data.text import item_documents, tfidf_matrix, tokenize
from recengine.models.base import Recommender
from recengine.models.content import ContentKNN
from recengine.models.hybrid import row_affine
from recengine.trained import TrainedModel

#: Catalogue neighbours kept per new item when the content model keeps all (neighbors = 0) or has none.
DEFAULT_NEIGHBORS = 100
#: Catalogue items scored like new items in every request, for the mean and spread of content scores.
PROBES = 256
#: How far a new item's content z-score counts on the model's z-scale (1: as much as the model's own).
NEW_ITEM_WEIGHT = 1.0
#: The list-valued item feature that holds categories, in Dataset.category_matrix's order of preference.
_CATEGORY_FIELDS = ("genres", "categories", "attributes")
#: How many of the latest history items say what a user is interested in (as TrainedModel's explanations).
_INTEREST_ITEMS = 50
#: Floats of one block of similarities while new items are compared with the catalogue.
_BLOCK_FLOATS = 1 << 24
_SEED = 0


def content_model(model: Recommender) -> ContentKNN | None:
    """The model itself when it is ContentKNN, else its first ContentKNN component (hybrids), else None."""
    if isinstance(model, ContentKNN):
        return model
    for component in getattr(model, "components_", ()):
        found = content_model(component)
        if found is not None:
            return found
    return None


def category_lists(features: pd.DataFrame) -> list[list[str]]:
    """Every item's categories (genres), from the first of _CATEGORY_FIELDS the frame has."""
    column = next((c for c in _CATEGORY_FIELDS if c in features.columns), None)
    if column is None:
        return [[] for _ in range(len(features))]
    return [[str(v) for v in value] if isinstance(value, list | tuple | np.ndarray) else []
            for value in features[column]]


def _dense(product: np.ndarray | sp.spmatrix) -> np.ndarray:
    return np.asarray(product.toarray() if sp.issparse(product) else product, dtype=np.float32)


class _Tfidf:
    """TF-IDF rows of the catalogue's documents, and new documents weighted with the catalogue's vocabulary and
    document frequencies (a term the catalogue lacks counts in the length of the row and matches nothing)."""

    def __init__(self, documents: Sequence[str]):
        matrix, vocabulary = tfidf_matrix(documents)
        self.catalogue = sp.csr_matrix(matrix, dtype=np.float32)
        self.terms = {term: j for j, term in enumerate(vocabulary)}
        df = np.bincount(matrix.indices, minlength=len(vocabulary))
        # tfidf_matrix's smoothed idf, with the catalogue's N and df (df = 0 for a term it has not seen).
        self.idf = np.log((1.0 + len(documents)) / (1.0 + df)) + 1.0
        self.unseen_idf = math.log(1.0 + len(documents)) + 1.0

    def embed(self, documents: Sequence[str]) -> sp.csr_matrix:
        rows, cols, vals = [], [], []
        for r, document in enumerate(documents):
            weights = {t: (1.0 + math.log(c)) * (self.idf[self.terms[t]] if t in self.terms else self.unseen_idf)
                       for t, c in Counter(tokenize(document)).items()}
            norm = math.sqrt(sum(w * w for w in weights.values())) or 1.0
            for term, weight in weights.items():
                if term in self.terms:
                    rows.append(r)
                    cols.append(self.terms[term])
                    vals.append(weight / norm)
        return sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)),
                             shape=(len(documents), len(self.terms)))


class _MiniLM:
    """The content model's MiniLM catalogue vectors (its text part, back at unit length) and new documents
    encoded by text_embeddings."""

    def __init__(self, model: ContentKNN):
        norms = np.linalg.norm(model.text_vectors_, axis=1, keepdims=True)
        self.catalogue = np.divide(model.text_vectors_, norms, out=np.zeros_like(model.text_vectors_),
                                   where=norms > 0)

    def embed(self, documents: Sequence[str]) -> np.ndarray:
        return text_embeddings(documents, "minilm")


@dataclass(frozen=True)
class Vectors:
    """Content vectors of some items, unit length as a whole: text rows (dense or sparse) and category rows."""

    text: np.ndarray | sp.csr_matrix
    categories: sp.csr_matrix

    def row(self, i: int) -> Vectors:
        return Vectors(self.text[i:i + 1], self.categories[i:i + 1])

    def dot(self, other: Vectors) -> np.ndarray:
        """(len(self), len(other)) cosines."""
        return _dense(self.text @ other.text.T) + _dense(self.categories @ other.categories.T)


class CatalogueContent:
    """The catalogue's side of content scoring for one model: settings, encoder, vectors and probes. Built once
    (when the first new item arrives) and never changed."""

    def __init__(self, trained: TrainedModel):
        data = trained.dataset
        content = content_model(trained.model)
        settings = content or ContentKNN()
        self.attribute_weight = float(settings.attribute_weight)
        self.neighbors = int(settings.neighbors) or DEFAULT_NEIGHBORS
        self.values, self.half_life = settings.values, float(settings.history_half_life)
        features = data.item_features if data.item_features is not None else pd.DataFrame(index=data.items.ids)
        self.item_categories = category_lists(features)
        self.category_index = {c: j for j, c in enumerate(dict.fromkeys(c for cs in self.item_categories
                                                                        for c in cs))}
        self.text = _MiniLM(content) if content is not None and content.text_encoder_ == "minilm" else \
            _Tfidf(item_documents(features))
        self.vectors = self._combine(self.text.catalogue, self.item_categories)
        self.n_items = data.n_items
        rng = np.random.default_rng(_SEED)
        probes = np.sort(rng.choice(self.n_items, min(PROBES, self.n_items), replace=False))
        self.probes = _columns(self.neighbours(Vectors(self.vectors.text[probes],
                                                       self.vectors.categories[probes]), probes), self.n_items)

    def embed(self, documents: Sequence[str], categories: Sequence[Sequence[str]]) -> Vectors:
        return self._combine(self.text.embed(documents), categories)

    def _combine(self, text: np.ndarray | sp.csr_matrix, categories: Sequence[Sequence[str]]) -> Vectors:
        """ContentKNN's vector: unit text next to unit one-hot categories of length attribute_weight, the whole
        scaled to unit length. A category the catalogue lacks counts in the length and matches nothing."""
        rows, cols, vals = [], [], []
        for r, names in enumerate(categories):
            for name in dict.fromkeys(names):
                if name in self.category_index:
                    rows.append(r)
                    cols.append(self.category_index[name])
                    vals.append(self.attribute_weight / math.sqrt(len(set(names))))
        onehot = sp.csr_matrix((np.asarray(vals, np.float32), (rows, cols)),
                               shape=(len(categories), len(self.category_index)))
        text_norms = np.asarray(text.multiply(text).sum(axis=1)).ravel() if sp.issparse(text) else \
            (np.asarray(text) ** 2).sum(axis=1)
        category_norms = np.asarray([self.attribute_weight ** 2 if len(names) else 0.0 for names in categories])
        norms = np.sqrt(text_norms + category_norms)
        scale = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32))
        scaled_text = sp.csr_matrix(scale @ text, dtype=np.float32) if sp.issparse(text) else \
            (np.asarray(text) * scale.diagonal()[:, None]).astype(np.float32)
        return Vectors(scaled_text, sp.csr_matrix(scale @ onehot, dtype=np.float32))

    def neighbours(self, vectors: Vectors, itself: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per item of `vectors`: its `neighbors` most similar catalogue items (positive cosines only) and the
        cosines. itself: the catalogue index of each item, left out of its own neighbours (probes)."""
        out = []
        step = max(1, _BLOCK_FLOATS // max(1, self.n_items))
        for start in range(0, vectors.text.shape[0], step):
            block = Vectors(vectors.text[start:start + step], vectors.categories[start:start + step])
            sims = block.dot(self.vectors)
            if itself is not None:
                sims[np.arange(sims.shape[0]), itself[start:start + step]] = 0.0
            keep = min(self.neighbors, self.n_items)
            top = np.argpartition(-sims, keep - 1, axis=1)[:, :keep] if keep < self.n_items else \
                np.broadcast_to(np.arange(self.n_items), sims.shape)
            for r in range(sims.shape[0]):
                cols = top[r][sims[r, top[r]] > 0]
                out.append((cols.astype(np.int64), sims[r, cols].astype(np.float32)))
        return out

    def history_weights(self, history: Histories) -> tuple[np.ndarray, np.ndarray]:
        """The entries of history.matrix(values, half_life) for a 1-row history, as (items, weights) with
        repeats left for the caller to sum: the content model's weighting, without building a sparse matrix
        (a few hundred microseconds of scipy on a path that runs with every request)."""
        items = history.items.astype(np.int64)
        recency = history.recency(self.half_life) if self.half_life else np.ones(len(items), np.float32)
        if self.values == "weight":
            return items, history.entry_weights().astype(np.float32) * recency
        # Binary: a repeated item counts once, at its latest position.
        _, last = np.unique(items[::-1], return_index=True)
        latest = np.sort(len(items) - 1 - last)
        return items[latest], recency[latest]


def _columns(neighbours: Sequence[tuple[np.ndarray, np.ndarray]], n_items: int) -> sp.csr_matrix:
    """(n_items, len(neighbours)) CSR: column j holds item j's neighbour cosines."""
    if not neighbours:
        return sp.csr_matrix((n_items, 0), dtype=np.float32)
    rows = np.concatenate([r for r, _ in neighbours])
    cols = np.repeat(np.arange(len(neighbours)), [len(r) for r, _ in neighbours])
    vals = np.concatenate([v for _, v in neighbours])
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_items, len(neighbours)), dtype=np.float32)


def _weighted_rows(m: sp.csr_matrix, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """sum_r weights[r] * m[items[r]] as a dense vector, by gathering m's rows in NumPy (scipy's product of a
    1-row matrix costs a tenth of a millisecond in checks alone, on a path that runs with every request)."""
    starts, ends = m.indptr[items], m.indptr[items + 1]
    lengths = ends - starts
    at = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(lengths.sum())
    return np.bincount(m.indices[at], weights=m.data[at] * np.repeat(weights, lengths),
                       minlength=m.shape[1]).astype(np.float32)


@dataclass(frozen=True)
class NewItem:
    id: str
    title: str
    categories: tuple[str, ...]
    vectors: Vectors
    #: Catalogue neighbours (internal indices) and their cosines.
    rows: np.ndarray
    sims: np.ndarray
    active: bool = True


class NewItems:
    """The new items of one model state, in the order they came (item j has served index offset + j; a deleted
    one keeps its place, inactive, so live histories that hold it stay valid). Immutable: upsert and remove
    return a new one, which the service publishes by one assignment."""

    def __init__(self, content: CatalogueContent, items: Sequence[NewItem] = ()):
        self.content = content
        self.items = tuple(items)
        self.offset = content.n_items
        self.index = {item.id: j for j, item in enumerate(self.items)}
        self.ids = np.asarray([item.id for item in self.items], dtype=object)
        self.titles = np.asarray([item.title for item in self.items], dtype=object)
        self.active = np.asarray([item.active for item in self.items], dtype=bool)
        self.blocked = self.offset + np.flatnonzero(~self.active)
        self.columns = _columns([(item.rows, item.sims) for item in self.items], self.offset)
        members: dict[str, list[int]] = {}
        for j, item in enumerate(self.items):
            for category in item.categories:
                members.setdefault(category, []).append(self.offset + j)
        self.members = {c: np.asarray(served, dtype=np.int64) for c, served in members.items()}
        self.vectors = Vectors(
            (sp.vstack([i.vectors.text for i in self.items], format="csr") if sp.issparse(content.vectors.text)
             else np.vstack([i.vectors.text for i in self.items])) if self.items else content.vectors.text[:0],
            sp.vstack([i.vectors.categories for i in self.items], format="csr") if self.items else
            content.vectors.categories[:0])

    def __len__(self) -> int:
        return len(self.items)

    def upsert(self, frame: pd.DataFrame) -> tuple[NewItems, list[bool]]:
        """These items (a store items frame, indexed by id) added, or replaced when present; an item with no
        content (no text, no categories) is left out, and one already present becomes inactive. Returns the
        new set and, per row of the frame, whether the item is served."""
        documents = item_documents(frame)
        categories = category_lists(frame)
        vectors = self.content.embed(documents, categories)
        neighbours = self.content.neighbours(vectors)
        titles = frame["title"] if "title" in frame.columns else pd.Series(None, index=frame.index, dtype=object)
        items, served = list(self.items), []
        for r, item_id in enumerate(frame.index.astype(str)):
            has_content = bool(documents[r].strip()) or bool(categories[r])
            title = titles.iloc[r]
            new = NewItem(item_id, title if isinstance(title, str) and title else item_id, tuple(categories[r]),
                          vectors.row(r), *neighbours[r], active=has_content)
            if item_id in self.index:
                items[self.index[item_id]] = new
            elif has_content:
                items.append(new)
            served.append(has_content)
        return NewItems(self.content, items), served

    def remove(self, item: str) -> NewItems:
        j = self.index[item]
        items = list(self.items)
        items[j] = replace(items[j], active=False)
        return NewItems(self.content, items)

    # ----------------------------------------------------------------------------------------- scoring
    def scores(self, history: Histories, model_affine: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Every new item's score for this history, on the model's z-scale (module docstring): model_affine is
        the (offset, scale) of the user's model scores over the catalogue, as row_affine's zscore gives them
        (from the scores themselves, or from the moments of a factor model's item vectors)."""
        items, weights = self.content.history_weights(history)
        probes = _weighted_rows(self.content.probes, items, weights)[None, :]
        own = _weighted_rows(self.columns, items, weights)[None, :]
        offset, scale = row_affine(probes, "zscore")
        z = (own - offset) / scale
        model_offset, model_scale = model_affine
        return (model_offset + model_scale * NEW_ITEM_WEIGHT * z)[0]

    def explain(self, history: Histories, served: int, top: int) -> dict:
        """reason "new-item" and the sentence TrainedModel says for items nobody has interacted with."""
        item = self.items[served - self.offset]
        sims = dict(zip(item.rows.tolist(), item.sims.tolist(), strict=True))
        contributions: Counter[int] = Counter()
        for i, w in zip(*self.content.history_weights(history), strict=True):
            if int(i) in sims:
                contributions[int(i)] += float(w) * sims[int(i)]
        named = [i for i, c in contributions.most_common(top) if c > 0]
        counts = Counter(c for j in history.items[-_INTEREST_ITEMS:] for c in self.content.item_categories[j])
        interest = sorted((c for c in item.categories if c in counts), key=lambda c: -counts[c])
        return {"reason": "new-item", "interest": interest, "because": named}

    def similar(self, served: int, k: int, blocked: np.ndarray) -> list[tuple[int, float]]:
        """A new item's k most similar served items by content cosine (catalogue and the other active new
        items), best first."""
        vectors = self.vectors.row(served - self.offset)
        sims = np.concatenate([vectors.dot(self.content.vectors)[0], vectors.dot(self.vectors)[0]])
        sims[served] = -np.inf
        sims[blocked] = -np.inf
        sims[self.blocked] = -np.inf
        order = np.argsort(-sims, kind="stable")[:k]
        return [(int(i), float(sims[i])) for i in order if sims[i] > 0]

    def near(self, item: int) -> list[tuple[int, int]]:
        """For a catalogue item: (rank, served index) of the active new items with it among their neighbours,
        rank being how many catalogue items are more similar to it than the new item is (by content cosine)."""
        row = self.columns[item]
        candidates = [(int(j), float(s)) for j, s in zip(row.indices, row.data, strict=True) if self.active[j]]
        if not candidates:
            return []
        catalogue = self.content.vectors.row(item).dot(self.content.vectors)[0]
        catalogue[item] = -np.inf
        return sorted((int((catalogue > s).sum()), self.offset + j) for j, s in candidates)
