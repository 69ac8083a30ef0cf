"""GRU4Rec: a recurrent network over the item sequence (Hidasi et al., ICLR 2016). Trained here like SASRec, on
every position of each user's latest items with full cross-entropy over all items, rather than with the
original's session-parallel mini-batches and sampled losses."""

from __future__ import annotations

from typing import TYPE_CHECKING

from recengine.models.base import Interval
from recengine.models.neural._sequential import SequentialRecommender

if TYPE_CHECKING:
    import torch


class GRU4Rec(SequentialRecommender):
    """Item embeddings → dropout → a `layers`-layer GRU → dropout → a linear map into item-embedding space,
    whose dot products with the item embeddings score every item.

    The GRU reads each history from its first item (padding goes after it, not before), so the output at the
    latest item does not depend on the amount of padding. loss, negatives, epochs, patience and device work as
    in SASRec.
    """

    name = "gru4rec"
    parameter_constraints = {**SequentialRecommender.parameter_constraints, "layers": Interval(int, 1, 16)}
    search_space = {
        "hidden": ("cat", [64, 128, 256]),
        "dropout": ("float", 0.0, 0.6),
        "lr": ("log", 3e-4, 3e-3),
    }

    def __init__(
        self,
        hidden: int = 64,
        layers: int = 1,
        max_len: int = 50,
        dropout: float = 0.3,
        loss: str = "ce",
        negatives: int = 256,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        batch_size: int = 128,
        epochs: int = 200,
        patience: int = 10,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.hidden = hidden
        self.layers = layers
        self.max_len = max_len
        self.dropout = dropout
        self.loss = loss
        self.negatives = negatives
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.epochs = epochs
        self.patience = patience
        self.device = device
        self.random_state = random_state

    def _build_network(self, n_items: int) -> torch.nn.Module:
        from torch import nn

        return nn.ModuleDict({
            "embedding": nn.Embedding(n_items + 1, self.hidden, padding_idx=0),
            "gru": nn.GRU(self.hidden, self.hidden, self.layers, batch_first=True),
            "out": nn.Linear(self.hidden, self.hidden),
        })

    def _encode(self, net: torch.nn.Module, sequences: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        length = sequences.shape[1]
        pad = length - (sequences > 0).sum(1, keepdim=True)
        columns = torch.arange(length, device=sequences.device)[None, :]
        # Left-align each row (its items first), run the GRU, and put each output back under its item.
        first = sequences.gather(1, (columns + pad).clamp(max=length - 1)) * (columns < length - pad)
        x = F.dropout(net["embedding"](first), self.dropout, net.training)
        states, _ = net["gru"](x)
        states = F.dropout(states, self.dropout, net.training)
        back = (columns - pad).clamp(min=0)
        return net["out"](states.gather(1, back[..., None].expand(-1, -1, states.shape[2])))
