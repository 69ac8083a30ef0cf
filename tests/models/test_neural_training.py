"""The training infrastructure every neural model shares: checkpoints and resume, safetensors weights."""

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

from recengine.errors import ArtifactError, ConfigError
from recengine.models import Recommender
from recengine.models.neural import _training
from recengine.models.neural.multvae import MultVAE
from recengine.models.neural.ncf import GMF
from recengine.models.neural.sasrec import SASRec
from recengine.models.neural.two_tower import TwoTower
from recengine.testing.checks import contract_dataset

#: Tiny settings with validation (so that resuming must restore the early-stopping state too).
TINY = {
    SASRec: {"hidden": 16, "blocks": 1, "dropout": 0.2, "lr": 5e-3, "batch_size": 16, "patience": 3},
    GMF: {"lr": 1e-2, "patience": 3, "fold_in_steps": 2},
    MultVAE: {"hidden": 32, "latent": 8, "batch_size": 16, "patience": 3, "total_anneal_steps": 10},
    TwoTower: {"dim": 16, "lr": 1e-2, "batch_size": 128, "temperature": 0.1, "patience": 3},
}
MODELS = pytest.mark.parametrize("cls", list(TINY), ids=lambda cls: cls.name)


@pytest.fixture(scope="module")
def data():
    return contract_dataset()


def tiny(cls, **params):
    return cls(**{**TINY[cls], "device": "cpu", "verbose": False, **params})


@MODELS
def test_two_epochs_and_a_resumed_two_equal_four_uninterrupted(cls, data, tmp_path):
    straight = tiny(cls, epochs=4).fit(data)
    tiny(cls, epochs=2, checkpoint_dir=str(tmp_path)).fit(data)
    resumed = tiny(cls, epochs=4, checkpoint_dir=str(tmp_path), resume=True).fit(data)
    assert resumed.weights_.keys() == straight.weights_.keys()
    for name, value in straight.weights_.items():
        np.testing.assert_array_equal(resumed.weights_[name], value, err_msg=name)
    assert resumed.validation_ndcg_ == straight.validation_ndcg_ and len(straight.validation_ndcg_) == 4
    assert resumed.best_epoch_ == straight.best_epoch_ and resumed.training_loss_ == straight.training_loss_


def test_resuming_a_finished_run_trains_no_more(data, tmp_path):
    first = tiny(GMF, epochs=3, checkpoint_dir=str(tmp_path), checkpoint_every=2).fit(data)
    again = tiny(GMF, epochs=3, checkpoint_dir=str(tmp_path), resume=True).fit(data)
    np.testing.assert_array_equal(again.weights_["output.weight"], first.weights_["output.weight"])
    assert again.validation_ndcg_ == first.validation_ndcg_


def test_checkpoint_mistakes_say_what_to_do(data, tmp_path):
    with pytest.raises(ConfigError, match="set checkpoint_dir"):
        tiny(GMF, resume=True).fit(data)
    tiny(SASRec, epochs=1, checkpoint_dir=str(tmp_path)).fit(data)
    with pytest.raises(ArtifactError, match="resume=False"):
        tiny(SASRec, hidden=8, epochs=2, checkpoint_dir=str(tmp_path), resume=True).fit(data)


def test_weights_are_named_tensors_in_safetensors(data, tmp_path):
    model = tiny(SASRec, epochs=1, patience=0).fit(data)
    model.save(tmp_path)
    tensors = load_file(tmp_path / "tensors.safetensors")
    assert "weights_/embedding.weight" in tensors and tensors["weights_/embedding.weight"].shape == (
        data.n_items + 1, 16)
    assert not any(key.startswith("weights_") for key in np.load(tmp_path / "arrays.npz").files)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["model"] == "sasrec" and manifest["state"]["best_epoch_"] == 1


def test_an_artifact_with_the_old_flat_npz_weights_still_loads(data, tmp_path):
    model = tiny(GMF, epochs=1, patience=0).fit(data)
    net, _ = model._network()
    old = Recommender.load(_saved_with_flat_weights(model, _training.flatten(net), tmp_path))
    h = data.histories()
    np.testing.assert_array_equal(old.score(h), model.score(h))
    with pytest.raises(ArtifactError, match="corrupt or from another version"):
        Recommender.load(_saved_with_flat_weights(model, np.zeros(3, np.float32), tmp_path / "bad")).score(h)


def _saved_with_flat_weights(model, flat, path):
    """`model` saved as artifacts were before safetensors: one flat float32 vector weights_ in arrays.npz."""
    named = model.weights_
    model.weights_ = flat
    try:
        model.save(path)
    finally:
        model.weights_ = named
    assert not (path / "tensors.safetensors").exists()
    return path
