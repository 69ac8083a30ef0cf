"""DistributedDataParallel: two CPU processes (gloo) train a neural model through `recengine fit --nproc 2`."""

import numpy as np
import pandas as pd
import pytest
import torch

from recengine.cli import main
from recengine.data import Histories
from recengine.engines.ddp import fit_distributed
from recengine.errors import ConfigError
from recengine.models.neural._training import _shard
from recengine.models.neural.two_tower import TwoTower
from recengine.models.popular import MostPopular
from recengine.testing.checks import contract_dataset
from recengine.trained import TrainedModel

N_ITEMS = 12


def fit_walks_with_two_processes(tmp_path, model: str, params: list[str]) -> TrainedModel:
    """`recengine fit --nproc 2` on 80 users who each walk 8 items in order (the next item is the planted
    successor), loaded back."""
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{(start + t) % N_ITEMS}", t) for u, start in enumerate(rng.integers(0, N_ITEMS, 80))
            for t in range(8)]
    events = tmp_path / "events.csv"
    pd.DataFrame(rows, columns=["user", "item", "timestamp"]).to_csv(events, index=False)
    out = tmp_path / "model"
    assert main(["fit", "--events", str(events), "--model", model, "--nproc", "2", "--out", str(out),
                 *sum((["--param", p] for p in [*params, "device=cpu"]), [])]) == 0
    return TrainedModel.load(out)


def top_after_walk(trained: TrainedModel) -> str:
    walk = [trained.dataset.items.index(f"i{i}") for i in (3, 4, 5)]
    top = trained.model.recommend(Histories.from_lists([walk], trained.dataset.n_items), k=1)[0][0, 0]
    return trained.dataset.items.ids[top]


def test_two_processes_train_a_model_that_loads_and_recommends(tmp_path):
    trained = fit_walks_with_two_processes(tmp_path, "sasrec", ["hidden=16", "blocks=1", "dropout=0.1", "lr=0.01",
                                                                "batch_size=32", "epochs=8", "patience=0"])
    loss = trained.model.training_loss_
    assert len(loss) == 8 and loss[-1] < 0.5 * loss[0], loss
    assert top_after_walk(trained) == "i6"


def test_two_tower_in_two_processes_takes_the_steps_of_one(tmp_path):
    # The latest item alone is the history (max_history=1) and user ids are always dropped, so the successor
    # must be learned from it. 640 examples in even batches of 64: no batch is padded to shard it.
    params = {"dim": 16, "max_history": 1, "id_dropout": 1.0, "temperature": 0.1, "lr": 0.01, "batch_size": 64,
              "epochs": 6, "patience": 0}
    trained = fit_walks_with_two_processes(tmp_path, "two-tower", [f"{k}={v}" for k, v in params.items()])
    loss = trained.model.training_loss_
    assert len(loss) == 6 and loss[-1] < 0.5 * loss[0], loss
    assert top_after_walk(trained) == "i6"
    # The softmax spans the whole batch (every worker's items are negatives), so one process takes the same
    # steps: the losses agree up to float rounding. Negatives from one worker's half would change them.
    alone = TwoTower(**params, device="cpu", verbose=False).fit(trained.dataset)
    np.testing.assert_allclose(loss, alone.training_loss_, rtol=1e-3)


def test_neumf_trains_in_two_processes(tmp_path):
    trained = fit_walks_with_two_processes(tmp_path, "neumf", ["lr=0.01", "epochs=3", "patience=0",
                                                               "fold_in_steps=5"])
    loss = trained.model.training_loss_
    assert len(loss) == 3 and loss[-1] < loss[0], loss


def test_a_model_without_ddp_training_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="neural models"):
        fit_distributed(MostPopular(), contract_dataset(), tmp_path / "model", nproc=2)


def test_shards_deal_every_row_and_pad_short_batches_like_distributed_sampler():
    batch = (torch.arange(5), torch.arange(5) * 10)
    shards = [_shard(batch, rank, 2) for rank in range(2)]
    assert [s[0].tolist() for s in shards] == [[0, 2, 4], [1, 3, 0]]
    assert all(torch.equal(s[1], s[0] * 10) for s in shards), "the tensors of a batch are sharded alike"
    assert [_shard(torch.arange(1), rank, 2).tolist() for rank in range(2)] == [[0], [0]]
