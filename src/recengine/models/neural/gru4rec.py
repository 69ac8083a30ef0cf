"""GRU4Rec: a recurrent network over the item sequence (Hidasi et al., ICLR 2016). Trained here like SASRec, on
every position of each user's latest items with full cross-entropy over all items, rather than with the
original's session-parallel mini-batches and sampled losses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from recengine.models.base import Interval
from recengine.models.neural._sequential import SequentialRecommender

if TYPE_CHECKING:
    import torch


@dataclass(eq=False, repr=False, kw_only=True)
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

    layers: int = 1
    dropout: float = 0.3

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
