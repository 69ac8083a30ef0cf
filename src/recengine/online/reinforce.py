"""Top-K off-policy-corrected REINFORCE on the sequential model (Chen et al., "Top-K Off-Policy Correction for a
REINFORCE Recommender System", WSDM 2019), with the shown-but-unclicked items as negative signal.

The policy is SASRec's softmax over all items, pi(a | s), the state s being the user's latest clicks. It learns from
logged slates: every shown item a is an action with its return R (its click, 0 or 1, plus gamma^d times the clicks
d steps later in the session), its advantage A = R - b_j (b_j: the mean return of the log's position j, so an item
clicked more than its slot's average is pushed up and one ignored is pushed down) and the behaviour policy's
probability beta(a | s) of it. The loss is

    - mean over shown items of  min(pi / beta, weight_cap) * lambda_K(pi) * A * log pi(a | s),

weights held constant in the gradient: the capped importance weight corrects for what the logging policy chose to
show, and lambda_K(pi) = K (1 - pi)^(K - 1), the derivative of the chance 1 - (1 - pi)^K that a slate of K draws
holds a, corrects for showing K items at once (it pushes up items not yet in the top, and stops pushing those
already there). Training starts from a fitted supervised SASRec (its next-click counterpart) and fine-tunes a copy
of it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Self

import numpy as np

from recengine.data.histories import Histories
from recengine.errors import DataError, NotFittedError
from recengine.models.base import Interval
from recengine.models.neural._base import training_module
from recengine.models.neural.sasrec import SASRec

if TYPE_CHECKING:
    import torch

    from recengine.online.simulator import Impressions

__all__ = ["TopKReinforce", "Trajectories", "reinforce_loss", "topk_correction"]


def topk_correction(pi: np.ndarray | torch.Tensor, k: int) -> np.ndarray | torch.Tensor:
    """lambda_K(pi) = K (1 - pi)^(K - 1): d/dpi of 1 - (1 - pi)^K, the chance an item is among K softmax draws."""
    return k * (1 - pi) ** (k - 1)


def reinforce_loss(logits: torch.Tensor, items: torch.Tensor, advantages: torch.Tensor, propensities: torch.Tensor,
                   *, k: int, weight_cap: float) -> torch.Tensor:
    """The top-K off-policy-corrected REINFORCE loss (module docstring) of a batch of slates: logits (n, n_items)
    of the policy in each slate's state, the shown items (n, s; -1 pads a shorter slate), their advantages and
    behaviour probabilities (n, s)."""
    import torch

    real = items >= 0
    log_pi = torch.log_softmax(logits.float(), dim=1).gather(1, items.clamp(min=0))
    pi = log_pi.exp().detach()
    weight = torch.clamp(pi / propensities, max=weight_cap) * topk_correction(pi, k)
    return -(weight * advantages * log_pi)[real].sum() / real.sum().clamp(min=1)


@dataclass(frozen=True)
class Trajectories:
    """Logged slates for REINFORCE, one row per request: the state (the user's latest clicks before it,
    left-padded item indices + 1, as SASRec reads them), the shown items in position order (-1 pads a shorter
    slate), each one's return and its behaviour probability (1 where padded)."""

    states: np.ndarray        # (n, max_len) int64
    items: np.ndarray         # (n, slate) int64
    returns: np.ndarray       # (n, slate) float32
    propensities: np.ndarray  # (n, slate) float32

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_impressions(cls, impressions: Impressions, histories: Histories, *, max_len: int,
                         gamma: float) -> Trajectories:
        """histories: every user's history before the log (row = user index); the log's clicks extend them in
        request order. A request's state holds what the user had clicked before it (not the clicks of its own
        slate); a shown item's return is its click plus, over the session's later steps, gamma^distance * clicks."""
        Interval(float, 0, 1).check("gamma", gamma)
        Interval(int, 1).check("max_len", max_len)
        if np.isnan(impressions.propensity).any() or (impressions.propensity <= 0).any():
            raise DataError("REINFORCE needs the behaviour policy's propensity (> 0) of every shown item")
        if not impressions.click.any():
            raise DataError("the log has no clicks: REINFORCE has no reward to learn from")
        order = np.lexsort((impressions.position, impressions.request, impressions.user))
        users = impressions.user[order].astype(np.int64)
        clicks = impressions.click[order]
        # One row per request (request ids are unique, so a new user also starts a new request).
        first = np.ones(len(order), dtype=bool)
        first[1:] = impressions.request[order][1:] != impressions.request[order][:-1]
        row = np.cumsum(first) - 1
        request_users = users[first]
        request_clicks = np.bincount(row, weights=clicks, minlength=len(request_users)).astype(np.int64)
        before = np.cumsum(request_clicks) - request_clicks  # clicks of all earlier requests in the order
        user_start = np.ones(len(request_users), dtype=bool)
        user_start[1:] = request_users[1:] != request_users[:-1]
        clicks_before = before - before[user_start][np.cumsum(user_start) - 1]  # of the same user
        # Each user's sequence: their history, then their logged clicks in request (and position) order.
        n_users = len(histories)
        base_len = histories.lengths.astype(np.int64)
        click_counts = np.bincount(users[clicks], minlength=n_users)
        starts = np.concatenate([[0], np.cumsum(base_len + click_counts)])[:-1]
        sequence = np.empty(int((base_len + click_counts).sum()), dtype=np.int64)
        base_rows = np.repeat(np.arange(n_users), base_len)
        base_offset = np.arange(len(histories.items)) - np.repeat(histories.indptr[:-1], base_len)
        sequence[starts[base_rows] + base_offset] = histories.items
        clicked_users = users[clicks]
        rank_in_user = np.arange(len(clicked_users)) - (np.cumsum(click_counts) - click_counts)[clicked_users]
        sequence[starts[clicked_users] + base_len[clicked_users] + rank_in_user] = impressions.item[order][clicks]
        state_end = starts[request_users] + base_len[request_users] + clicks_before
        index = state_end[:, None] - np.arange(max_len, 0, -1)[None, :]
        states = np.where(index >= starts[request_users][:, None], sequence[np.maximum(index, 0)] + 1, 0)
        # The slates: shown items by position, padded to the widest.
        column = np.arange(len(order)) - np.flatnonzero(first)[row]
        shape = (len(request_users), int(column.max()) + 1)
        items = np.full(shape, -1, dtype=np.int64)
        returns = np.zeros(shape, dtype=np.float32)
        propensities = np.ones(shape, dtype=np.float32)
        items[row, column] = impressions.item[order]
        returns[row, column] = cls._returns(impressions, gamma)[order]
        propensities[row, column] = impressions.propensity[order]
        return cls(states, items, returns, propensities)

    @staticmethod
    def _returns(impressions: Impressions, gamma: float) -> np.ndarray:
        """Per log row: its click + the discounted clicks of its session's later steps."""
        sessions, session = np.unique(impressions.session, return_inverse=True)
        steps = int(impressions.step.max()) + 1
        clicks = np.zeros((len(sessions), steps + 1))
        np.add.at(clicks, (session, impressions.step), impressions.click.astype(np.float64))
        later = np.zeros_like(clicks)  # later[s, t] = sum over t' > t of gamma^(t' - t) clicks[s, t']
        for t in range(steps - 1, -1, -1):  # one pass over the (few) steps, vectorized over sessions
            later[:, t] = gamma * (clicks[:, t + 1] + later[:, t + 1])
        return impressions.click + later[session, impressions.step]


class TopKReinforce:
    """Fine-tunes a copy of a fitted SASRec by top-K off-policy-corrected REINFORCE on logged slates.

    k: the slate size the policy serves (lambda_K). weight_cap: the cap on pi / beta. Adam with lr and
    weight_decay for `epochs` epochs of mini-batches of batch_size slates. After fit, ``baseline_`` holds the
    per-position mean returns subtracted from the returns, and ``score(histories)`` is the policy's logits, as
    for any Recommender.
    """

    parameter_constraints = {
        "k": Interval(int, 1),
        "weight_cap": Interval(float, 0, low_open=True),
        "lr": Interval(float, 0, low_open=True),
        "weight_decay": Interval(float, 0),
        "epochs": Interval(int, 1),
        "batch_size": Interval(int, 1),
        "random_state": Interval(int, 0),
    }

    def __init__(self, *, k: int = 10, weight_cap: float = 10.0, lr: float = 3e-4, weight_decay: float = 0.0,
                 epochs: int = 5, batch_size: int = 256, random_state: int = 0) -> None:
        self.k = k
        self.weight_cap = weight_cap
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, trajectories: Trajectories, start: SASRec) -> Self:
        for name, constraint in self.parameter_constraints.items():
            constraint.check(name, getattr(self, name))
        if not start.is_fitted:
            raise NotFittedError("start must be a fitted SASRec (the supervised policy to correct)")
        if trajectories.states.shape[1] != start.max_len:
            raise DataError(f"the trajectories' states hold {trajectories.states.shape[1]} items but the SASRec "
                            f"reads {start.max_len}; build them with max_len={start.max_len}")
        import torch

        training = training_module()
        real = trajectories.items >= 0
        self.baseline_ = (np.where(real, trajectories.returns, 0).sum(0) / np.maximum(real.sum(0), 1)).astype(
            np.float32)
        policy = copy.deepcopy(start)
        net, device = policy._network()
        data = {"states": trajectories.states, "items": trajectories.items,
                "advantages": trajectories.returns - self.baseline_, "propensities": trajectories.propensities}
        data = {name: torch.as_tensor(value, device=device) for name, value in data.items()}
        rng = np.random.default_rng(self.random_state)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        self.losses_ = []
        with training.torch_threads(), training.seeded(self.random_state, device):
            for _ in range(self.epochs):
                net.train()
                total = 0.0
                for rows in np.array_split(rng.permutation(len(trajectories)),
                                           max(1, -(-len(trajectories) // self.batch_size))):
                    index = torch.as_tensor(rows, device=device)
                    states = training.trim(data["states"][index])
                    logits = policy._encode(net, states)[:, -1] @ net["embedding"].weight[1:].T
                    loss = reinforce_loss(logits, data["items"][index], data["advantages"][index],
                                          data["propensities"][index], k=self.k, weight_cap=self.weight_cap)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total += float(loss.detach()) * len(rows)
                self.losses_.append(total / len(trajectories))
        net.eval()
        policy.weights_ = training.state_arrays(net)
        self.policy_ = policy
        return self

    def score(self, histories: Histories) -> np.ndarray:
        if not hasattr(self, "policy_"):
            raise NotFittedError("TopKReinforce is not fitted: call fit(trajectories, start) first")
        return self.policy_.score(histories)
