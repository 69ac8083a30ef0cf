"""Neural collaborative filtering (He et al., "Neural Collaborative Filtering", WWW 2017): GMF, MLP and NeuMF.

Each model scores a (user, item) pair from a learned user embedding and a learned item embedding:

* GMF: ``h . (p_u * q_i)``, a generalized matrix factorization;
* MLP: a ReLU tower over the concatenation ``[p_u, q_i]``;
* NeuMF: both, with their own embeddings, joined in one output layer; with ``pretrain=True`` it starts from a
  fitted GMF and a fitted MLP (output layer ``[alpha h_gmf, (1 - alpha) h_mlp]``, alpha = 0.5) and is then trained
  with plain SGD, as in the paper.

Training is binary cross-entropy on the interactions (label 1) and ``n_negatives`` items per interaction that the
user has not interacted with (label 0), drawn afresh each epoch from a seeded generator, with Adam on mini-batches.
With ``patience`` > 0 each user's latest training interaction is held out (a leave-one-out validation split of the
training data), NDCG@10 over all items is measured after every epoch, the best epoch's weights are kept, and
training stops after ``patience`` epochs without improvement; the kept model learned from the rest.

Users are learned embeddings, so a history that is exactly a training user's (``Histories.users`` set) scores
with that user's embedding. Any other history (a new user, or a known one with fresh events) is folded in: its
user embedding(s) start at the mean of the learned ones and take ``fold_in_steps`` Adam steps on the same loss
with every item-side weight frozen. The fold-in loss is computed over the whole catalogue rather than sampled —
every history item a positive, every other item a negative weighted so that negatives count ``n_negatives``
times the positives in total, as in training — so folding in is deterministic and a row's result does not
depend on the other rows in its batch. An empty history keeps the mean user embedding.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.models._factors import known_rows, similar_items_cosine
from recengine.models.base import Interval, Options
from recengine.models.neural._base import NeuralRecommender, early_stopping_holdout, training_module

if TYPE_CHECKING:
    import torch

#: Rounds of redrawing negatives that hit a user's own items; a user who has nearly every item keeps fewer.
_NEGATIVE_DRAWS = 50
#: Upper bound on the floats of one (rows, items, first tower layer) block when MLP towers score every item.
_TOWER_BLOCK = 1 << 23
#: NeuMF's weight on the GMF half of the output layer when initialised from pre-trained GMF and MLP.
PRETRAIN_ALPHA = 0.5


@dataclass(eq=False, repr=False, kw_only=True)
class _NCF(NeuralRecommender):
    """Shared hyper-parameters, fitting, scoring, fold-in and persistence of GMF, MLP and NeuMF; ``_parts``
    says which halves a model has ("gmf", "mlp")."""

    _parts: ClassVar[tuple[str, ...]] = ()
    parameter_constraints = {
        **NeuralRecommender.parameter_constraints,
        "factors": Interval(int, 1, 4096),
        "n_negatives": Interval(int, 1, 1000),
        "fold_in_steps": Interval(int, 0, 10_000),
        "fold_in_lr": Interval(float, 0, low_open=True),
    }
    search_space = {
        "factors": ("cat", [8, 16, 32, 64]),
        "n_negatives": ("int", 1, 8),
        "lr": ("log", 3e-4, 3e-3),
    }

    factors: int = 8
    n_negatives: int = 4
    batch_size: int = 256
    epochs: int = 50
    patience: int = 5
    fold_in_steps: int = 30
    fold_in_lr: float = 0.1

    # ------------------------------------------------------------------------------------------- network
    def _tower_sizes(self) -> list[int]:
        """MLP hidden layer widths, halving down to `factors`; each side's embedding is as wide as the first
        layer (factors 8, 3 layers: embeddings 32 + 32 → 32 → 16 → 8, the NCF code's [64, 32, 16, 8])."""
        return [self.factors * 2 ** (self.mlp_layers - 1 - j) for j in range(self.mlp_layers)]

    def _build_network(self, parts: tuple[str, ...], n_users: int, n_items: int) -> torch.nn.Module:
        from torch import nn

        modules: dict[str, nn.Module] = {}
        width = 0
        if "gmf" in parts:
            modules["user_gmf"] = nn.Embedding(n_users, self.factors)
            modules["item_gmf"] = nn.Embedding(n_items, self.factors)
            width += self.factors
        if "mlp" in parts:
            sizes = self._tower_sizes()
            modules["user_mlp"] = nn.Embedding(n_users, sizes[0])
            modules["item_mlp"] = nn.Embedding(n_items, sizes[0])
            modules["tower"] = nn.ModuleList(
                [nn.Linear(a, b) for a, b in zip([2 * sizes[0], *sizes[:-1]], sizes, strict=True)])
            width += sizes[-1]
        modules["output"] = nn.Linear(width, 1)
        net = nn.ModuleDict(modules)
        # Small embeddings (the NCF code's N(0, 0.01)) start every logit near 0.
        for name in ("user_gmf", "item_gmf", "user_mlp", "item_mlp"):
            if name in net:
                nn.init.normal_(net[name].weight, std=0.01)
        return net

    @staticmethod
    def _pair_logits(net: torch.nn.Module, users: dict[str, torch.Tensor], items: torch.Tensor) -> torch.Tensor:
        """Logits of B pairs: users maps each part to (B, width) user vectors, items is (B,)."""
        import torch

        halves = []
        if "user_gmf" in users:
            halves.append(users["user_gmf"] * net["item_gmf"](items))
        if "user_mlp" in users:
            x = torch.cat([users["user_mlp"], net["item_mlp"](items)], 1)
            for layer in net["tower"]:
                x = torch.relu(layer(x))
            halves.append(x)
        return net["output"](torch.cat(halves, 1))[:, 0]

    @staticmethod
    def _all_logits(net: torch.nn.Module, users: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, n_items) logits of every item for B user vectors, without materializing B * n_items pairs for
        GMF (a matrix product) and in blocks of rows for the MLP tower."""
        import torch

        weight, bias = net["output"].weight[0], net["output"].bias[0]
        n = len(next(iter(users.values())))
        logits = bias.expand(n, 1)
        offset = 0
        if "user_gmf" in users:
            k = users["user_gmf"].shape[1]
            logits = logits + (users["user_gmf"] * weight[:k]) @ net["item_gmf"].weight.T
            offset = k
        if "user_mlp" in users:
            tower = net["tower"]
            first, width = tower[0], tower[0].weight.shape[1] // 2
            # The first layer of [p_u, q_i] is W_u p_u + W_i q_i + b: each half computed once per user or item.
            user_side = users["user_mlp"] @ first.weight[:, :width].T
            item_side = net["item_mlp"].weight @ first.weight[:, width:].T + first.bias
            step = max(1, _TOWER_BLOCK // max(1, item_side.numel()))
            blocks = []
            for start in range(0, n, step):
                x = torch.relu(user_side[start:start + step, None, :] + item_side[None])
                for layer in tower[1:]:
                    x = torch.relu(layer(x))
                blocks.append(x @ weight[offset:])
            logits = logits + torch.cat(blocks, 0)
        return logits

    # --------------------------------------------------------------------------------------------- fitting
    def fit(self, dataset: Dataset) -> Self:
        training, device = self._start_fit(dataset)
        train_data, validation = early_stopping_holdout(self.name, dataset, self.patience)
        with training.torch_threads():
            net, logs = self._fit_network(train_data, validation, device)
        net.requires_grad_(False)  # from here on only fold-in's user vectors learn
        self.n_items_ = dataset.n_items
        self.n_users_ = dataset.n_users
        self._keep(net, logs[-1])
        return self

    def _fit_network(self, data: Dataset, validation: tuple[Histories, np.ndarray] | None,
                     device: torch.device) -> tuple[torch.nn.Module, list[Any]]:
        """The trained network and the training log of each stage (one stage unless pre-training)."""
        net = self._build_seeded(self._parts, data, device)
        return net, [self._train(net, data, validation, device, sgd=False, stage="")]

    def _build_seeded(self, parts: tuple[str, ...], data: Dataset, device: torch.device) -> torch.nn.Module:
        training = training_module()
        with training.seeded(self.random_state, device):
            return self._build_network(parts, data.n_users, data.n_items).to(device)

    def _train(self, net: torch.nn.Module, data: Dataset, validation: tuple[Histories, np.ndarray] | None,
               device: torch.device, *, sgd: bool, stage: str, lr: float | None = None) -> Any:
        """Train `net` on the positives of `data` and fresh negatives each epoch; `stage` names its checkpoint
        directory (NeuMF's pre-training has three stages)."""
        import torch
        import torch.nn.functional as F

        training = training_module()
        positives = data.matrix("binary")
        positives.sort_indices()
        users = np.repeat(np.arange(positives.shape[0], dtype=np.int64), np.diff(positives.indptr))
        items = positives.indices.astype(np.int64)
        keys = users * data.n_items + items  # sorted: CSR rows in order, columns sorted within each row
        rng = np.random.default_rng(self.random_state)
        parameters = list(net.parameters())
        optimizer = torch.optim.SGD(parameters, lr=lr or self.lr, weight_decay=self.weight_decay) if sgd else \
            torch.optim.Adam(parameters, lr=lr or self.lr, weight_decay=self.weight_decay)
        parts = [p for p in ("gmf", "mlp") if f"user_{p}" in net]

        def epoch_batches() -> Iterator[tuple[torch.Tensor, ...]]:
            neg_users, neg_items = _draw_negatives(users, keys, data.n_items, self.n_negatives, rng)
            u = np.concatenate([users, neg_users])
            i = np.concatenate([items, neg_items])
            y = np.concatenate([np.ones(len(users), np.float32), np.zeros(len(neg_users), np.float32)])
            order = torch.as_tensor(rng.permutation(len(u)), device=device)
            u_t, i_t, y_t = (torch.as_tensor(a, device=device)[order] for a in (u, i, y))
            for start in range(0, len(u), self.batch_size):
                yield u_t[start:start + self.batch_size], i_t[start:start + self.batch_size], \
                    y_t[start:start + self.batch_size]

        def loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
            batch_users, batch_items, labels = batch
            vectors = {f"user_{p}": net[f"user_{p}"](batch_users) for p in parts}
            return F.binary_cross_entropy_with_logits(self._pair_logits(net, vectors, batch_items).float(), labels)

        validate = None
        if validation is not None:
            query, truth = validation
            validate = functools.partial(training.ndcg_at_10, functools.partial(self._known_logits, net, device),
                                         query, truth)
        return training.train_batches(net, loss, epoch_batches, optimizer=optimizer, rng=rng, device=device,
                                      epochs=self.epochs, patience=self.patience, validate=validate,
                                      **self._training_options(stage))

    def _known_logits(self, net: torch.nn.Module, device: torch.device, histories: Histories) -> torch.Tensor:
        import torch

        rows = torch.as_tensor(histories.users, device=device)
        return self._all_logits(net, {name: net[name](rows) for name in net if name.startswith("user_")})

    # --------------------------------------------------------------------------------------------- scoring
    def _new_network(self) -> torch.nn.Module:
        return self._build_network(self._parts, self.n_users_, self.n_items_).requires_grad_(False)

    def _fold_in(self, net: torch.nn.Module, histories: Histories, device: torch.device) -> dict[str, torch.Tensor]:
        """User vectors for histories the model has no embedding for (see the module docstring)."""
        import torch
        import torch.nn.functional as F

        n = len(histories)
        labels = torch.as_tensor(histories.matrix("binary").toarray(), device=device)
        n_pos = labels.sum(1, keepdim=True)
        negative_weight = self.n_negatives * n_pos / (self.n_items_ - n_pos).clamp(min=1)
        weights = torch.where(labels > 0, torch.ones_like(labels), negative_weight.expand_as(labels))
        users = {name: net[name].weight.mean(0).expand(n, -1).clone().requires_grad_(True)
                 for name in net if name.startswith("user_")}
        if self.fold_in_steps == 0 or n == 0:
            return users
        optimizer = torch.optim.Adam(list(users.values()), lr=self.fold_in_lr)
        with torch.enable_grad():
            for _ in range(self.fold_in_steps):
                loss = F.binary_cross_entropy_with_logits(self._all_logits(net, users), labels, weights,
                                                          reduction="sum")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        return {name: vector.detach() for name, vector in users.items()}

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        import torch

        training = training_module()
        net, device = self._network()
        known = known_rows(histories, self.n_users_)
        out = np.empty((len(histories), self.n_items_), dtype=np.float32)
        with training.torch_threads(), torch.no_grad():
            for start in range(0, len(histories), training.SCORE_BATCH):
                stop = min(start + training.SCORE_BATCH, len(histories))
                rows = np.arange(start, stop)
                if known[rows].any():
                    mine = rows[known[rows]]
                    out[mine] = self._known_logits(net, device, histories[mine]).float().cpu().numpy()
                fresh = rows[~known[rows]]
                # Fold-in back-propagates through the tower for every item: fewer rows at a time bound memory.
                step = max(1, _TOWER_BLOCK // (self.n_items_ * self._tower_sizes()[0])) if "mlp" in self._parts \
                    else training.SCORE_BATCH
                for chunk in (fresh[j:j + step] for j in range(0, len(fresh), step)):
                    users = self._fold_in(net, histories[chunk], device)
                    out[chunk] = self._all_logits(net, users).float().cpu().numpy()
        return out

    def similar_items(self, items: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine between the items' learned embeddings (both halves, side by side, for NeuMF)."""
        self._check_fitted()
        net, _ = self._network()
        vectors = [net[name].weight.float().cpu().numpy() for name in ("item_gmf", "item_mlp") if name in net]
        return similar_items_cosine(np.concatenate(vectors, 1), items, k)


def _draw_negatives(users: np.ndarray, keys: np.ndarray, n_items: int, per_positive: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """per_positive uniform items per positive among the items its user has not interacted with (keys: the
    sorted user * n_items + item of the positives). Draws that hit a positive are redrawn; after
    _NEGATIVE_DRAWS rounds the few left (users who have nearly every item) are dropped."""
    neg_users = np.repeat(users, per_positive)
    neg_items = rng.integers(0, n_items, len(neg_users))
    todo = np.arange(len(neg_users))
    for _ in range(_NEGATIVE_DRAWS):
        probe = neg_users[todo] * n_items + neg_items[todo]
        found = np.searchsorted(keys, probe)
        hit = keys[np.minimum(found, len(keys) - 1)] == probe
        todo = todo[hit]
        if len(todo) == 0:
            break
        neg_items[todo] = rng.integers(0, n_items, len(todo))
    keep = np.ones(len(neg_users), dtype=bool)
    keep[todo] = False
    return neg_users[keep], neg_items[keep]


class GMF(_NCF):
    """Generalized matrix factorization: ``h . (p_u * q_i) + b`` with learned h (``factors`` wide). See the
    module docstring for training, validation and how new histories are folded in. Defaults: the paper's
    setting (4 negatives, Adam lr 1e-3, batch 256), with 8 factors."""

    name = "gmf"
    _parts = ("gmf",)


@dataclass(eq=False, repr=False, kw_only=True)
class _TowerNCF(_NCF):
    """The NCF models with an MLP tower of ``mlp_layers`` layers."""

    parameter_constraints = {**_NCF.parameter_constraints, "mlp_layers": Interval(int, 1, 8)}

    mlp_layers: int = 3


class MLP(_TowerNCF):
    """A ReLU tower of ``mlp_layers`` layers (widths halving down to ``factors``) over ``[p_u, q_i]``, each
    embedding as wide as the first layer (the NCF code's [64, 32, 16, 8] at the defaults), then a linear output.
    Training, validation and fold-in as in GMF."""

    name = "mlp"
    _parts = ("mlp",)


@dataclass(eq=False, repr=False, kw_only=True)
class NeuMF(_TowerNCF):
    """GMF and MLP halves with separate embeddings, their last layers concatenated into one output layer.

    pretrain=True first fits a GMF and an MLP with these hyper-parameters (each with its own early stopping),
    initialises NeuMF from them with the output layer ``[0.5 h_gmf, 0.5 h_mlp]`` (bias likewise), and then
    trains it with plain SGD at ``finetune_lr``, as the paper does (Adam's moment estimates are not part of
    what was pre-trained). pretrain=False trains NeuMF from a random start with Adam at ``lr``.
    """

    name = "neumf"
    _parts = ("gmf", "mlp")
    parameter_constraints = {
        **_TowerNCF.parameter_constraints,
        "pretrain": Options((True, False)),
        "finetune_lr": Interval(float, 0, low_open=True),
    }

    pretrain: bool = False
    finetune_lr: float = 0.01

    def _fit_network(self, data: Dataset, validation: tuple[Histories, np.ndarray] | None,
                     device: torch.device) -> tuple[torch.nn.Module, list[Any]]:
        if not self.pretrain:
            return super()._fit_network(data, validation, device)
        import torch

        gmf = self._build_seeded(("gmf",), data, device)
        mlp = self._build_seeded(("mlp",), data, device)
        logs = [self._train(gmf, data, validation, device, sgd=False, stage="gmf"),
                self._train(mlp, data, validation, device, sgd=False, stage="mlp")]
        net = self._build_seeded(self._parts, data, device)
        with torch.no_grad():
            for name in ("user_gmf", "item_gmf"):
                net[name].load_state_dict(gmf[name].state_dict())
            for name in ("user_mlp", "item_mlp", "tower"):
                net[name].load_state_dict(mlp[name].state_dict())
            net["output"].weight.copy_(torch.cat([PRETRAIN_ALPHA * gmf["output"].weight,
                                                  (1 - PRETRAIN_ALPHA) * mlp["output"].weight], 1))
            net["output"].bias.copy_(PRETRAIN_ALPHA * gmf["output"].bias + (1 - PRETRAIN_ALPHA) * mlp["output"].bias)
        logs.append(self._train(net, data, validation, device, sgd=True, stage="neumf", lr=self.finetune_lr))
        self.pretrain_best_epochs_ = [logs[0].best_epoch, logs[1].best_epoch]
        return net, logs
