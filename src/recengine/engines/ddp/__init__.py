"""PyTorch DistributedDataParallel for the neural models: the same `fit` in several processes.

Inside a torch.distributed process group a neural model's `fit` shards every mini-batch across the workers and
all-reduces the gradients through DistributedDataParallel (recengine.models.neural._training.train_batches), so
the artifact is the one a single process writes; rank 0 saves it. `fit_distributed` starts the workers on this
machine (rendezvous on 127.0.0.1), or joins the group that `torchrun` set up when run under it.
"""

from recengine.engines.ddp.launch import fit_distributed, launched_by_torchrun, process_group

__all__ = ["fit_distributed", "launched_by_torchrun", "process_group"]
