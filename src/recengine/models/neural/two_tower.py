"""Two-tower retrieval (Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
Recommendations", RecSys 2019; the pooled watch history of Covington et al., "Deep Neural Networks for YouTube
Recommendations", RecSys 2016).

A user tower and an item tower each map their inputs to a ``dim``-wide vector, L2-normalised; a history scores an
item by the inner product (the cosine) of the two, so retrieval over the item tower's outputs is maximum inner
product search (``recengine.serving.ann.ItemIndex``).

* Item tower: a learned item-id embedding, the mean embedding of the item's categories (the first of genres,
  categories, attributes its features have) and, when the items have text (``recengine.data.text.item_documents``),
  its text embedding (``recengine.data.embeddings``: frozen, through a learned linear projection); concatenated, then
  ``layers`` ReLU layers of width 2 dim and a linear output.
* User tower: a learned user-id embedding, one embedding per user feature column (each column read as a
  categorical value, its string form), and the mean of the item tower's id embeddings over the latest
  ``max_history`` items of the history (shared, so every target trains them too); the same tower shape.

Training reads every training interaction as an example: the user's id and attributes and the items before it
predict it. The loss is a softmax over the batch's items (in-batch negatives) at ``temperature``, with the
batch's other copies of an example's item masked out; with ``logq_correction`` each item's logit is lowered by
the log of its share of the training examples, the probability with which the batch draws it as a negative, so
that popular items are not pushed down merely for being sampled often. Scores do not subtract it.

Cold start. With probability ``id_dropout`` a training example drops the user id and attributes (the row
learns to score from the history alone, as an unseen user is scored) and, when items have categories or
text, the item id (the tower learns to place an item from its content). Items with no training interaction
take the shared "unknown" id row and are left out of a history's pool, so a catalogue item
nobody has touched is placed by its content alone; ``embed_items`` does the same for items outside the
catalogue. A history row whose ``Histories.users`` names a training user scores with that user's id and
attributes; any other history (a new user, or fresh events) scores from its items alone, without retraining.

With ``patience`` > 0 each user's latest training interaction is held out (a leave-one-out validation split of
the training data), NDCG@10 over all items is measured after every epoch, the best epoch's weights are kept and
training stops after ``patience`` epochs without improvement.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recengine.data.dataset import Dataset
from recengine.data.embeddings import ENCODERS, resolve_encoder, text_embeddings
from recengine.data.histories import Histories
from recengine.data.text import item_documents
from recengine.errors import DataError, NotSupportedError
from recengine.models._factors import known_rows, similar_items_cosine
from recengine.models.base import Interval, Options
from recengine.models.neural._base import NeuralRecommender, early_stopping_holdout, training_module

if TYPE_CHECKING:
    import torch

#: Item feature columns read as categories, the first present wins (as Dataset.category_matrix).
CATEGORY_FIELDS = ("genres", "categories", "attributes")
#: text_encoder value that leaves item text out of the item tower.
NO_TEXT = "none"


@dataclass(eq=False, repr=False, kw_only=True)
class TwoTower(NeuralRecommender):
    """Two-tower retrieval model; see the module docstring for the towers, the loss and cold start.

    dim: width of every embedding and of the towers' outputs; layers: ReLU layers (width 2 dim) per tower.
    max_history: latest history items pooled by the user tower. text_encoder: "auto", "minilm", "tfidf" or
    "none" (see recengine.data.embeddings). temperature: the softmax temperature of the cosine logits.
    logq_correction: subtract log sampling probability from in-batch logits while training. id_dropout: share of
    training examples that drop their ids (cold-start training). The training hyper-parameters: see
    NeuralRecommender; batch_size is also the number of in-batch negatives (under DDP too).
    """

    name = "two-tower"
    parameter_constraints = {
        **NeuralRecommender.parameter_constraints,
        "dim": Interval(int, 1, 4096),
        "layers": Interval(int, 0, 8),
        "max_history": Interval(int, 1, 10_000),
        "text_encoder": Options((*ENCODERS, NO_TEXT)),
        "temperature": Interval(float, 0, low_open=True),
        "logq_correction": Options((True, False)),
        "id_dropout": Interval(float, 0, 1),
        "batch_size": Interval(int, 2),  # a softmax over one item teaches nothing
    }
    search_space = {
        "dim": ("cat", [32, 64, 128]),
        "temperature": ("log", 0.02, 0.5),
        "id_dropout": ("float", 0.0, 0.5),
        "lr": ("log", 3e-4, 3e-3),
    }

    dim: int = 64
    layers: int = 1
    max_history: int = 50
    text_encoder: str = "auto"
    temperature: float = 0.05
    logq_correction: bool = True
    id_dropout: float = 0.1
    batch_size: int = 512
    epochs: int = 100
    patience: int = 5

    # ---------------------------------------------------------------------------------------------- inputs
    def _read_features(self, dataset: Dataset) -> None:
        """The fitted input state: item categories, item text and user attributes (all empty when absent)."""
        features = dataset.item_features
        lists = _category_lists(features) if features is not None else [[] for _ in range(dataset.n_items)]
        self.category_names_ = np.asarray(list(dict.fromkeys(c for cs in lists for c in cs)), dtype=str)
        self.item_categories_ = self._category_matrix(lists)
        self.text_encoder_, text = NO_TEXT, np.zeros((dataset.n_items, 0), dtype=np.float32)
        if features is not None and self.text_encoder != NO_TEXT:
            encoder = resolve_encoder(self.text_encoder)
            text = text_embeddings(item_documents(features), encoder)
            if text.shape[1] and np.abs(text).sum() > 0:
                self.text_encoder_ = encoder
            else:  # no item has any text: the tower has no text input
                text = np.zeros((dataset.n_items, 0), dtype=np.float32)
        self.item_text_ = text
        columns = [] if dataset.user_features is None else list(dataset.user_features.columns)
        codes, cardinalities = [], []
        for column in columns:
            values = dataset.user_features[column]
            present = values.notna().to_numpy()
            code, uniques = pd.factorize(values.astype(str).where(present))
            codes.append(np.where(present, code + 1, 0))  # 0: unknown
            cardinalities.append(len(uniques))
        self.user_attributes_ = np.stack(codes, 1).astype(np.int64) if codes else \
            np.zeros((dataset.n_users, 0), dtype=np.int64)
        self.user_cardinalities_ = cardinalities

    def _category_matrix(self, lists: list[list[str]]) -> sp.csr_matrix:
        """(len(lists), n_categories) binary matrix of the known categories of each list (others ignored)."""
        index = {name: j for j, name in enumerate(self.category_names_)}
        rows = [r for r, names in enumerate(lists) for name in dict.fromkeys(names) if name in index]
        cols = [index[name] for names in lists for name in dict.fromkeys(names) if name in index]
        return sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)),
                             shape=(len(lists), len(self.category_names_)))

    # --------------------------------------------------------------------------------------------- network
    def _build_network(self) -> torch.nn.Module:
        from torch import nn

        def tower(n_inputs: int) -> nn.Module:
            widths = [n_inputs * self.dim, *[2 * self.dim] * self.layers]
            hidden = [module for a, b in zip(widths, widths[1:], strict=False)
                      for module in (nn.Linear(a, b), nn.ReLU())]
            # No output bias: a shared offset would point every vector the same way before normalisation.
            return nn.Sequential(*hidden, nn.Linear(widths[-1], self.dim, bias=False))

        modules: dict[str, nn.Module] = {"item_id": nn.Embedding(self.n_items_ + 1, self.dim)}
        n_item_inputs = 1
        if len(self.category_names_):
            modules["item_categories"] = nn.Embedding(len(self.category_names_) + 1, self.dim, padding_idx=0)
            n_item_inputs += 1
        if self.item_text_.shape[1]:
            modules["item_text"] = nn.Linear(self.item_text_.shape[1], self.dim, bias=False)
            n_item_inputs += 1
        modules["item_tower"] = tower(n_item_inputs)
        modules["user_id"] = nn.Embedding(self.n_users_ + 1, self.dim)
        modules["user_attributes"] = nn.ModuleList(nn.Embedding(n + 1, self.dim) for n in self.user_cardinalities_)
        modules["user_tower"] = tower(2 + len(self.user_cardinalities_))
        return nn.ModuleDict(modules)

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """The fitted inputs on the device: item id of each item (0 for items without training interactions),
        padded category codes (0 is padding), text embeddings, user attribute codes."""
        import torch

        ids = np.where(self.item_known_, np.arange(1, self.n_items_ + 1), 0)
        return {"item_ids": torch.as_tensor(ids, device=device),
                "known": torch.as_tensor(np.r_[False, self.item_known_], device=device),
                "categories": torch.as_tensor(_padded_codes(self.item_categories_), device=device),
                "text": torch.as_tensor(self.item_text_, device=device),
                "user_attributes": torch.as_tensor(self.user_attributes_, device=device)}

    @staticmethod
    def _item_tower(net: torch.nn.Module, ids: torch.Tensor, categories: torch.Tensor,
                    text: torch.Tensor) -> torch.Tensor:
        """Unit item vectors from item ids (0: unknown), padded category codes and text embeddings."""
        import torch
        import torch.nn.functional as F

        parts = [net["item_id"](ids)]
        if "item_categories" in net:
            count = (categories > 0).sum(1, keepdim=True).clamp(min=1)
            parts.append(net["item_categories"](categories).sum(1) / count)
        if "item_text" in net:
            parts.append(net["item_text"](text))
        return F.normalize(net["item_tower"](torch.cat(parts, 1)).float(), dim=-1)

    @staticmethod
    def _user_tower(net: torch.nn.Module, users: torch.Tensor, attributes: torch.Tensor,
                    history: torch.Tensor) -> torch.Tensor:
        """Unit user vectors from user ids (0: unknown), attribute codes (0: unknown) and history items (item
        index + 1, 0: padding or left out)."""
        import torch
        import torch.nn.functional as F

        parts = [net["user_id"](users)]
        parts += [embedding(attributes[:, c]) for c, embedding in enumerate(net["user_attributes"])]
        # The history pools the item tower's id embeddings (as YouTube's DNN shares them), which every target
        # trains too; row 0 is the unknown id, left out of the pool.
        real = (history > 0)[..., None]
        parts.append((net["item_id"](history) * real).sum(1) / real.sum(1).clamp(min=1))
        return F.normalize(net["user_tower"](torch.cat(parts, 1)).float(), dim=-1)

    def _catalogue_vectors(self, net: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._item_tower(net, tensors["item_ids"], tensors["categories"], tensors["text"])

    def _history_vectors(self, net: torch.nn.Module, tensors: dict[str, torch.Tensor],
                         histories: Histories) -> torch.Tensor:
        import torch

        training = training_module()
        device = tensors["item_ids"].device
        known = known_rows(histories, self.n_users_)
        users = np.where(known, (histories.users if histories.users is not None else 0) + 1, 0)
        users_t = torch.as_tensor(users, device=device)
        attributes = tensors["user_attributes"][(users_t - 1).clamp(min=0)] * (users_t > 0)[:, None]
        history = torch.as_tensor(training.left_padded(histories, self.max_history), device=device)
        history = torch.where(tensors["known"][history], history, 0)
        return self._user_tower(net, users_t, attributes, history)

    # --------------------------------------------------------------------------------------------- fitting
    def fit(self, dataset: Dataset) -> Self:
        training, device = self._start_fit(dataset)
        train_data, validation = early_stopping_holdout(self.name, dataset, self.patience)
        self.n_items_, self.n_users_ = dataset.n_items, dataset.n_users
        self._read_features(dataset)
        # What the network learned ids for: with validation, an item only ever held out stays content-only.
        self.item_known_ = np.bincount(train_data.item_index, minlength=dataset.n_items) > 0
        with training.torch_threads(), training.seeded(self.random_state, device):
            net = self._build_network().to(device)
            tensors = self._tensors(device)
            log = self._train(net, tensors, train_data, validation, device)
        net.requires_grad_(False)
        self._keep(net, log)
        self._device_tensors, self._items = tensors, None
        return self

    def _train(self, net: torch.nn.Module, tensors: dict[str, torch.Tensor], data: Dataset,
               validation: tuple[Histories, np.ndarray] | None, device: torch.device) -> Any:
        import torch
        import torch.nn.functional as F

        training = training_module()
        items = torch.as_tensor(data.item_index.astype(np.int64), device=device)
        owners = torch.as_tensor(data.user_index.astype(np.int64), device=device)
        starts = torch.as_tensor(data.indptr[:-1], device=device)[owners]
        frequency = np.bincount(data.item_index, minlength=data.n_items) / data.n_interactions
        log_q = torch.as_tensor(np.log(np.maximum(frequency, 1e-12)), dtype=torch.float32, device=device)
        back = torch.arange(1, self.max_history + 1, device=device)
        content = "item_categories" in net or "item_text" in net
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        rng = np.random.default_rng(self.random_state)

        def epoch_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            """(examples, keep) per batch: keep[:, 0] whether an example keeps its user id and attributes,
            keep[:, 1] its item id (id_dropout), drawn here so that DDP workers deal them with the rows."""
            order = torch.as_tensor(rng.permutation(data.n_interactions), device=device)
            keep = torch.as_tensor(rng.random((data.n_interactions, 2)) >= self.id_dropout, device=device)
            for start in range(0, len(order), self.batch_size):
                if len(order) - start >= 2:  # a softmax over one item teaches nothing
                    yield order[start:start + self.batch_size], keep[start:start + self.batch_size]

        def loss(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
            entries, keep = batch
            target, user = items[entries], owners[entries]
            earlier = entries[:, None] - back[None, :]  # the max_history entries before each example
            history = torch.where(earlier >= starts[entries][:, None], items[earlier.clamp(min=0)] + 1, 0)
            history = torch.where(tensors["known"][history], history, 0)
            users = torch.where(keep[:, 0], user + 1, 0)
            attributes = tensors["user_attributes"][user] * keep[:, :1]
            ids = tensors["item_ids"][target]
            if content:
                ids = torch.where(keep[:, 1], ids, 0)
            queries = self._user_tower(net, users, attributes, history)
            keys = self._item_tower(net, ids, tensors["categories"][target], tensors["text"][target])
            # Under DDP every worker's items are negatives too, so the softmax spans the whole batch.
            keys, first = training.gathered(keys)
            targets, _ = training.gathered(target)
            mine = torch.arange(len(target), device=device)
            with torch.autocast(device.type, enabled=False):  # float32 logits: the temperature magnifies rounding
                logits = queries.float() @ keys.float().T / self.temperature
                if self.logq_correction:
                    logits = logits - log_q[targets][None, :]
                duplicate = targets[None, :] == target[:, None]
                duplicate[mine, mine + first] = False
                return F.cross_entropy(logits.masked_fill(duplicate, -torch.inf), mine + first)

        validate = None
        if validation is not None:
            query, truth = validation

            def validate() -> float:
                catalogue = self._catalogue_vectors(net, tensors)
                return training.ndcg_at_10(lambda h: self._history_vectors(net, tensors, h) @ catalogue.T,
                                           query, truth)

        return training.train_batches(net, loss, epoch_batches, optimizer=optimizer, rng=rng, device=device,
                                      epochs=self.epochs, patience=self.patience, validate=validate,
                                      **self._training_options())

    # --------------------------------------------------------------------------------------------- scoring
    def _new_network(self) -> torch.nn.Module:
        return self._build_network().requires_grad_(False)

    def _inputs(self) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
        """The fitted network and its input tensors on its device, rebuilt from the saved state after load."""
        net, device = self._network()
        if getattr(self, "_device_tensors", None) is None:
            self._device_tensors, self._items = self._tensors(device), None
        return net, self._device_tensors

    def item_embeddings(self) -> np.ndarray:
        """(n_items, dim) float32 item tower outputs, L2-normalised: a history's score of an item is the inner
        product of its `user_embeddings` row with the item's row, so these vectors index ANN retrieval.
        """
        self._check_fitted()
        return self._item_matrix().copy()

    def _item_matrix(self) -> np.ndarray:
        """The catalogue's item vectors, computed once per fitted or loaded model."""
        net, tensors = self._inputs()
        if self._items is None:
            import torch

            with training_module().torch_threads(), torch.no_grad():
                self._items = self._catalogue_vectors(net, tensors).cpu().numpy()
        return self._items

    def user_embeddings(self, histories: Histories) -> np.ndarray:
        """(len(histories), dim) float32 user tower outputs, L2-normalised (the queries for `item_embeddings`)."""
        self._check_fitted(histories)
        import torch

        training = training_module()
        net, tensors = self._inputs()
        out = np.empty((len(histories), self.dim), dtype=np.float32)
        with training.torch_threads(), torch.no_grad():
            for start in range(0, len(histories), training.SCORE_BATCH):
                batch = histories[start:start + training.SCORE_BATCH]
                out[start:start + len(batch)] = self._history_vectors(net, tensors, batch).cpu().numpy()
        return out

    def embed_items(self, item_features: pd.DataFrame) -> np.ndarray:
        """(len(item_features), dim) float32 item tower outputs of items outside the catalogue, from their
        features alone (the unknown id, their known categories and, when the model reads text, their text),
        L2-normalised like `item_embeddings`; categories the training catalogue lacks are ignored.

        Text is encoded with the model's encoder: MiniLM embeds any document, but TF-IDF/LSA vectors exist only
        for the catalogue they were computed on, so a model that read TF-IDF text raises NotSupportedError.
        """
        self._check_fitted()
        if not isinstance(item_features, pd.DataFrame):
            raise DataError(f"embed_items takes a DataFrame of item features, got {type(item_features).__name__}")
        import torch

        text = np.zeros((len(item_features), self.item_text_.shape[1]), dtype=np.float32)
        if self.item_text_.shape[1]:
            if self.text_encoder_ != "minilm":
                raise NotSupportedError(f"{self.name} read {self.text_encoder_} text, whose vectors exist only for "
                                        f"its training catalogue; fit with text_encoder='minilm' to embed new items")
            text = text_embeddings(item_documents(item_features), "minilm")
        categories = _padded_codes(self._category_matrix(_category_lists(item_features)))
        net, tensors = self._inputs()
        device = tensors["item_ids"].device
        with training_module().torch_threads(), torch.no_grad():
            vectors = self._item_tower(net, torch.zeros(len(item_features), dtype=torch.int64, device=device),
                                       torch.as_tensor(categories, device=device), torch.as_tensor(text, device=device))
        return vectors.cpu().numpy()

    def score(self, histories: Histories) -> np.ndarray:
        return self.user_embeddings(histories) @ self._item_matrix().T

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine between item tower outputs."""
        self._check_fitted()
        return similar_items_cosine(self._item_matrix(), items, k)


def _category_lists(features: pd.DataFrame) -> list[list[str]]:
    """Every row's categories (as strings) from the first of CATEGORY_FIELDS the frame has."""
    column = next((c for c in CATEGORY_FIELDS if c in features.columns), None)
    if column is None:
        return [[] for _ in range(len(features))]
    return [[str(v) for v in value] if isinstance(value, list | tuple | np.ndarray) else []
            for value in features[column]]


def _padded_codes(categories: sp.csr_matrix) -> np.ndarray:
    """(n_rows, max categories per row, at least 1) int64: each row's category indices + 1, 0-padded."""
    counts = np.diff(categories.indptr)
    out = np.zeros((categories.shape[0], max(1, int(counts.max(initial=0)))), dtype=np.int64)
    position = np.arange(categories.nnz) - np.repeat(categories.indptr[:-1], counts)
    out[np.repeat(np.arange(categories.shape[0]), counts), position] = categories.indices + 1
    return out
