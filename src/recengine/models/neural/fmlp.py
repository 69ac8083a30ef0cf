"""FMLP-Rec: filter-enhanced MLP for sequential recommendation (Zhou et al., "Filter-enhanced MLP is All You Need
for Sequential Recommendation", WWW 2022), made causal, and trained like SASRec with full cross-entropy over all
items at every position.

The paper's filter multiplies the FFT of the whole sequence by a learnable frequency response, a circular
convolution in which every position reads every other one, later ones included. Trained to predict the next item
at every position, that filter would read the answer. Here each filter is a learnable kernel over the lags
0..max_len-1 of each hidden channel, applied as a linear (not circular) convolution through the FFT: the sequence
and the kernel are zero-padded to twice the length before ``rfft``, and the first ``length`` outputs of ``irfft``
are kept, so position i reads positions <= i only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from recengine.models.base import Interval
from recengine.models.neural._sequential import SequentialRecommender

if TYPE_CHECKING:
    import torch


@dataclass(eq=False, repr=False, kw_only=True)
class FMLPRec(SequentialRecommender):
    """Item embeddings plus learned positional embeddings, layer norm and dropout, then `blocks` filter blocks,
    each a causal learnable filter over the sequence (dropout, residual, layer norm) and a point-wise
    feed-forward layer of width 4 * hidden with GELU (dropout, residual, layer norm), as in the paper; the
    output at the last position, dotted with the item embeddings, scores every item.

    Deviation from the paper: its filter is global and circular (each output mixes the whole sequence, later
    items included); this one is a causal convolution with a learnable kernel per hidden channel over lags
    0..max_len-1 (see the module docstring), which is what next-item training at every position needs.

    Positions count back from the latest item, as in SASRec, and the rows of left padding are zeroed before
    every filter, so padding never reaches a real item and a history scores the same in any batch.

    loss, negatives and the training hyper-parameters: see SequentialRecommender and NeuralRecommender;
    validation is a leave-one-out split of the training data. Defaults are SASRec's (hidden 64, 2 blocks,
    max_len 50, dropout 0.5, Adam lr 1e-3, batch 128).
    """

    name = "fmlp"
    parameter_constraints = {**SequentialRecommender.parameter_constraints, "blocks": Interval(int, 1, 64)}
    search_space = {
        "hidden": ("cat", [32, 64, 128]),
        "blocks": ("int", 1, 3),
        "dropout": ("float", 0.1, 0.7),
        "lr": ("log", 3e-4, 3e-3),
    }

    blocks: int = 2

    def _build_network(self, n_items: int) -> torch.nn.Module:
        import torch
        from torch import nn

        def block() -> nn.ModuleDict:
            # The paper initialises its frequency response with std 0.02; a small kernel likewise starts each
            # block near the identity (the residual).
            return nn.ModuleDict({
                "filter": nn.ParameterDict({"kernel": nn.Parameter(0.02 * torch.randn(self.max_len, self.hidden))}),
                "filter_norm": nn.LayerNorm(self.hidden),
                "feed_forward": nn.Sequential(nn.Linear(self.hidden, 4 * self.hidden), nn.GELU(),
                                              nn.Linear(4 * self.hidden, self.hidden)),
                "feed_forward_norm": nn.LayerNorm(self.hidden),
            })

        net = nn.ModuleDict({
            "embedding": nn.Embedding(n_items + 1, self.hidden, padding_idx=0),
            "positions": nn.Embedding(self.max_len, self.hidden),
            "norm": nn.LayerNorm(self.hidden),
            "blocks": nn.ModuleList([block() for _ in range(self.blocks)]),
        })
        # The item embeddings start at std 1/sqrt(hidden) (see SequentialRecommender.fit); positions at torch's
        # std 1 would drown them in the layer norm of their sum (the paper starts both at the same scale).
        with torch.no_grad():
            net["positions"].weight.normal_(std=self.hidden ** -0.5)
        return net

    def _encode(self, net: torch.nn.Module, sequences: torch.Tensor) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        length = sequences.shape[1]
        positions = torch.arange(self.max_len - length, self.max_len, device=sequences.device)
        x = net["norm"](net["embedding"](sequences) + net["positions"](positions))
        x = F.dropout(x, self.dropout, net.training)
        real = (sequences > 0)[..., None]
        for block in net["blocks"]:
            filtered = causal_convolution(x * real, block["filter"]["kernel"][:length])
            x = block["filter_norm"](x + F.dropout(filtered, self.dropout, net.training))
            x = block["feed_forward_norm"](x + F.dropout(block["feed_forward"](x), self.dropout, net.training))
        return x


def causal_convolution(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """(batch, length, channels) * (length, channels) → (batch, length, channels): out[t] = sum over lags l <= t
    of kernel[l] * x[t - l], per channel, through the FFT. Zero-padding both to 2 * length makes the FFT's
    circular convolution a linear one (nothing wraps from the end to the start). In float32: cuFFT's half
    precision takes powers of two only."""
    import torch

    length = x.shape[1]
    spectrum = torch.fft.rfft(x.float(), n=2 * length, dim=1) * torch.fft.rfft(kernel.float(), n=2 * length, dim=0)
    return torch.fft.irfft(spectrum, n=2 * length, dim=1)[:, :length]
