"""Every registered model passes the Recommender contract (recengine.testing)."""

import pytest

from recengine.models import available_models
from recengine.testing import check_recommender

#: Small, fast settings for the contract data; everything else keeps the shipped defaults.
FAST = {
    "ials": {"factors": 8, "iterations": 10},
    "bpr": {"factors": 8},
    "biased-mf": {"factors": 8},
    "svdpp": {"factors": 8},
    "bayesian-svdpp": {"factors": 4, "iterations": 30, "burn_in": 10, "kept_samples": 10},
    "blend": {"models": [{"name": "biased-mf", "params": {"factors": 4}}, "knn-baseline"]},
    "sasrec": {"hidden": 16, "blocks": 1, "dropout": 0.1, "lr": 5e-3, "epochs": 20, "patience": 0},
    "fmlp": {"hidden": 16, "blocks": 1, "dropout": 0.1, "lr": 5e-3, "epochs": 20, "patience": 0},
    "gru4rec": {"hidden": 16, "dropout": 0.3, "lr": 3e-3, "batch_size": 32, "epochs": 20, "patience": 0},
    "gmf": {"lr": 2e-2, "epochs": 4, "patience": 0, "fold_in_steps": 5, "n_negatives": 2},
    "mlp": {"lr": 2e-2, "epochs": 8, "patience": 0, "fold_in_steps": 5, "n_negatives": 2},
    "neumf": {"lr": 1e-2, "epochs": 8, "patience": 0, "fold_in_steps": 5},
    "deepfm": {"lr": 1e-2, "batch_size": 256, "epochs": 10, "patience": 0},
    "wide-deep": {"lr": 1e-2, "batch_size": 256, "epochs": 10, "patience": 0},
    "pipeline": {"ranker": {"name": "deepfm", "params": {"lr": 1e-2, "batch_size": 256, "epochs": 10, "patience": 0}},
                 "n_candidates": 10},
    "two-tower": {"dim": 16, "lr": 1e-2, "epochs": 30, "patience": 0, "batch_size": 64, "temperature": 0.1},
    "multvae": {"hidden": 64, "latent": 16, "lr": 3e-3, "batch_size": 64, "epochs": 40, "patience": 0,
                "total_anneal_steps": 20},
}


@pytest.mark.parametrize("name", sorted(available_models()))
def test_model_contract(name):
    model_cls = available_models()[name]
    if getattr(model_cls, "requires_item_features", False):
        pytest.skip(f"{name} needs item features, which the contract data lacks; its own tests run the checks")
    params = {k: v for k, v in FAST.get(name, {}).items() if k in model_cls().get_params()}
    check_recommender(lambda: model_cls(**params))
