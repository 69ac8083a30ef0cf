"""The base of every neural model: the hyper-parameters of training (optimiser, epochs and early stopping,
device, seed, progress, checkpoints), the network rebuilt from its saved weights, and batched scoring.

Hyper-parameters are dataclass fields (keyword-only), so each model declares only its own and the constructor
stays a plain store of them, as scikit-learn's are. The weights are saved as named tensors (safetensors) by
``Recommender.save``. Importing this needs no torch; fitting, scoring or loading without it raises
NotSupportedError saying what to install.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.data.splits import leave_one_out_split
from recengine.errors import ConfigError, DataError, NotSupportedError
from recengine.models.base import Interval, Options, Recommender

if TYPE_CHECKING:
    import torch


def early_stopping_holdout(name: str, dataset: Dataset, patience: int) -> tuple[Dataset, tuple | None]:
    """(training data, validation) for early stopping: each user's latest item held out as (query histories,
    truth items) when `patience` is set, else all of `dataset` and no validation."""
    if not patience:
        return dataset, None
    try:
        held_out = leave_one_out_split(dataset)
    except DataError as error:
        raise DataError(f"{name}: cannot hold out a validation item per user ({error}); set "
                        f"patience=0 to train for a fixed number of epochs without validation") from error
    return held_out.train, (held_out.query, held_out.truth.indices.astype(np.int64))


def training_module() -> Any:
    """recengine.models.neural._training, or a NotSupportedError saying how to install torch."""
    try:
        from recengine.models.neural import _training
    except ImportError as error:
        if error.name != "torch":
            raise
        raise NotSupportedError("neural models need PyTorch: pip install 'recengine[text]' (or pip install "
                                "torch)") from error
    return _training


@dataclass(eq=False, repr=False, kw_only=True)
class NeuralRecommender(Recommender):
    """lr, weight_decay: Adam's; batch_size: rows per optimizer step (across all workers under DDP); up to
    `epochs` epochs, stopping after `patience` epochs without a better validation NDCG@10 (0: no validation).
    device: "auto" (CUDA when present, with mixed precision), "cpu" or "cuda". verbose: a progress bar on a
    terminal. checkpoint_dir: save the training state there every `checkpoint_every` epochs and at the end;
    resume=True continues from it, giving the weights an uninterrupted run would have."""

    parameter_constraints = {
        "lr": Interval(float, 0, low_open=True),
        "weight_decay": Interval(float, 0),
        "batch_size": Interval(int, 1),
        "epochs": Interval(int, 1, 100_000),
        "patience": Interval(int, 0),
        "device": Options(("auto", "cpu", "cuda")),
        "random_state": Interval(int, 0),
        "verbose": Options((True, False)),
        "checkpoint_every": Interval(int, 1),
        "resume": Options((True, False)),
    }

    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    epochs: int = 200
    patience: int = 10
    device: str = "auto"
    random_state: int = 0
    verbose: bool = True
    checkpoint_dir: str | None = None
    checkpoint_every: int = 1
    resume: bool = False

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str | Path):
            raise ConfigError(f"checkpoint_dir must be a directory path or None, got {self.checkpoint_dir!r}")
        if self.resume and self.checkpoint_dir is None:
            raise ConfigError("resume=True continues from checkpoint_dir: set checkpoint_dir too")

    def _start_fit(self, dataset: Dataset) -> tuple[Any, torch.device]:
        """The opening of every fit: the parameters and `dataset` checked, then the _training module and the
        device to train on."""
        self._validate_params()
        self._check_dataset(dataset)
        training = training_module()
        return training, training.resolve_device(self.device)

    def _checkpoints(self, stage: str = "") -> Any:
        """Where this fit (or one stage of it) checkpoints, as _training.Checkpoints; None without a directory."""
        if self.checkpoint_dir is None:
            return None
        return training_module().Checkpoints(Path(self.checkpoint_dir) / stage, self.checkpoint_every, self.resume)

    def _training_options(self, stage: str = "") -> dict[str, Any]:
        """The keyword arguments of the _training loops that come from these hyper-parameters."""
        return {"checkpoints": self._checkpoints(stage), "verbose": self.verbose, "label": self.name,
                "seed": self.random_state}

    # ------------------------------------------------------------------------------------- subclass hooks
    def _new_network(self) -> torch.nn.Module:
        """An untrained network of the fitted model's shape, for the saved weights to be loaded into."""
        raise NotImplementedError

    def _logits(self, net: torch.nn.Module, device: torch.device, histories: Histories) -> torch.Tensor:
        """(len(histories), n_items) scores of every item."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------- learned state
    def _keep(self, net: torch.nn.Module, log: Any) -> None:
        """Record the trained network and what its training log says as learned attributes."""
        training = training_module()
        self._net = net
        self.weights_ = training.state_arrays(net)
        self.validation_ndcg_ = log.validation
        self.best_epoch_ = log.best_epoch
        self.seconds_per_epoch_ = log.seconds_per_epoch
        self.training_loss_ = log.loss

    def _network(self) -> tuple[torch.nn.Module, torch.device]:
        """The fitted network on its device, rebuilt from weights_ after load."""
        net = getattr(self, "_net", None)
        if net is None:
            training = training_module()
            net = training.load_state_arrays(self.weights_, self._new_network())
            self._net = net = net.to(training.resolve_device(self.device)).eval()
        return net, next(net.parameters()).device

    def score(self, histories: Histories) -> np.ndarray:
        self._check_fitted(histories)
        import torch

        training = training_module()
        net, device = self._network()
        out = np.empty((len(histories), self.n_items_), dtype=np.float32)
        with training.torch_threads(), torch.no_grad():
            for start in range(0, len(histories), training.SCORE_BATCH):
                stop = min(start + training.SCORE_BATCH, len(histories))
                out[start:stop] = self._logits(net, device, histories[start:stop]).float().cpu().numpy()
        return out
