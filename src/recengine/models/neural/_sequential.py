"""The base of next-item models: a network maps each position of an item sequence to a vector in item-embedding
space; the logits of every item are its dot products with the item embeddings.

Training reads each user's latest ``max_len + 1`` items and predicts, at every position, the next item: full
cross-entropy over all items ("CE SASRec", Klenitskiy & Vasilev, RecSys 2023), or a sampled softmax against
``negatives`` uniform negatives shared by the batch. Early stopping holds out each user's latest training item
(a leave-one-out validation split of the training data) and keeps the epoch with the best NDCG@10 over all items.
Scoring reads the latest ``max_len`` items of each history as given, so a new event changes the next score
without retraining, and users the model never saw score from their history alone.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.data.splits import leave_one_out_split
from recengine.errors import DataError, NotSupportedError
from recengine.models._factors import similar_items_cosine
from recengine.models.base import Interval, Options, Recommender

if TYPE_CHECKING:
    import torch


def training_module() -> Any:
    """recengine.models.neural._training, or a NotSupportedError saying how to install torch."""
    try:
        from recengine.models.neural import _training
    except ImportError as error:
        if error.name != "torch":
            raise
        raise NotSupportedError("neural models need PyTorch: pip install 'recengine[text]' (or pip install "
                                "torch)") from error
    return _training


class SequentialRecommender(Recommender):
    """Shared fit / score / persistence of the neural next-item models; subclasses build the network."""

    parameter_constraints = {
        "hidden": Interval(int, 1, 4096),
        "max_len": Interval(int, 1, 10_000),
        "dropout": Interval(float, 0, 0.95),
        "loss": Options(("ce", "sampled")),
        "negatives": Interval(int, 1),
        "lr": Interval(float, 0, low_open=True),
        "weight_decay": Interval(float, 0),
        "batch_size": Interval(int, 1),
        "epochs": Interval(int, 1, 100_000),
        "patience": Interval(int, 0),
        "device": Options(("auto", "cpu", "cuda")),
        "random_state": Interval(int, 0),
    }

    # Set by subclasses' constructors (scikit-learn style: each lists its own hyper-parameters).
    hidden: int
    max_len: int
    dropout: float
    loss: str
    negatives: int
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    patience: int
    device: str
    random_state: int

    # ------------------------------------------------------------------------------------- subclass hooks
    def _build_network(self, n_items: int) -> torch.nn.Module:
        """A module with an ``embedding`` Embedding of n_items + 1 rows (row 0 is padding)."""
        raise NotImplementedError

    def _encode(self, net: torch.nn.Module, sequences: torch.Tensor) -> torch.Tensor:
        """(batch, length) right-aligned padded item indices → (batch, length, hidden): position i's output
        reads positions <= i only and does not depend on the amount of padding."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------------- fitting
    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        training = training_module()
        device = training.resolve_device(self.device)
        train_histories, validate = dataset.histories(), None
        if self.patience:
            try:
                held_out = leave_one_out_split(dataset)
            except DataError as error:
                raise DataError(f"{self.name}: cannot hold out a validation item per user ({error}); set "
                                f"patience=0 to train for a fixed number of epochs without validation") from error
            train_histories = held_out.train.histories()
            truth = held_out.truth.indices.astype(np.int64)  # one held-out item per evaluated row
        sequences = training.left_padded(train_histories, self.max_len + 1)
        sequences = sequences[(sequences > 0).sum(1) >= 2]  # a sequence of one item predicts nothing
        if len(sequences) == 0:
            raise DataError(f"{self.name}: no user has two or more interactions to learn a next item from")
        import torch

        with training.torch_threads(), training.seeded(self.random_state, device):
            net = self._build_network(dataset.n_items)
            # Unit-variance item embeddings (torch's default) give logits of size ~hidden at the start, which
            # saturates the softmax over all items; 1/sqrt(hidden) starts them near uniform.
            with torch.no_grad():
                net["embedding"].weight.normal_(std=self.hidden ** -0.5)[0] = 0.0
            net = net.to(device)
            if self.patience:
                validate = functools.partial(training.ndcg_at_10, functools.partial(self._logits, net, device=device),
                                             held_out.query, truth)
            log = training.train(
                net, lambda batch: self._loss(net, batch), sequences, epochs=self.epochs,
                batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay, patience=self.patience,
                validate=validate, seed=self.random_state, device=device, label=self.name)
        self._net = net
        self.n_items_ = dataset.n_items
        self.weights_ = training.flatten(net)
        self.validation_ndcg_ = log.validation
        self.best_epoch_ = log.best_epoch
        self.seconds_per_epoch_ = log.seconds_per_epoch
        return self

    def _loss(self, net: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        inputs, targets = batch[:, :-1], batch[:, 1:]
        real = inputs > 0
        hidden = self._encode(net, inputs)[real]
        target = targets[real] - 1
        items = net["embedding"].weight[1:]
        if self.loss == "ce":
            return F.cross_entropy(hidden @ items.T, target)
        import torch

        negatives = torch.randint(0, items.shape[0], (self.negatives,), device=batch.device)
        positive = (hidden * items[target]).sum(-1, keepdim=True)
        negative = (hidden @ items[negatives].T).masked_fill(negatives[None, :] == target[:, None], -torch.inf)
        logits = torch.cat([positive, negative], 1)
        return F.cross_entropy(logits, torch.zeros_like(target))

    # --------------------------------------------------------------------------------------------- scoring
    def _logits(self, net: torch.nn.Module, histories: Histories, *, device: torch.device) -> torch.Tensor:
        import torch

        training = training_module()
        sequences = training.trim(torch.as_tensor(training.left_padded(histories, self.max_len), device=device))
        return self._encode(net, sequences)[:, -1] @ net["embedding"].weight[1:].T

    def _network(self) -> tuple[torch.nn.Module, torch.device]:
        """The fitted network on its device, rebuilt from weights_ after load."""
        net = getattr(self, "_net", None)
        if net is None:
            training = training_module()
            net = training.unflatten(self.weights_, self._build_network(self.n_items_))
            self._net = net = net.to(training.resolve_device(self.device)).eval()
        return net, next(net.parameters()).device

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine between the learned item embeddings (which are also the output layer)."""
        self._check_fitted()
        net, _ = self._network()
        return similar_items_cosine(net["embedding"].weight[1:].detach().float().cpu().numpy(), items, k)

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        import torch

        training = training_module()
        net, device = self._network()
        out = np.empty((len(histories), self.n_items_), dtype=np.float32)
        with training.torch_threads(), torch.no_grad():
            for start in range(0, len(histories), training.SCORE_BATCH):
                stop = min(start + training.SCORE_BATCH, len(histories))
                out[start:stop] = self._logits(net, histories[start:stop], device=device).float().cpu().numpy()
        return out
