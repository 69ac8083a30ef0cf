"""What every neural model shares: device, seeding, threads, padded sequences, the training loop with early
stopping on a validation NDCG@10, and flat weight vectors for saving. Imported only when torch is present."""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from recengine.data.histories import Histories
from recengine.errors import ArtifactError, ConfigError

#: Rows scored at once: (rows, n_items) float32 logits stay a few hundred MiB on large catalogues.
SCORE_BATCH = 512
#: Mini-batches whose rows are sorted by length together (see `batches`).
BUCKET_BATCHES = 64


def resolve_device(name: str) -> torch.device:
    """"auto" is CUDA when a GPU is visible, else the CPU; naming "cuda" without one is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but torch sees no CUDA GPU; use device='auto' or 'cpu'")
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


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA only (bfloat16 needs no loss scaling); CPU training stays float32."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


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


def flatten(net: torch.nn.Module) -> np.ndarray:
    return torch.nn.utils.parameters_to_vector(net.parameters()).detach().float().cpu().numpy()


def unflatten(weights: np.ndarray, net: torch.nn.Module) -> torch.nn.Module:
    expected = sum(p.numel() for p in net.parameters())
    if weights.shape != (expected,):
        raise ArtifactError(f"saved weights hold {weights.size} numbers but the network built from the saved "
                            f"hyper-parameters has {expected}; the artifact is corrupt or from another version")
    torch.nn.utils.vector_to_parameters(torch.from_numpy(np.ascontiguousarray(weights)), net.parameters())
    return net


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


def batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Row indices of one epoch's mini-batches: shuffled, then sorted by length within windows of
    BUCKET_BATCHES batches so that a batch is trimmed to little padding (histories are mostly short), and the
    batches served in random order."""
    order = rng.permutation(len(lengths))
    window = np.arange(len(order)) // (batch_size * BUCKET_BATCHES)
    order = order[np.lexsort((lengths[order], window))]
    split = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    return [split[b] for b in rng.permutation(len(split))]


@dataclass
class TrainingLog:
    """What one training run did: validation NDCG@10 per epoch (empty without validation), the epoch whose
    weights were kept (1-based), and the mean wall-clock seconds of an epoch's mini-batches."""

    validation: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds_per_epoch: float = 0.0


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
) -> TrainingLog:
    """Adam over shuffled mini-batches of `sequences` (rows of padded item indices) for up to `epochs` epochs.

    With `validate`, the metric is computed after every epoch, the best weights are kept in memory and restored
    at the end, and training stops after `patience` epochs without improvement. Progress shows on a terminal.
    """
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    order_rng = np.random.default_rng(seed)
    data = torch.as_tensor(sequences, device=device)
    lengths = (sequences > 0).sum(1)
    log = TrainingLog()
    best_state, best, waited, seconds = None, -np.inf, 0, 0.0
    n_batches = -(-len(sequences) // batch_size)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        epoch_task = progress.add_task(label, total=epochs)
        batch_task = progress.add_task("  batches", total=n_batches)
        for epoch in range(1, epochs + 1):
            net.train()
            started = time.perf_counter()
            progress.reset(batch_task)
            for rows in batches(lengths, batch_size, order_rng):
                batch = trim(data[torch.as_tensor(rows, device=device)])
                with autocast(device):
                    value = loss(batch)
                optimizer.zero_grad(set_to_none=True)
                value.backward()
                optimizer.step()
                progress.advance(batch_task)
            seconds += time.perf_counter() - started
            if validate is None:
                log.best_epoch = epoch
            else:
                net.eval()
                with torch.no_grad():
                    score = validate()
                log.validation.append(score)
                if score > best:
                    best, best_state, waited, log.best_epoch = score, copy.deepcopy(net.state_dict()), 0, epoch
                else:
                    waited += 1
                progress.update(epoch_task, description=f"{label} val NDCG@10 {score:.4f} (best {best:.4f})")
            progress.advance(epoch_task)
            if validate is not None and waited >= patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    log.seconds_per_epoch = seconds / epoch
    return log


def train_epochs(
    net: torch.nn.Module,
    run_epoch: Callable[[], None],
    *,
    epochs: int,
    patience: int,
    validate: Callable[[], float] | None,
    label: str,
) -> TrainingLog:
    """The epoch loop of `train` for models whose epochs are not mini-batches of fixed padded sequences
    (pairs with negatives drawn afresh each epoch, rows of a user-item matrix): `run_epoch` runs one epoch's
    optimizer steps; validation, keeping the best weights, patience and progress work as in `train`."""
    log = TrainingLog()
    best_state, best, waited, seconds, epoch = None, -np.inf, 0, 0.0, 0
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as progress:
        epoch_task = progress.add_task(label, total=epochs)
        for epoch in range(1, epochs + 1):
            net.train()
            started = time.perf_counter()
            run_epoch()
            seconds += time.perf_counter() - started
            if validate is None:
                log.best_epoch = epoch
            else:
                net.eval()
                with torch.no_grad():
                    score = validate()
                log.validation.append(score)
                if score > best:
                    best, best_state, waited, log.best_epoch = score, copy.deepcopy(net.state_dict()), 0, epoch
                else:
                    waited += 1
                progress.update(epoch_task, description=f"{label} val NDCG@10 {score:.4f} (best {best:.4f})")
            progress.advance(epoch_task)
            if validate is not None and waited >= patience:
                break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    log.seconds_per_epoch = seconds / max(1, epoch)
    return log


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
