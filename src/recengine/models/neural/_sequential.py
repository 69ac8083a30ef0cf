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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.errors import ArtifactError, ConfigError, DataError
from recengine.models._factors import similar_items_cosine
from recengine.models.base import Interval, Options
from recengine.models.neural._base import NeuralRecommender, early_stopping_holdout, training_module

if TYPE_CHECKING:
    import torch

@dataclass(eq=False, repr=False, kw_only=True)
class SequentialRecommender(NeuralRecommender):
    """Shared hyper-parameters, fit, scoring and item similarity of the neural next-item models; subclasses
    build the network. hidden: embedding width; max_len: the latest items read; loss: "ce" (full softmax over
    all items) or "sampled" (softmax over the target and `negatives` uniform negatives). refit: after early
    stopping has chosen the epoch, train again from the same start on all the data, each user's latest item
    included, for that many epochs, and keep those weights (up to twice the training time; on amazon-beauty
    +20-30% test NDCG@10, see docs/benchmarks.md)."""

    parameter_constraints = {
        **NeuralRecommender.parameter_constraints,
        "hidden": Interval(int, 1, 4096),
        "max_len": Interval(int, 1, 10_000),
        "dropout": Interval(float, 0, 0.95),
        "loss": Options(("ce", "sampled")),
        "negatives": Interval(int, 1),
        "refit": Options((True, False)),
    }

    hidden: int = 64
    max_len: int = 50
    dropout: float = 0.5
    loss: str = "ce"
    negatives: int = 256
    refit: bool = False

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.refit and not self.patience:
            raise ConfigError("refit=True trains again on all the data for the epochs early stopping chose: set "
                              "patience too")

    # ------------------------------------------------------------------------------------- subclass hooks
    def _build_network(self, n_items: int) -> torch.nn.Module:
        """A module with an ``embedding`` Embedding of n_items + 1 rows (row 0 is padding)."""
        raise NotImplementedError

    def _encode(self, net: torch.nn.Module, sequences: torch.Tensor) -> torch.Tensor:
        """(batch, length) right-aligned padded item indices → (batch, length, hidden): position i's output
        reads positions <= i only and does not depend on the amount of padding."""
        raise NotImplementedError

    def _new_network(self) -> torch.nn.Module:
        return self._build_network(self.n_items_)

    # --------------------------------------------------------------------------------------------- fitting
    def fit(self, dataset: Dataset) -> Self:
        training, device = self._start_fit(dataset)
        train_data, validation = early_stopping_holdout(self.name, dataset, self.patience)
        net, log = self._train_network(training, device, train_data, validation, self.epochs, "")
        if self.refit:
            selected = log
            if selected.best_epoch < 1:
                raise DataError(f"{self.name}: no epoch had a validation score to refit for (did the loss diverge?)")
            net, log = self._train_network(training, device, dataset, None, selected.best_epoch, "refit")
            if len(log.loss) != selected.best_epoch:  # a resumed refit checkpoint of another run
                raise ArtifactError(f"{self.name}: {Path(self.checkpoint_dir or '') / 'refit'} holds a refit of "
                                    f"{len(log.loss)} epochs where early stopping chose {selected.best_epoch}; "
                                    f"remove it or set resume=False")
            log.validation, log.best_epoch = selected.validation, selected.best_epoch
        self.n_items_ = dataset.n_items
        self._keep(net, log)
        return self

    def _train_network(self, training: Any, device: torch.device, data: Dataset,
                       validation: tuple[Histories, np.ndarray] | None, epochs: int, stage: str
                       ) -> tuple[torch.nn.Module, Any]:
        """A network trained on `data` from a seeded start for up to `epochs` epochs (early stopping when
        `validation` is given), and its training log; `stage` names its checkpoint subdirectory."""
        sequences = training.left_padded(data.histories(), self.max_len + 1)
        sequences = sequences[(sequences > 0).sum(1) >= 2]  # a sequence of one item predicts nothing
        if len(sequences) == 0:
            raise DataError(f"{self.name}: no user has two or more interactions to learn a next item from")
        import torch

        with training.torch_threads(), training.seeded(self.random_state, device):
            net = self._build_network(data.n_items)
            # Unit-variance item embeddings (torch's default) give logits of size ~hidden at the start, which
            # saturates the softmax over all items; 1/sqrt(hidden) starts them near uniform.
            with torch.no_grad():
                net["embedding"].weight.normal_(std=self.hidden ** -0.5)[0] = 0.0
            net = net.to(device)
            validate = None if validation is None else functools.partial(
                training.ndcg_at_10, functools.partial(self._logits, net, device), *validation)
            log = training.train(
                net, functools.partial(self._loss, net), sequences, epochs=epochs, batch_size=self.batch_size,
                lr=self.lr, weight_decay=self.weight_decay,
                patience=0 if validation is None else self.patience,
                validate=validate, device=device, **self._training_options(stage))
        return net, log

    def _loss(self, net: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        inputs, targets = batch[:, :-1], batch[:, 1:]
        real = inputs > 0
        hidden = self._encode(net, inputs)[real]
        target = targets[real] - 1
        items = net["embedding"].weight[1:]
        if self.loss == "ce":
            return F.cross_entropy(hidden @ items.T, target)
        negatives = torch.randint(0, items.shape[0], (self.negatives,), device=batch.device)
        positive = (hidden * items[target]).sum(-1, keepdim=True)
        negative = (hidden @ items[negatives].T).masked_fill(negatives[None, :] == target[:, None], -torch.inf)
        logits = torch.cat([positive, negative], 1)
        return F.cross_entropy(logits, torch.zeros_like(target))

    # --------------------------------------------------------------------------------------------- scoring
    def _logits(self, net: torch.nn.Module, device: torch.device, histories: Histories) -> torch.Tensor:
        import torch

        training = training_module()
        sequences = training.trim(torch.as_tensor(training.left_padded(histories, self.max_len), device=device))
        return self._encode(net, sequences)[:, -1] @ net["embedding"].weight[1:].T

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine between the learned item embeddings (which are also the output layer)."""
        self._check_fitted()
        net, _ = self._network()
        return similar_items_cosine(net["embedding"].weight[1:].detach().float().cpu().numpy(), items, k)
