"""Starting DDP workers (torch.multiprocessing with torchrun's environment variables) and fitting in them."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from recengine.data.dataset import Dataset
from recengine.errors import ConfigError, NotSupportedError, RecengineError
from recengine.models.base import Recommender
from recengine.models.neural._base import NeuralRecommender
from recengine.trained import TrainedModel

#: The variables torchrun sets for each worker and the env:// rendezvous reads.
_TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun() -> bool:
    """True in a worker that torchrun started (its environment names a group of more than one process)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


@contextlib.contextmanager
def process_group() -> Iterator[int]:
    """Join the process group described by torchrun's environment variables (NCCL when a GPU is visible, each
    worker on the GPU of its LOCAL_RANK; gloo on the CPU), yield this worker's rank, and leave the group."""
    try:
        import torch
        import torch.distributed as dist
    except ImportError as error:
        raise NotSupportedError("distributed training needs PyTorch: pip install 'recengine[text]'") from error
    missing = [name for name in _TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise ConfigError(f"no process group to join: {', '.join(missing)} unset; start the workers with "
                          f"torchrun or recengine fit --nproc N")
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield dist.get_rank()
    finally:
        dist.destroy_process_group()


def fit_distributed(model: Recommender, dataset: Dataset, out: str | Path, nproc: int) -> None:
    """Fit a neural `model` on `dataset` with DistributedDataParallel and save the TrainedModel at `out`.

    Under torchrun this process is one of the workers (nproc is torchrun's); otherwise `nproc` workers are
    started on this machine, each with an equal share of its CPUs, and this call returns when they are done.
    """
    if not isinstance(model, NeuralRecommender):
        raise ConfigError(f"{model.name} does not train with DistributedDataParallel; --nproc applies to the "
                          f"neural models (sasrec, gru4rec, fmlp, gmf, mlp, neumf, multvae, two-tower, deepfm, "
                          f"wide-deep)")
    if launched_by_torchrun():
        _fit_in_group(model, dataset, Path(out))
        return
    if nproc < 1:
        raise ConfigError(f"--nproc must be at least 1, got {nproc}")
    import torch.multiprocessing as mp

    threads = max(1, len(os.sched_getaffinity(0)) // nproc)
    try:
        mp.start_processes(_worker, args=(nproc, _free_port(), threads, model, dataset, Path(out)), nprocs=nproc,
                           start_method="spawn")
    except mp.ProcessRaisedException as error:
        # The worker's traceback ends with its exception; a RecengineError there is the user's mistake.
        raise RecengineError(f"a training worker failed: {str(error).strip().splitlines()[-1]}") from None
    except mp.ProcessExitedException as error:
        raise RecengineError(f"a training worker died ({error}); see its output above") from None


def _worker(rank: int, nproc: int, port: int, threads: int, model: Recommender, dataset: Dataset,
            out: Path) -> None:
    import torch

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nproc), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(threads)  # the workers share the machine's cores
    _fit_in_group(model, dataset, out)


def _fit_in_group(model: Recommender, dataset: Dataset, out: Path) -> None:
    import torch.distributed as dist

    with process_group() as rank:
        trained = TrainedModel.fit(model, dataset)
        if rank == 0:
            trained.save(out)
        # Leave together, once rank 0 has saved: a worker tearing gloo down while its peer is still busy is the
        # likely cause of a rare abort under heavy load ("terminate called without an active exception").
        dist.barrier()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
