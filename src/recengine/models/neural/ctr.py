"""Click-through-rate rankers over user, item and context features: Wide&Deep (Cheng et al., DLRS 2016) and
DeepFM (Guo et al., IJCAI 2017).

Features, found in the data at fit (``feature_fields_`` names them):

* user: the user id (a learned embedding for training users; a history not marked as a training user's has
  none), each categorical user column (ml-100k: gender, occupation; see MAX_CATEGORIES) and each numeric user
  column (age), standardized;
* item: the item id, its categories (the dataset's category matrix, e.g. genres; mean-pooled), each categorical
  item column and each numeric item column (year), standardized;
* context, from the history before the candidate: its latest ``history_len`` items (mean-pooled embeddings of
  their own table), log(1 + its length) and, when items have categories, the candidate's category affinity (the
  history's share of interactions in each of the item's categories, averaged over them) and category recency
  exp(-days / recency_days), the days counted from the history's latest interaction in one of the item's
  categories to its latest interaction of all (0 when there is none, or when the history carries no timestamps).
  MovieLens timestamps are when a rating was entered, not when the film was watched, so hour and weekday are
  not used.

Every field is a ``factors``-wide vector (a categorical value's embedding; a numeric value times the field's
vector) and a scalar (the linear term). DeepFM: linear + factorization machine over all field vectors + an MLP
over their concatenation, the embeddings shared. Wide&Deep: wide = linear + hashed cross products of (history
item, candidate item) in ``cross_buckets`` buckets, averaged over the history window; deep = the same MLP.

Training: each training interaction is a positive, in the context of the user's interactions before it (so no
pair sees its own label), with ``n_negatives`` items the user never interacted with, drawn uniformly afresh each
epoch, as negatives in the same context; binary cross-entropy with Adam. With ``patience`` > 0 each user's
latest training interaction is held out: it and ``n_negatives`` sampled negatives per user (fixed), in the
context of the rest of the history, give the validation AUC (or log-loss) after every epoch; the best epoch's
weights are kept and training stops after ``patience`` epochs without improvement.

Scoring: the context is the given history as a whole. ``predict`` scores only the given (history, item) pairs,
as the second stage of a pipeline does; ``score`` runs every item through the same path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import rankdata

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import DataError
from recengine.models._factors import known_rows, similar_items_cosine
from recengine.models.base import Interval, Options
from recengine.models.neural._base import NeuralRecommender, early_stopping_holdout, training_module

if TYPE_CHECKING:
    import torch

#: A string column is a categorical feature when it has 2 to MAX_CATEGORIES distinct values, each value held by
#: two entities on average (ids, titles and zip codes have more and would only memorize).
MAX_CATEGORIES = 100
#: Rounds of redrawing negatives that hit a user's own items; a user who has nearly every item keeps fewer.
_NEGATIVE_DRAWS = 50
#: Upper bound on the floats of one block of (pair, feature) activations while scoring many pairs.
_PAIR_BLOCK = 1 << 23
_SECONDS_PER_DAY = 86_400.0
#: Multiplier of the (history item, candidate item) hash of Wide&Deep's cross products (a large prime).
_CROSS_PRIME = 1_000_003


# ------------------------------------------------------------------------------------------ feature tables
def _feature_columns(frame: pd.DataFrame | None, skip: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(categorical, numeric) columns of a feature frame that the rankers use (see the module docstring)."""
    categorical: list[str] = []
    numeric: list[str] = []
    if frame is None:
        return categorical, numeric
    for name in frame.columns:
        column = frame[name]
        if name in skip or pd.api.types.is_bool_dtype(column):
            continue
        if pd.api.types.is_numeric_dtype(column):
            values = pd.to_numeric(column, errors="coerce").astype(np.float64)
            if values.notna().any() and values.std() > 0:
                numeric.append(str(name))
            continue
        present = column.dropna()
        if len(present) and present.map(lambda v: isinstance(v, str)).all() and \
                2 <= present.nunique() <= min(MAX_CATEGORIES, len(present) / 2):
            categorical.append(str(name))
    return categorical, numeric


class _Slots:
    """Per entity (user or item), padded slots of (value index, weight) and the field of each slot: a field's
    vector is the weighted sum of its slots' value embeddings. Value 0 is padding (a zero embedding)."""

    def __init__(self, n_entities: int, first_value: int) -> None:
        self.n_entities = n_entities
        self.next_value = first_value
        self.values: list[np.ndarray] = []
        self.weights: list[np.ndarray] = []
        self.fields: list[int] = []
        self.names: list[str] = []

    def add_field(self, name: str, values: np.ndarray, weights: np.ndarray, n_values: int) -> None:
        """values: (n_entities, slots) indices in [1, n_values], 0 for an empty slot."""
        values = np.asarray(values, dtype=np.int64).reshape(self.n_entities, -1)
        shifted = np.where(values > 0, values + self.next_value - 1, 0)
        self.values.append(shifted)
        self.weights.append(np.asarray(weights, dtype=np.float32).reshape(self.n_entities, -1))
        self.fields += [len(self.names)] * values.shape[1]
        self.names.append(name)
        self.next_value += n_values

    def add_ids(self, name: str) -> None:
        self.add_field(name, np.arange(1, self.n_entities + 1), np.ones(self.n_entities), self.n_entities)

    def add_frame(self, frame: pd.DataFrame | None, kind: str, skip: tuple[str, ...] = ()) -> None:
        categorical, numeric = _feature_columns(frame, skip)
        for name in categorical:
            codes, _ = pd.factorize(frame[name])
            self.add_field(f"{kind}.{name}", codes + 1, (codes >= 0).astype(np.float32), int(codes.max()) + 1)
        for name in numeric:
            x = pd.to_numeric(frame[name], errors="coerce").astype(np.float64).to_numpy()
            standardized = np.nan_to_num((x - np.nanmean(x)) / np.nanstd(x))  # missing: the mean, 0
            self.add_field(f"{kind}.{name}", np.ones(self.n_entities), standardized, 1)

    def add_bag(self, name: str, matrix: sp.csr_matrix) -> None:
        """A multi-valued field (a row's stored columns), mean-pooled."""
        counts = np.diff(matrix.indptr)
        width = max(1, int(counts.max(initial=0)))
        values = np.zeros((self.n_entities, width), dtype=np.int64)
        weights = np.zeros((self.n_entities, width), dtype=np.float32)
        rows = np.repeat(np.arange(self.n_entities), counts)
        slot = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], counts)
        values[rows, slot] = matrix.indices + 1
        weights[rows, slot] = 1.0 / counts[rows]
        self.add_field(name, values, weights, matrix.shape[1])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.concatenate(self.values, 1), np.concatenate(self.weights, 1), np.asarray(self.fields, np.int64)


# ------------------------------------------------------------------------------------------------ contexts
def _contexts(indptr: np.ndarray, items: np.ndarray, timestamps: np.ndarray | None, ends: np.ndarray,
              rows: np.ndarray, categories: np.ndarray, history_len: int, recency_days: float) -> dict[str, np.ndarray]:
    """Context features of the events [start of row, end) for each (end, row): end is a global position in the
    CSR arrays, the context's events are row `rows[i]`'s before it (training: each event's predecessors;
    scoring: the whole history, end = its row's stop). categories: dense (n_items, G) of the items.

    Returns window (n, history_len) of item + 1 (0 padding; oldest first, right-aligned), log_length (n,), and
    with categories share (n, G) and recency (n, G) as in the module docstring."""
    starts = indptr[rows]
    length = ends - starts
    position = ends[:, None] - history_len + np.arange(history_len)
    inside = position >= starts[:, None]
    window = np.where(inside, items[np.clip(position, 0, max(0, len(items) - 1))].astype(np.int64) + 1, 0) \
        if len(items) else np.zeros(position.shape, np.int64)
    out = {"window": window, "log_length": np.log1p(length).astype(np.float32)}
    n_categories = categories.shape[1]
    if n_categories == 0:
        return out
    event_categories = categories[items].astype(np.int64) if len(items) else np.zeros((0, n_categories), np.int64)
    cumulative = np.vstack([np.zeros((1, n_categories), np.int64), np.cumsum(event_categories, 0)])
    counts = cumulative[ends] - cumulative[starts]
    out["share"] = (counts / np.maximum(1, length)[:, None]).astype(np.float32)
    recency = np.zeros((len(ends), n_categories), dtype=np.float32)
    if timestamps is not None and len(items):
        # Latest time of each category up to every event, by a running maximum over codes that rise from row to
        # row (row r's codes lie in [r * span, (r + 1) * span)), so that one pass serves every row.
        t = timestamps.astype(np.int64)
        low, span = int(t.min()), int(t.max() - t.min()) + 2
        event_row = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
        codes = event_row[:, None] * span + event_categories * (t - low + 1)[:, None]
        latest = np.maximum.accumulate(codes, 0)
        has = length > 0
        last = latest[np.maximum(ends - 1, 0)] - rows[:, None].astype(np.int64) * span  # 0: never
        days = (t[np.maximum(ends - 1, 0)][:, None] - (last - 1 + low)) / _SECONDS_PER_DAY
        recency = np.where(has[:, None] & (last > 0), np.exp(-np.maximum(days, 0) / recency_days), 0.0)
        recency = recency.astype(np.float32)
    out["recency"] = recency
    return out


def _history_contexts(histories: Histories, categories: np.ndarray, history_len: int,
                      recency_days: float) -> dict[str, np.ndarray]:
    rows = np.arange(len(histories), dtype=np.int64)
    return _contexts(histories.indptr, histories.items, histories.timestamps, histories.indptr[1:], rows,
                     categories, history_len, recency_days)


def _pair_keys(matrix: sp.csr_matrix) -> np.ndarray:
    """Sorted row * n_columns + column of the stored entries of a CSR matrix."""
    matrix = sp.csr_matrix(matrix)
    matrix.sort_indices()
    rows = np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))
    return rows * matrix.shape[1] + matrix.indices


def _draw_negatives(owners: np.ndarray, keys: np.ndarray, n_items: int, per_positive: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """per_positive uniform items per positive among those its user never interacted with: (positive index,
    item) of each negative. owners: the user of each positive; keys: the sorted user * n_items + item of all
    of them. Draws that hit a positive are redrawn; after _NEGATIVE_DRAWS rounds the few left are dropped."""
    source = np.repeat(np.arange(len(owners)), per_positive)
    users = owners[source].astype(np.int64)
    drawn = rng.integers(0, n_items, len(source))
    todo = np.arange(len(source))
    for _ in range(_NEGATIVE_DRAWS):
        probe = users[todo] * n_items + drawn[todo]
        found = np.searchsorted(keys, probe)
        todo = todo[keys[np.minimum(found, len(keys) - 1)] == probe]
        if len(todo) == 0:
            break
        drawn[todo] = rng.integers(0, n_items, len(todo))
    keep = np.ones(len(source), dtype=bool)
    keep[todo] = False
    return source[keep], drawn[keep]


def _auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve by the rank-sum (Mann-Whitney) statistic, ties counted half. (Models may not
    import recengine.evaluation, whose metrics.auc is the reporting one.)"""
    positive = labels > 0
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / max(1, n_pos * n_neg))


# ---------------------------------------------------------------------------------------------------- model
@dataclass(eq=False, repr=False, kw_only=True)
class _CTRRanker(NeuralRecommender):
    """Shared hyper-parameters, features, training, scoring and persistence of Wide&Deep and DeepFM; ``_parts``
    says which of "fm" and "cross" the model adds to the linear term and the MLP.

    factors: embedding width of every field; hidden, hidden_layers: the MLP; history_len: context window;
    recency_days: time scale of the category recency feature; n_negatives: sampled negatives per positive;
    user_dropout: the share of training samples whose user fields (id and attributes) are blanked, as they are
    for a history the model has not seen as a user's, so that the history carries the taste too;
    validation_metric: what early stopping maximizes, "auc" or "log_loss" (minimized; validation_scores_ holds
    minus the log-loss). The training hyper-parameters: see NeuralRecommender."""

    _parts: ClassVar[tuple[str, ...]] = ()
    parameter_constraints = {
        **NeuralRecommender.parameter_constraints,
        "factors": Interval(int, 1, 1024),
        "hidden": Interval(int, 1, 8192),
        "hidden_layers": Interval(int, 0, 8),
        "history_len": Interval(int, 1, 10_000),
        "recency_days": Interval(float, 0, low_open=True),
        "n_negatives": Interval(int, 1, 1000),
        "user_dropout": Interval(float, 0, 1),
        "validation_metric": Options(("auc", "log_loss")),
    }
    search_space = {
        "factors": ("cat", [8, 16, 32]),
        "n_negatives": ("int", 1, 8),
        "lr": ("log", 3e-4, 1e-2),
        "history_len": ("cat", [10, 20, 50, 100]),
    }

    factors: int = 16
    hidden: int = 64
    hidden_layers: int = 2
    history_len: int = 50
    recency_days: float = 30.0
    n_negatives: int = 4
    user_dropout: float = 0.5
    validation_metric: str = "auc"
    batch_size: int = 1024
    epochs: int = 30
    patience: int = 3

    # ------------------------------------------------------------------------------------------ features
    def _learn_features(self, dataset: Dataset) -> None:
        users = _Slots(dataset.n_users, 1)
        users.add_ids("user.id")
        users.add_frame(dataset.user_features, "user")
        items = _Slots(dataset.n_items, users.next_value)
        items.add_ids("item.id")
        category_matrix = dataset.category_matrix()
        skip: tuple[str, ...] = ()
        if category_matrix is not None and category_matrix.nnz:
            category_column = next(c for c in ("genres", "categories", "attributes") if c in dataset.item_features)
            items.add_bag(f"item.{category_column}", category_matrix)
            skip = (category_column,)
        else:
            category_matrix = sp.csr_matrix((dataset.n_items, 0), dtype=np.float32)
        items.add_frame(dataset.item_features, "item", skip)
        self.user_values_, self.user_weights_, self.user_fields_ = users.arrays()
        self.item_values_, self.item_weights_, self.item_fields_ = items.arrays()
        self.item_categories_ = sp.csr_matrix(category_matrix, dtype=np.float32)
        self.n_values_ = items.next_value
        context = ["context.history", "context.log_length"]
        if category_matrix.shape[1]:
            context += ["context.category_affinity", "context.category_recency"]
        self.feature_fields_ = users.names + context + items.names

    def _categories(self) -> np.ndarray:
        return self.item_categories_.toarray()

    @property
    def _n_pair_fields(self) -> int:
        return 2 if self.item_categories_.shape[1] else 0

    # ------------------------------------------------------------------------------------------- network
    def _build_network(self) -> torch.nn.Module:
        from torch import nn

        k = self.factors
        n_user_fields = int(self.user_fields_.max()) + 1
        n_item_fields = int(self.item_fields_.max()) + 1
        n_fields = n_user_fields + 2 + self._n_pair_fields + n_item_fields
        sizes = [n_fields * k] + [self.hidden] * self.hidden_layers
        modules: dict[str, nn.Module] = {
            "field": nn.Embedding(self.n_values_, k, padding_idx=0),
            "field_linear": nn.Embedding(self.n_values_, 1, padding_idx=0),
            "history": nn.Embedding(self.n_items_ + 1, k, padding_idx=0),
            "history_linear": nn.Embedding(self.n_items_ + 1, 1, padding_idx=0),
            # Numeric context fields: log-length, then category affinity and recency when items have categories.
            "context": nn.Embedding(1 + self._n_pair_fields, k),
            "context_linear": nn.Embedding(1 + self._n_pair_fields, 1),
            "deep": nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]),
            "output": nn.Linear(sizes[-1], 1),
        }
        if "cross" in self._parts:
            modules["cross"] = nn.Embedding(self.cross_buckets, 1)
        net = nn.ModuleDict(modules)
        for name in ("field", "history", "context"):
            nn.init.normal_(net[name].weight, std=0.01)
        for name in ("field_linear", "history_linear", "context_linear", *(("cross",) if "cross" in net else ())):
            nn.init.zeros_(net[name].weight)
        return net

    def _pooled(self, net: torch.nn.Module, values: torch.Tensor, weights: torch.Tensor,
                fields: torch.Tensor, n_fields: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, n_fields, k) field vectors and (n,) linear terms of slot rows (values, weights: (n, slots))."""
        import torch

        vectors = net["field"](values) * weights[..., None]
        pooled = torch.zeros(len(values), n_fields, vectors.shape[-1], device=values.device, dtype=vectors.dtype)
        pooled.index_add_(1, fields, vectors)
        linear = (net["field_linear"](values)[..., 0] * weights).sum(1)
        return pooled, linear

    def _row_fields(self, net: torch.nn.Module, context: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Per context row: (n, user fields + 2, k) vectors, (n,) linear terms."""
        import torch

        fields = context["user_fields"]
        users, user_linear = self._pooled(net, context["user_values"], context["user_weights"], fields,
                                          int(self.user_fields_.max()) + 1)
        window = context["window"]
        count = (window > 0).sum(1, keepdim=True).clamp(min=1)
        history = net["history"](window).sum(1) / count
        history_linear = net["history_linear"](window)[..., 0].sum(1) / count[:, 0]
        length = context["log_length"][:, None] * net["context"].weight[0]
        vectors = torch.cat([users, history[:, None], length[:, None]], 1)
        linear = user_linear + history_linear + context["log_length"] * net["context_linear"].weight[0, 0]
        return vectors, linear

    def _pair_logits(self, net: torch.nn.Module, context: dict[str, torch.Tensor], row_vectors: torch.Tensor,
                     row_linear: torch.Tensor, rows: torch.Tensor, item_side: dict[str, torch.Tensor],
                     items: torch.Tensor) -> torch.Tensor:
        """Logits of pairs (rows[p], items[p]): rows index the context rows; item_side holds each pair's item
        fields (from `_item_side`) and items its catalogue index."""
        import torch

        parts = [row_vectors[rows]]
        linear = row_linear[rows] + item_side["linear"]
        if self._n_pair_fields:
            categories = item_side["categories"]
            affinity = (context["share"][rows] * categories).sum(1) / categories.sum(1).clamp(min=1)
            recency = (context["recency"][rows] * categories).amax(1)
            numeric = torch.stack([affinity, recency], 1)
            parts.append(numeric[..., None] * net["context"].weight[1:])
            linear = linear + numeric @ net["context_linear"].weight[1:, 0]
        parts.append(item_side["vectors"])
        vectors = torch.cat(parts, 1)
        logits = linear
        if "fm" in self._parts:
            total = vectors.sum(1)
            logits = logits + 0.5 * (total * total - (vectors * vectors).sum(1)).sum(1)
        if "cross" in self._parts:
            window = context["window"][rows]
            buckets = (window * _CROSS_PRIME + items[:, None]) % self.cross_buckets
            real = (window > 0).float()
            logits = logits + (net["cross"](buckets)[..., 0] * real).sum(1) / real.sum(1).clamp(min=1)
        x = vectors.flatten(1)
        for layer in net["deep"]:
            x = torch.relu(layer(x))
        return logits + net["output"](x)[:, 0]

    def _item_side(self, net: torch.nn.Module, items: torch.Tensor) -> dict[str, torch.Tensor]:
        """The given items' field vectors (n, item fields, k), linear terms (n,) and categories (n, G)."""
        import torch

        device = items.device
        host = items.cpu().numpy()
        vectors, linear = self._pooled(
            net, torch.as_tensor(self.item_values_[host], device=device),
            torch.as_tensor(self.item_weights_[host], device=device),
            torch.as_tensor(self.item_fields_, device=device), int(self.item_fields_.max()) + 1)
        categories = torch.as_tensor(self.item_categories_[host].toarray(), device=device)
        return {"vectors": vectors, "linear": linear, "categories": categories}

    def _context_tensors(self, raw: dict[str, np.ndarray], users: np.ndarray,
                         device: torch.device) -> dict[str, torch.Tensor]:
        """Context arrays on the device, with each row's user slots (an unknown user's are all padding)."""
        import torch

        blank = np.zeros((1, self.user_values_.shape[1]))
        known = users >= 0
        values = np.where(known[:, None], self.user_values_[np.maximum(users, 0)], blank).astype(np.int64)
        weights = np.where(known[:, None], self.user_weights_[np.maximum(users, 0)], blank).astype(np.float32)
        out = {key: torch.as_tensor(value, device=device) for key, value in raw.items()}
        out.update(user_values=torch.as_tensor(values, device=device),
                   user_weights=torch.as_tensor(weights, device=device),
                   user_fields=torch.as_tensor(self.user_fields_, device=device))
        return out

    # --------------------------------------------------------------------------------------------- fitting
    def fit(self, dataset: Dataset) -> Self:
        training, device = self._start_fit(dataset)
        train_data, validation = early_stopping_holdout(self.name, dataset, self.patience)
        self.n_items_ = dataset.n_items
        self.n_users_ = dataset.n_users
        self._learn_features(dataset)
        with training.torch_threads(), training.seeded(self.random_state, device):
            net = self._build_network().to(device)
            log = self._train(net, train_data, dataset, validation, device)
        net.requires_grad_(False)
        self._keep(net, log)
        return self

    def _keep(self, net: torch.nn.Module, log: Any) -> None:
        super()._keep(net, log)
        # The curve is of validation_metric, not of NDCG.
        self.validation_scores_ = self.__dict__.pop("validation_ndcg_")

    def _train(self, net: torch.nn.Module, data: Dataset, full: Dataset,
               validation: tuple[Histories, np.ndarray] | None, device: torch.device) -> Any:
        """Train on `data`; negatives avoid every interaction of `full` (data plus the held-out validation items:
        otherwise the validation positives would be taught as negatives)."""
        import torch
        import torch.nn.functional as F

        training = training_module()
        keys = _pair_keys(full.matrix("binary"))
        owners = data.user_index.astype(np.int64)
        raw = _contexts(data.indptr, data.item_index, data.timestamp, np.arange(data.n_interactions), owners,
                        self._categories(), self.history_len, self.recency_days)
        contexts = self._context_tensors(raw, owners, device)
        targets = torch.as_tensor(data.item_index.astype(np.int64), device=device)
        rng = np.random.default_rng(self.random_state)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        per_row = ("window", "log_length", "share", "recency", "user_values", "user_weights")

        def epoch_batches() -> Iterator[tuple[torch.Tensor, ...]]:
            """(context row, item, label, user fields dropped) of each pair: every positive and its fresh
            negatives, shuffled."""
            source, negatives = _draw_negatives(owners, keys, data.n_items, self.n_negatives, rng)
            sample = np.concatenate([np.arange(data.n_interactions), source])
            order = torch.as_tensor(rng.permutation(len(sample)), device=device)
            dropped = torch.as_tensor(rng.random(len(sample)) < self.user_dropout, device=device)
            rows = torch.as_tensor(sample, device=device)[order]
            items = torch.cat([targets, torch.as_tensor(negatives, device=device)])[order]
            labels = torch.cat([torch.ones(data.n_interactions, device=device),
                                torch.zeros(len(negatives), device=device)])[order]
            for start in range(0, len(sample), self.batch_size):
                batch = slice(start, start + self.batch_size)
                yield rows[batch], items[batch], labels[batch], dropped[batch]

        def loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            rows, items, labels, dropped = batch
            context = {key: value[rows] for key, value in contexts.items() if key in per_row}
            context["user_fields"] = contexts["user_fields"]
            context["user_values"] = context["user_values"].masked_fill(dropped[:, None], 0)
            row_vectors, row_linear = self._row_fields(net, context)
            logits = self._pair_logits(net, context, row_vectors, row_linear, torch.arange(len(rows), device=device),
                                       self._item_side(net, items), items)
            return F.binary_cross_entropy_with_logits(logits.float(), labels)

        validate = None
        if validation is not None:
            query, truth = validation
            pairs, labels = self._validation_pairs(query, truth, keys, data.n_items)

            def validate() -> float:
                logits = self._predict_pairs(net, device, query, pairs)
                if self.validation_metric == "auc":
                    return _auc(labels, logits)
                return -float(F.binary_cross_entropy_with_logits(torch.as_tensor(logits),
                                                                       torch.as_tensor(labels)))

        return training.train_batches(net, loss, epoch_batches, optimizer=optimizer, rng=rng, device=device,
                                      epochs=self.epochs, patience=self.patience, validate=validate,
                                      **self._training_options())

    def _validation_pairs(self, query: Histories, truth: np.ndarray, keys: np.ndarray,
                          n_items: int) -> tuple[sp.csr_matrix, np.ndarray]:
        """Each query row's held-out item and n_negatives fixed negatives (items outside `keys`, every
        interaction of the user's): a CSR of pairs and the label of each stored entry."""
        rng = np.random.default_rng(self.random_state + 1)
        source, negatives = _draw_negatives(query.users.astype(np.int64), keys, n_items, self.n_negatives, rng)
        rows = np.concatenate([np.arange(len(query)), source])
        items = np.concatenate([truth, negatives])
        # A pair drawn twice counts once; the held-out items come first, so np.unique's first index tells them.
        _, first = np.unique(rows * n_items + items, return_index=True)
        labels = (first < len(truth)).astype(np.float32)
        pairs = sp.csr_matrix((labels + 1.0, (rows[first], items[first])), shape=(len(query), n_items))
        pairs.sort_indices()
        return pairs, (pairs.data == 2.0).astype(np.float32)

    # --------------------------------------------------------------------------------------------- scoring
    def _new_network(self) -> torch.nn.Module:
        return self._build_network().requires_grad_(False)

    def _predict_pairs(self, net: torch.nn.Module, device: torch.device, histories: Histories,
                       pairs: sp.csr_matrix) -> np.ndarray:
        """Logits of the stored entries of `pairs` (one row per history), in CSR order."""
        import torch

        users = np.where(known_rows(histories, self.n_users_), histories.users if histories.users is not None
                         else -1, -1).astype(np.int64)
        raw = _history_contexts(histories, self._categories(), self.history_len, self.recency_days)
        context = self._context_tensors(raw, users, device)
        rows = torch.as_tensor(np.repeat(np.arange(len(histories)), np.diff(pairs.indptr)), device=device)
        items = torch.as_tensor(pairs.indices.astype(np.int64), device=device)
        out = np.empty(pairs.nnz, dtype=np.float32)
        with torch.no_grad():
            row_vectors, row_linear = self._row_fields(net, context)
            item_side = self._item_side(net, torch.arange(self.n_items_, device=device))
            width = len(self.feature_fields_) * self.factors + self.history_len + self.hidden
            step = max(1, _PAIR_BLOCK // width)
            for start in range(0, pairs.nnz, step):
                block = items[start:start + step]
                out[start:start + step] = self._pair_logits(
                    net, context, row_vectors, row_linear, rows[start:start + step],
                    {key: value[block] for key, value in item_side.items()}, block).float().cpu().numpy()
        return out

    def predict(self, histories: Histories, items: sp.csr_matrix) -> sp.csr_matrix:
        """Logits of the stored entries of `items` only: the ranker's way of ordering a retrieval's candidates."""
        self._check_fitted(histories)
        items = sp.csr_matrix(items, dtype=np.float32, copy=True)
        if items.shape != (len(histories), self.n_items_):
            raise DataError(f"predict: items must be a ({len(histories)}, {self.n_items_}) sparse matrix, "
                            f"got {items.shape}")
        items.sort_indices()
        training = training_module()
        net, device = self._network()
        with training.torch_threads():
            items.data = self._predict_pairs(net, device, histories, items)
        return items

    def score(self, histories: Histories) -> np.ndarray:
        """Logits of every item (every (history, item) pair through the pair path)."""
        self._check_fitted(histories)
        training = training_module()
        out = np.empty((len(histories), self.n_items_), dtype=np.float32)
        for start in range(0, len(histories), training.SCORE_BATCH):
            batch = histories[start:start + training.SCORE_BATCH]
            everything = sp.csr_matrix(np.ones((len(batch), self.n_items_), dtype=np.float32))
            out[start:start + len(batch)] = self.predict(batch, everything).toarray()
        return out

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine between the items' id embeddings."""
        self._check_fitted()
        net, _ = self._network()
        ids = self.item_values_[:, 0]  # the item id is the first item field
        return similar_items_cosine(net["field"].weight[ids].float().cpu().numpy(), items, k)


class DeepFM(_CTRRanker):
    """DeepFM: linear + factorization machine + MLP over shared field embeddings (see the module docstring and
    _CTRRanker for the hyper-parameters)."""

    name = "deepfm"
    _parts = ("fm",)


@dataclass(eq=False, repr=False, kw_only=True)
class WideDeep(_CTRRanker):
    """Wide&Deep: wide = linear + hashed (history item x candidate item) cross products in cross_buckets
    buckets; deep = an MLP over the field embeddings. Other hyper-parameters as DeepFM's."""

    name = "wide-deep"
    _parts = ("cross",)
    parameter_constraints = {**_CTRRanker.parameter_constraints, "cross_buckets": Interval(int, 1, 1 << 26)}

    cross_buckets: int = 1 << 18
