"""SASRec: self-attentive sequential recommendation (Kang & McAuley, ICDM 2018), trained with full
cross-entropy over all items at every position, which beats the paper's sampled binary loss (Klenitskiy &
Vasilev, "Turning Dross Into Gold Loss: is BERT4Rec really better than SASRec?", RecSys 2023)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from recengine.errors import ConfigError
from recengine.models.base import Interval
from recengine.models.neural._sequential import SequentialRecommender

if TYPE_CHECKING:
    import torch


@dataclass(eq=False, repr=False, kw_only=True)
class SASRec(SequentialRecommender):
    """Item embeddings (scaled by sqrt(hidden)) plus learned positional embeddings, `blocks` pre-norm
    Transformer blocks of causal self-attention with `heads` heads and a feed-forward layer, dropout and a
    final layer norm; the output at the last position, dotted with the item embeddings, scores every item.

    Positions count back from the latest item (the latest is position max_len - 1, as in the paper's left
    padding), and padding is masked out of attention, so a history scores the same in any batch.

    loss, negatives and the training hyper-parameters: see SequentialRecommender and NeuralRecommender;
    validation is a leave-one-out split of the training data.

    Defaults follow the paper's Amazon-Beauty setting (hidden 64, 2 blocks, 1 head, max_len 50, dropout 0.5,
    Adam lr 1e-3) with a batch of 128.
    """

    name = "sasrec"
    parameter_constraints = {
        **SequentialRecommender.parameter_constraints,
        "blocks": Interval(int, 1, 64),
        "heads": Interval(int, 1, 64),
    }
    search_space = {
        "hidden": ("cat", [32, 64, 128]),
        "blocks": ("int", 1, 3),
        "dropout": ("float", 0.1, 0.7),
        "lr": ("log", 3e-4, 3e-3),
    }

    blocks: int = 2
    heads: int = 1

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.hidden % self.heads:
            raise ConfigError(f"hidden ({self.hidden}) must be a multiple of heads ({self.heads})")

    def _build_network(self, n_items: int) -> torch.nn.Module:
        from torch import nn

        return nn.ModuleDict({
            "embedding": nn.Embedding(n_items + 1, self.hidden, padding_idx=0),
            "positions": nn.Embedding(self.max_len, self.hidden),
            "blocks": nn.ModuleList([
                nn.TransformerEncoderLayer(self.hidden, self.heads, dim_feedforward=self.hidden,
                                           dropout=self.dropout, batch_first=True, norm_first=True)
                for _ in range(self.blocks)]),
            "norm": nn.LayerNorm(self.hidden),
        })

    def _encode(self, net: torch.nn.Module, sequences: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        length = sequences.shape[1]
        positions = torch.arange(self.max_len - length, self.max_len, device=sequences.device)
        x = net["embedding"](sequences) * self.hidden ** 0.5 + net["positions"](positions)
        x = F.dropout(x, self.dropout, net.training)
        real = sequences > 0
        # A query attends to real items at or before it; every position also sees itself, so that rows of
        # padding (and empty histories) stay finite instead of attending to nothing.
        causal = torch.ones(length, length, dtype=torch.bool, device=sequences.device).tril()
        allowed = (causal[None] & real[:, None, :]) | torch.eye(length, dtype=torch.bool, device=sequences.device)
        mask = (~allowed).repeat_interleave(self.heads, 0)
        for block in net["blocks"]:
            x = block(x, src_mask=mask)
        return net["norm"](x)
