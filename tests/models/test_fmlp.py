"""FMLP-Rec's causal filter; what it shares with the other next-item models is in test_sequential.py."""

import numpy as np
import pandas as pd
import torch

from recengine.data import Dataset, Histories, Vocabulary
from recengine.models.neural.fmlp import FMLPRec, causal_convolution

N_ITEMS = 40


def test_the_filter_is_a_linear_causal_convolution():
    """out[t] = sum over l <= t of kernel[l] * x[t - l]: nothing wraps around from the end, as the paper's
    circular filter would."""
    rng = np.random.default_rng(0)
    x, kernel = rng.normal(size=(3, 7, 4)), rng.normal(size=(7, 4))
    direct = np.stack([sum(kernel[lag] * x[:, t - lag] for lag in range(t + 1)) for t in range(7)], 1)
    out = causal_convolution(torch.tensor(x, dtype=torch.float32), torch.tensor(kernel, dtype=torch.float32))
    np.testing.assert_allclose(out.numpy(), direct, atol=1e-4)


def test_it_reads_the_items_before_the_latest():
    """Each user walks the items with a step of 1 or 2: the next item depends on the latest two, which only the
    filter (the one part that mixes positions) can read; a model of the latest item alone gets half right."""
    rng = np.random.default_rng(0)
    rows = []
    for user, (start, step, length) in enumerate(zip(rng.integers(0, N_ITEMS, 300), rng.integers(1, 3, 300),
                                                      rng.integers(3, 10, 300), strict=True)):
        rows += [(f"u{user}", str((start + step * t) % N_ITEMS), t) for t in range(length)]
    data = Dataset.from_events(pd.DataFrame(rows, columns=["user", "item", "timestamp"]),
                               items=Vocabulary([str(i) for i in range(N_ITEMS)]))
    model = FMLPRec(hidden=32, blocks=1, dropout=0.0, lr=1e-2, batch_size=32, epochs=20, patience=0,
                    device="cpu", verbose=False).fit(data)
    latest = np.arange(N_ITEMS)
    histories = Histories.from_lists([[(i - k * s) % N_ITEMS for k in (3, 2, 1, 0)] for s in (1, 2) for i in latest],
                                     N_ITEMS)
    top = model.recommend(histories, k=1)[0][:, 0]
    assert (top == np.concatenate([(latest + 1) % N_ITEMS, (latest + 2) % N_ITEMS])).mean() >= 0.9
