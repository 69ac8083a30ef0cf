"""What every neural model shares: device and precision, seeding, threads, padded sequences, the one training
loop (validation early stopping on NDCG@10, checkpoints and resume, a progress bar, DistributedDataParallel when
run inside a process group) and the network's named weights. Imported only when torch is present."""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from recengine.data.histories import Histories
from recengine.errors import ArtifactError, ConfigError

#: Rows scored at once: (rows, n_items) float32 logits stay a few hundred MiB on large catalogues.
SCORE_BATCH = 512
#: Mini-batches whose rows are sorted by length together (see `batches`).
BUCKET_BATCHES = 64
#: The one checkpoint a run keeps in its checkpoint directory (replaced atomically, so always whole).
CHECKPOINT_FILE = "checkpoint.pt"

#: A mini-batch: a tensor, or a tuple of tensors with one row per example.
Batch = torch.Tensor | tuple[torch.Tensor, ...]


# ------------------------------------------------------------------------------------ devices and seeds
def world() -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a torch.distributed process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when a GPU is visible, else the CPU; naming "cuda" without one is a ConfigError. Inside a
    process group each worker takes the GPU of its LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but torch sees no CUDA GPU; use device='auto' or 'cpu'")
    if name == "cuda" and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


@contextlib.contextmanager
def torch_threads() -> Iterator[None]:
    """At most one thread per CPU this process may run on (torch counts the host's cores in a container), and
    torch's setting restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, min(before, len(os.sched_getaffinity(0)))))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch for initialisation, dropout and negative sampling without touching the caller's RNG state."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """The mixed-precision type on CUDA (bfloat16 where the GPU has it, else float16, which needs loss scaling);
    None on the CPU, where training stays float32."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA only (see `amp_dtype`); CPU training stays float32."""
    dtype = amp_dtype(device)
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


# ----------------------------------------------------------------------------------------- sequences
def left_padded(histories: Histories, length: int) -> np.ndarray:
    """(len(histories), length) int64: each history's latest `length` items, oldest first, right-aligned;
    items are shifted by one so that 0 is padding."""
    take = np.minimum(histories.lengths, length)
    starts = np.cumsum(take) - take
    rows = np.repeat(np.arange(len(histories)), take)
    offset = np.arange(int(take.sum())) - np.repeat(starts, take)
    source = np.repeat(histories.indptr[1:] - take, take) + offset
    out = np.zeros((len(histories), length), dtype=np.int64)
    out[rows, length - np.repeat(take, take) + offset] = histories.items[source].astype(np.int64) + 1
    return out


def trim(sequences: torch.Tensor) -> torch.Tensor:
    """Drop the leading columns that are padding in every row (at least one column stays)."""
    longest = int((sequences > 0).sum(1).max()) if len(sequences) else 0
    return sequences[:, sequences.shape[1] - max(1, longest):]


def batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of one epoch's mini-batches: shuffled, then sorted by length within windows of
    BUCKET_BATCHES batches so that a batch is trimmed to little padding (histories are mostly short), and the
    batches served in random order."""
    order = rng.permutation(len(lengths))
    window = np.arange(len(order)) // (batch_size * BUCKET_BATCHES)
    order = order[np.lexsort((lengths[order], window))]
    split = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    return [split[b] for b in rng.permutation(len(split))]


# ------------------------------------------------------------------------------------------- weights
def state_arrays(net: torch.nn.Module) -> dict[str, np.ndarray]:
    """The network's named weights (its state dict) as NumPy arrays: what a model saves (as safetensors)."""
    return {name: value.detach().cpu().numpy().copy() for name, value in net.state_dict().items()}


def load_state_arrays(weights: dict[str, np.ndarray] | np.ndarray, net: torch.nn.Module) -> torch.nn.Module:
    """`net` with the saved weights: named arrays from `state_arrays`, or the one flat vector of artifacts
    written before the weights moved to safetensors (still read)."""
    if isinstance(weights, np.ndarray):
        return unflatten(weights, net)
    try:
        net.load_state_dict({name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in weights.items()})
    except RuntimeError as error:
        raise ArtifactError(f"the saved weights do not fit the network built from the saved hyper-parameters "
                            f"({str(error).splitlines()[0]}); the artifact is corrupt or from another version"
                            ) from error
    return net


def flatten(net: torch.nn.Module) -> np.ndarray:
    """Every parameter in one float32 vector (the order of net.parameters())."""
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().float().cpu().numpy()


def unflatten(weights: np.ndarray, net: torch.nn.Module) -> torch.nn.Module:
    expected = sum(p.numel() for p in net.parameters())
    if weights.shape != (expected,):
        raise ArtifactError(f"saved weights hold {weights.size} numbers but the network built from the saved "
                            f"hyper-parameters has {expected}; the artifact is corrupt or from another version")
    torch.nn.utils.vector_to_parameters(torch.from_numpy(np.ascontiguousarray(weights)), net.parameters())
    return net


# ------------------------------------------------------------------------------------------ validation
def ndcg_at_10(logits: Callable[[Histories], torch.Tensor], query: Histories, truth: np.ndarray) -> float:
    """Mean NDCG@10 of one held-out item per history, ranked over all items with the history's items excluded."""
    total = 0.0
    for start in range(0, len(query), SCORE_BATCH):
        batch = query[start:start + SCORE_BATCH]
        scores = logits(batch).float()
        rows = torch.as_tensor(batch.row_of_entry, device=scores.device)
        scores[rows, torch.as_tensor(batch.items.astype(np.int64), device=scores.device)] = -torch.inf
        target = torch.as_tensor(truth[start:start + SCORE_BATCH], device=scores.device)
        mine = scores.gather(1, target[:, None])
        rank = (scores > mine).sum(1)
        total += float(torch.where(rank < 10, 1.0 / torch.log2(rank.double() + 2.0), 0.0).sum())
    return total / max(1, len(query))


def ndcg_at_10_of_sets(logits: Callable[[Histories], torch.Tensor], query: Histories, truth: np.ndarray,
                       truth_indptr: np.ndarray) -> float:
    """Mean NDCG@10 (binary gain, ideal DCG over min(10, |truth|) hits) of a set of held-out items per history
    (row r's items: truth[truth_indptr[r]:truth_indptr[r + 1]]), ranked over all items with the history's items
    excluded; the multi-item counterpart of `ndcg_at_10`. Rows without held-out items are left out."""
    discount = 1.0 / torch.log2(torch.arange(10, dtype=torch.float64) + 2.0)
    ideal = torch.cumsum(discount, 0)
    total, rows = 0.0, 0
    for start in range(0, len(query), SCORE_BATCH):
        batch = query[start:start + SCORE_BATCH]
        scores = logits(batch).float()
        device = scores.device
        scores[torch.as_tensor(batch.row_of_entry, device=device),
               torch.as_tensor(batch.items.astype(np.int64), device=device)] = -torch.inf
        stop = min(start + SCORE_BATCH, len(query))
        counts = np.diff(truth_indptr[start:stop + 1])
        relevant = torch.zeros_like(scores, dtype=torch.bool)
        relevant[torch.as_tensor(np.repeat(np.arange(stop - start), counts), device=device),
                 torch.as_tensor(truth[truth_indptr[start]:truth_indptr[stop]].astype(np.int64), device=device)] = True
        hits = relevant.gather(1, scores.topk(min(10, scores.shape[1]), 1).indices).double().cpu()
        dcg = (hits * discount[:hits.shape[1]]).sum(1)
        best = ideal[torch.as_tensor(np.clip(counts, 1, 10) - 1)]
        total += float((dcg / best)[torch.as_tensor(counts > 0)].sum())
        rows += int((counts > 0).sum())
    return total / max(1, rows)


# ---------------------------------------------------------------------------------------- the loop
@dataclass
class TrainingLog:
    """What one training run did: validation NDCG@10 per epoch (empty without validation), the epoch whose
    weights were kept (1-based), the mean wall-clock seconds of an epoch's mini-batches, and the mean training
    loss per epoch."""

    validation: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds_per_epoch: float = 0.0
    loss: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Checkpoints:
    """Write the training state to `directory` every `every` epochs and when training ends; with `resume`,
    continue from the checkpoint found there (none: start afresh), which gives the weights an uninterrupted run
    would have."""

    directory: Path
    every: int = 1
    resume: bool = False


def train_batches(
    net: torch.nn.Module,
    loss: Callable[[Batch], torch.Tensor],
    epoch_batches: Callable[[], Iterable[Batch]],
    *,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    device: torch.device,
    epochs: int,
    patience: int,
    validate: Callable[[], float] | None,
    label: str,
    seed: int,
    state: dict[str, Any] | None = None,
    checkpoints: Checkpoints | None = None,
    verbose: bool = True,
) -> TrainingLog:
    """The epoch loop of every neural model: each epoch takes the mini-batches `epoch_batches` draws (from
    `rng`), turns each into a loss with `loss` under mixed precision on CUDA (float16 with loss scaling) and
    steps `optimizer`. With `validate`, the metric is computed after every epoch, the best weights are kept in
    memory and restored at the end, and training stops after `patience` epochs without improvement.

    With `checkpoints`, what an epoch changes is saved and restored on resume: the network, `optimizer`, `rng`,
    torch's RNG, and `state` (numbers the loss keeps between epochs, such as an annealing step count; updated
    in place). A progress bar shows on a terminal unless verbose is False.

    Inside a torch.distributed process group every worker draws the same batches (same seed), its own dropout
    masks and torch-sampled negatives (torch seeded per (seed, epoch, rank) each epoch), and takes its
    share of each one, every `world_size`-th row as DistributedSampler deals them (short batches padded by
    wrapping around); DistributedDataParallel averages the gradients, so a step sees the whole batch as in one
    process and batch_size keeps its meaning (a loss over the whole batch, such as in-batch negatives, reads
    the other workers' rows through `gathered`). Validation runs on rank 0 and its score is sent to all workers.
    """
    rank, size = world()
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype(device) == torch.float16)
    compute: Callable[[Batch], torch.Tensor] = loss
    if size > 1:
        from torch.nn.parallel import DistributedDataParallel

        compute = DistributedDataParallel(_LossModule(net, loss),
                                          device_ids=[device.index] if device.type == "cuda" else None)

    def run_epoch(epoch: int) -> float:
        if size > 1:
            # Each worker its own dropout masks and sampled negatives, as one process draws them independently
            # for every row; a function of (seed, epoch, rank), so a resumed run draws what an uninterrupted one
            # would.
            torch.manual_seed(hash((seed, epoch, rank)) % 2**63)
        total, steps = torch.zeros((), device=device), 0
        for batch in epoch_batches():
            if size > 1:
                batch = _shard(batch, rank, size)
            with autocast(device):
                value = compute(batch)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(value).backward()
            scaler.step(optimizer)
            scaler.update()
            total += value.detach().float()
            steps += 1
        mean = total / max(1, steps)
        if size > 1:
            dist.all_reduce(mean)
            mean /= size
        return float(mean)

    return _loop(net, run_epoch, epochs=epochs, patience=patience, validate=validate, label=label,
                 stateful={"optimizer": optimizer, "scaler": scaler}, rng=rng, state=state,
                 checkpoints=checkpoints, verbose=verbose)


def train(
    net: torch.nn.Module,
    loss: Callable[[torch.Tensor], torch.Tensor],
    sequences: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int,
    validate: Callable[[], float] | None,
    seed: int,
    device: torch.device,
    label: str,
    checkpoints: Checkpoints | None = None,
    verbose: bool = True,
) -> TrainingLog:
    """Adam over shuffled mini-batches of `sequences` (rows of padded item indices, bucketed by length and
    trimmed of shared padding; see `batches`), through `train_batches`."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    order_rng = np.random.default_rng(seed)
    data = torch.as_tensor(sequences, device=device)
    lengths = (sequences > 0).sum(1)

    def epoch_batches() -> Iterator[torch.Tensor]:
        for rows in batches(lengths, batch_size, order_rng):
            yield trim(data[torch.as_tensor(rows, device=device)])

    return train_batches(net, loss, epoch_batches, optimizer=optimizer, rng=order_rng, device=device,
                         epochs=epochs, patience=patience, validate=validate, label=label, seed=seed,
                         checkpoints=checkpoints, verbose=verbose)


def gathered(rows: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Every worker's `rows` in rank order, and where this worker's own start: the whole mini-batch again, for a
    loss that needs it after train_batches dealt each worker its share. Gradients flow back to the worker that
    computed each row, so the step is the one a single process takes. Outside a process group: (rows, 0)."""
    rank, size = world()
    if size == 1:
        return rows, 0
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(rows)), rank * len(rows)


class _LossModule(torch.nn.Module):
    """`net` (registered, so that DistributedDataParallel finds its parameters) with the model's loss as its
    forward: the models call their networks' parts directly, and DDP all-reduces whatever a forward used."""

    def __init__(self, net: torch.nn.Module, loss: Callable[[Batch], torch.Tensor]) -> None:
        super().__init__()
        self.net = net
        self.loss = loss

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss(batch)


def _shard(batch: Batch, rank: int, size: int) -> Batch:
    """This worker's rows of a batch: every size-th row from `rank`, the batch padded by wrapping around to a
    multiple of size so that every worker takes as many rows (DistributedSampler's rule)."""
    first = batch[0] if isinstance(batch, tuple) else batch
    n = len(first)
    rows = torch.arange(-(-n // size) * size, device=first.device)[rank::size] % n
    return tuple(t[rows] for t in batch) if isinstance(batch, tuple) else batch[rows]


def _broadcast(value: float) -> float:
    """Rank 0's value on every worker (so that all take the same early-stopping decision)."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else None
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(tensor, 0)
    return float(tensor.item())


def _loop(net: torch.nn.Module, run_epoch: Callable[[int], float], *, epochs: int, patience: int,
          validate: Callable[[], float] | None, label: str, stateful: dict[str, Any],
          rng: np.random.Generator, state: dict[str, Any] | None, checkpoints: Checkpoints | None,
          verbose: bool) -> TrainingLog:
    rank, size = world()
    log = TrainingLog()
    run = {"epoch": 0, "stopped": False, "best": -np.inf, "best_state": None, "waited": 0, "seconds": 0.0}
    if checkpoints is not None and checkpoints.resume and (checkpoints.directory / CHECKPOINT_FILE).is_file():
        _restore(checkpoints.directory / CHECKPOINT_FILE, net, stateful, rng, state, log, run)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    shown = verbose and rank == 0 and console.is_terminal
    with Progress(*columns, console=console, transient=True, disable=not shown) as progress:
        epoch_task = progress.add_task(label, total=epochs, completed=run["epoch"])
        while run["epoch"] < epochs and not run["stopped"]:
            run["epoch"] += 1
            net.train()
            started = time.perf_counter()
            log.loss.append(run_epoch(run["epoch"]))
            run["seconds"] += time.perf_counter() - started
            if validate is None:
                log.best_epoch = run["epoch"]
            else:
                net.eval()
                with torch.no_grad():
                    # Workers hold the same weights: one measures, all take the same decision.
                    score = validate() if rank == 0 else 0.0
                score = _broadcast(score) if size > 1 else score
                log.validation.append(score)
                if score > run["best"]:
                    run.update(best=score, best_state=copy.deepcopy(net.state_dict()), waited=0)
                    log.best_epoch = run["epoch"]
                else:
                    run["waited"] += 1
                run["stopped"] = run["waited"] >= patience
                progress.update(epoch_task, description=f"{label} val NDCG@10 {score:.4f} (best {run['best']:.4f})")
            progress.advance(epoch_task)
            last = run["epoch"] == epochs or run["stopped"]
            if checkpoints is not None and rank == 0 and (last or run["epoch"] % checkpoints.every == 0):
                _save(checkpoints.directory, net, stateful, rng, state, log, run)
    if run["best_state"] is not None:
        net.load_state_dict(run["best_state"])
    net.eval()
    log.seconds_per_epoch = run["seconds"] / max(1, run["epoch"])
    return log


def _save(directory: Path, net: torch.nn.Module, stateful: dict[str, Any], rng: np.random.Generator,
          state: dict[str, Any] | None, log: TrainingLog, run: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "run": run, "net": net.state_dict(), "log": vars(log),
        "stateful": {name: obj.state_dict() for name, obj in stateful.items()},
        "rng": rng.bit_generator.state, "state": state,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    partial = directory / f"{CHECKPOINT_FILE}.partial"
    torch.save(payload, partial)
    os.replace(partial, directory / CHECKPOINT_FILE)  # a reader never sees half a checkpoint


def _restore(file: Path, net: torch.nn.Module, stateful: dict[str, Any], rng: np.random.Generator,
             state: dict[str, Any] | None, log: TrainingLog, run: dict[str, Any]) -> None:
    try:
        payload = torch.load(file, map_location=next(net.parameters()).device, weights_only=True)
        net.load_state_dict(payload["net"])
        for name, obj in stateful.items():
            obj.load_state_dict(payload["stateful"][name])
    except (RuntimeError, KeyError, ValueError, OSError) as error:
        raise ArtifactError(f"cannot resume from {file}: it is corrupt or was written for another model, data "
                            f"or hyper-parameters ({str(error).splitlines()[0]}); remove it or set "
                            f"resume=False") from error
    rng.bit_generator.state = payload["rng"]
    if state is not None:
        state.update(payload["state"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"]:
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    vars(log).update(payload["log"])
    run.update(payload["run"])
