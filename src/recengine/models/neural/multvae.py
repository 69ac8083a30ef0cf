"""Mult-VAE (Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018).

A user's binary row x over all items is L2-normalized, passed through dropout and an encoder [n_items → 600 →
2 × 200] (tanh) giving the mean and log-variance of a 200-d Gaussian; a decoder [200 → 600 → n_items] maps a
sample z to logits, trained with the multinomial log-likelihood sum_i x_i log softmax(logits)_i minus beta times
the KL divergence to N(0, I), beta annealed linearly from 0 to ``beta_cap`` over ``total_anneal_steps`` updates.

The model keeps no per-user state: a history's scores are the decoder's logits at the encoder's mean for its
binary row, so users never seen in training (the strong-generalization protocol) score like any other.

With ``patience`` > 0, ``fit`` holds out ``validation_users`` of the training users (at random, seeded; as the
paper does), folds in a random 80% of each one's items and measures NDCG@10 of the other 20% after every epoch;
the best epoch's weights are kept and training stops after ``patience`` epochs without improvement. The kept
model learned from the other users.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import numpy as np

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.data.splits import strong_generalization_split
from recengine.errors import DataError
from recengine.models.base import Interval
from recengine.models.neural._base import NeuralRecommender

if TYPE_CHECKING:
    import torch


@dataclass(eq=False, repr=False, kw_only=True)
class MultVAE(NeuralRecommender):
    """Mult-VAE^PR of the paper. Defaults are the paper's: [600, 200], input dropout 0.5, beta_cap 0.2, Adam
    lr 1e-3, batch 500, weight decay standing in for its L2 penalty; ``total_anneal_steps`` is lowered from the
    paper's 200,000 (for ML-20M's 117k training users) to suit catalogues of thousands of users."""

    name = "multvae"
    parameter_constraints = {
        **NeuralRecommender.parameter_constraints,
        "hidden": Interval(int, 1, 65_536),
        "latent": Interval(int, 1, 4096),
        "dropout": Interval(float, 0, 0.95),
        "beta_cap": Interval(float, 0),
        "total_anneal_steps": Interval(int, 1),
        "validation_users": Interval(float, 0, 0.5, low_open=True),
    }
    search_space = {
        "dropout": ("float", 0.2, 0.7),
        "beta_cap": ("float", 0.0, 0.5),
        "lr": ("log", 3e-4, 3e-3),
    }

    hidden: int = 600
    latent: int = 200
    dropout: float = 0.5
    beta_cap: float = 0.2
    total_anneal_steps: int = 20_000
    batch_size: int = 500
    patience: int = 20
    validation_users: float = 0.1

    # ------------------------------------------------------------------------------------------- network
    def _build_network(self, n_items: int) -> torch.nn.Module:
        from torch import nn

        net = nn.ModuleDict({
            "encoder": nn.Linear(n_items, self.hidden),
            "latent": nn.Linear(self.hidden, 2 * self.latent),
            "decoder": nn.Linear(self.latent, self.hidden),
            "output": nn.Linear(self.hidden, n_items),
        })
        # The paper's initialisation: Xavier weights, small normal biases.
        for layer in net.values():
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=0.001)
        return net

    def _forward(self, net: torch.nn.Module, rows: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Logits, mean and log-variance for (B, n_items) binary rows; samples z only while training."""
        import torch
        import torch.nn.functional as F

        x = F.dropout(F.normalize(rows, dim=1), self.dropout, net.training)
        mean, log_var = net["latent"](torch.tanh(net["encoder"](x))).chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * log_var) if net.training else mean
        return net["output"](torch.tanh(net["decoder"](z))), mean, log_var

    def _new_network(self) -> torch.nn.Module:
        return self._build_network(self.n_items_)

    def _logits(self, net: torch.nn.Module, device: torch.device, histories: Histories) -> torch.Tensor:
        import torch

        rows = torch.as_tensor(histories.matrix("binary").toarray(), device=device)
        return self._forward(net, rows)[0]

    # --------------------------------------------------------------------------------------------- fitting
    def fit(self, dataset: Dataset) -> Self:
        training, device = self._start_fit(dataset)
        train_data, validate = dataset, None
        if self.patience:
            try:
                held_out = strong_generalization_split(dataset, test_users_fraction=self.validation_users,
                                                       min_interactions=2, random_state=self.random_state)
            except DataError as error:
                raise DataError(f"{self.name}: cannot hold out validation users ({error}); set patience=0 to "
                                f"train for a fixed number of epochs without validation") from error
            train_data = held_out.train
        import torch

        matrix = train_data.matrix("binary")
        matrix = matrix[np.diff(matrix.indptr) > 0]  # users held out for validation have empty rows here
        rng = np.random.default_rng(self.random_state)
        counts = {"updates": 0}  # optimizer steps so far, for the KL annealing (checkpointed)
        with training.torch_threads(), training.seeded(self.random_state, device):
            net = self._build_network(dataset.n_items).to(device)
            optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            if self.patience:
                truth = held_out.truth
                validate = functools.partial(training.ndcg_at_10_of_sets,
                                             functools.partial(self._logits, net, device), held_out.query,
                                             truth.indices, truth.indptr)

            def epoch_batches() -> Iterator[torch.Tensor]:
                order = rng.permutation(matrix.shape[0])
                for start in range(0, len(order), self.batch_size):
                    yield torch.as_tensor(matrix[order[start:start + self.batch_size]].toarray(), device=device)

            def loss(rows: torch.Tensor) -> torch.Tensor:
                logits, mean, log_var = self._forward(net, rows)
                likelihood = (torch.log_softmax(logits.float(), 1) * rows).sum(1).mean()
                kl = (0.5 * (log_var.exp() + mean ** 2 - 1 - log_var).float().sum(1)).mean()
                beta = min(self.beta_cap, counts["updates"] / self.total_anneal_steps)
                counts["updates"] += 1  # one loss per optimizer step
                return -likelihood + beta * kl

            log = training.train_batches(net, loss, epoch_batches, optimizer=optimizer, rng=rng, device=device,
                                         epochs=self.epochs, patience=self.patience, validate=validate,
                                         state=counts, **self._training_options())
        self.n_items_ = dataset.n_items
        self._keep(net, log)
        return self
