"""Top-K off-policy REINFORCE: the correction formula, the loss's gradient against a hand computation, its direction
on a toy bandit, trajectories from a log, and a fine-tune on a planted reward."""

import numpy as np
import pandas as pd
import pytest
import torch

from recengine.data.dataset import Dataset
from recengine.data.histories import Histories
from recengine.data.vocab import Vocabulary
from recengine.errors import DataError, NotFittedError
from recengine.models.neural.sasrec import SASRec
from recengine.online.reinforce import TopKReinforce, Trajectories, reinforce_loss, topk_correction
from recengine.online.simulator import Impressions


def test_topk_correction_is_the_derivative_of_the_chance_of_being_in_k_draws():
    pi = np.array([0.0, 0.01, 0.3, 0.9])
    assert np.allclose(topk_correction(pi, 1), 1.0)
    assert np.allclose(topk_correction(pi, 5), 5 * (1 - pi) ** 4)
    h = 1e-6  # against a finite difference of 1 - (1 - pi)^K
    numeric = ((1 - (1 - (pi + h)) ** 5) - (1 - (1 - pi) ** 5)) / h
    assert np.allclose(topk_correction(pi, 5), numeric, atol=1e-4)


def train_toy(corrected: bool, k: int = 1, steps: int = 150) -> np.ndarray:
    """A 3-armed bandit logged by beta = (0.7, 0.2, 0.1) with click rates (0.1, 0.2, 0.5): plain likelihood of the
    clicks favours arm 0 (beta * rate = 0.07 > 0.05 > 0.04); the corrected gradient is that of the policy's own
    value, which favours arm 2."""
    rng = np.random.default_rng(0)
    beta = np.array([0.7, 0.2, 0.1])
    rate = np.array([0.1, 0.2, 0.5])
    actions = rng.choice(3, 5_000, p=beta)
    clicked = actions[rng.random(len(actions)) < rate[actions]]
    logits = torch.zeros(1, 3, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=1.0)
    a = torch.as_tensor(clicked)[:, None]  # slates of one item, each clicked
    ones = torch.ones(len(clicked), 1)
    propensity = torch.as_tensor(beta[clicked], dtype=torch.float32)[:, None] if corrected else ones
    for _ in range(steps):
        loss = reinforce_loss(logits.expand(len(clicked), 3), a, ones, propensity, k=k, weight_cap=1e6)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return torch.softmax(logits.detach(), 1).numpy()[0]


def test_off_policy_correction_moves_the_policy_to_the_best_arm():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: more threads only contend for the shared cores
    try:
        assert train_toy(corrected=True).argmax() == 2
        assert train_toy(corrected=False).argmax() == 0
    finally:
        torch.set_num_threads(before)


def test_loss_gradient_is_the_corrected_weight_times_the_score_function():
    """d loss / d logits = -(1 / n_shown) * sum over shown items of w * A * (onehot(a) - softmax), with
    w = min(pi / beta, cap) * K (1 - pi)^(K - 1); a padded slot (-1) counts for nothing."""
    logits = torch.tensor([[2.0, 0.0, -1.0, 0.5], [0.0, 1.0, 0.0, 0.0]], requires_grad=True)
    items = torch.tensor([[0, 2], [3, -1]])
    advantages = torch.tensor([[1.0, -0.5], [0.7, 9.0]])
    beta = torch.tensor([[0.5, 1e-4], [0.2, 1.0]])
    k, cap = 3, 4.0
    reinforce_loss(logits, items, advantages, beta, k=k, weight_cap=cap).backward()
    p = np.exp(logits.detach().numpy())
    p /= p.sum(1, keepdims=True)
    expected = np.zeros((2, 4))
    for row, col in ((0, 0), (0, 1), (1, 0)):
        item = items[row, col].item()
        pi = p[row, item]
        weight = min(pi / beta[row, col].item(), cap) * k * (1 - pi) ** (k - 1)
        expected[row] -= weight * advantages[row, col].item() * (np.eye(4)[item] - p[row]) / 3
    assert np.allclose(logits.grad.numpy(), expected, atol=1e-6)
    assert min(p[0, 2] / 1e-4, cap) == cap  # the second item's weight is the capped one


def test_topk_correction_damps_the_push_on_items_already_likely():
    logits = torch.tensor([[2.0, 0.0, 0.0]], requires_grad=True)
    pushes = []
    for k in (1, 5):
        logits.grad = None
        reinforce_loss(logits, torch.tensor([[0]]), torch.tensor([[1.0]]), torch.tensor([[0.5]]), k=k,
                       weight_cap=10.0).backward()
        pushes.append(-logits.grad[0, 0].item())
    assert pushes[0] > 0 and pushes[1] < pushes[0] * 0.1


def small_log() -> tuple[Impressions, Histories]:
    """Two users; user 0 has history [5], clicks 1 and 2 in request 0 (step 0) and 3 in request 2 (step 1)."""
    rows = [  # request, step, session, user, position, item, click
        (0, 0, 0, 0, 1, 1, True), (0, 0, 0, 0, 2, 2, True), (1, 0, 1, 1, 1, 4, False),
        (2, 1, 0, 0, 1, 3, True), (2, 1, 0, 0, 2, 0, False), (3, 1, 1, 1, 1, 2, True)]
    r = np.array(rows, dtype=np.int64)
    impressions = Impressions(r[:, 0], np.zeros(len(r), np.int32), r[:, 1].astype(np.int32), r[:, 2],
                              r[:, 3].astype(np.int32), r[:, 4].astype(np.int8), r[:, 5].astype(np.int32),
                              np.full(len(r), 0.25, np.float32), r[:, 6].astype(bool))
    return impressions, Histories.from_lists([[5], []], 6)


def test_trajectories_states_slates_and_returns():
    impressions, histories = small_log()
    t = Trajectories.from_impressions(impressions, histories, max_len=3, gamma=0.5)
    # One row per request, by user then request: user 0's requests 0 and 2, user 1's requests 1 and 3.
    assert t.items.tolist() == [[1, 2], [3, 0], [4, -1], [2, -1]]
    # Request 0 sees only the history (items shifted by 1, padding 0), request 2 its clicks 1 and 2 as well;
    # user 1 has no history and no click before request 3.
    assert t.states.tolist() == [[0, 0, 6], [6, 2, 3], [0, 0, 0], [0, 0, 0]]
    # Session 0 has 2 clicks at step 0 and 1 at step 1; session 1 none at step 0 and 1 at step 1: each shown
    # item's click plus 0.5 times the next step's clicks; padding 0.
    assert t.returns.tolist() == [[1.5, 1.5], [1.0, 0.0], [0.5, 0.0], [1.0, 0.0]]
    assert t.propensities.tolist() == [[0.25, 0.25], [0.25, 0.25], [0.25, 1.0], [0.25, 1.0]]
    no_propensity = Impressions(*(np.full(6, np.nan, np.float32) if f == "propensity" else getattr(impressions, f)
                                  for f in Impressions.__dataclass_fields__))
    with pytest.raises(DataError, match="propensity"):
        Trajectories.from_impressions(no_propensity, histories, max_len=3, gamma=0.5)


def test_fine_tuning_on_a_planted_reward_moves_mass_to_the_clicked_item():
    """In state [5], slates show items 1, 2, 3 in two orders (uniform behaviour); users always click 3 and ignore
    1 and 2, so against the per-position baseline 3 has a positive advantage and 1 and 2 negative ones."""
    impressions, histories = small_log()
    start = SASRec(hidden=8, blocks=1, max_len=3, epochs=1, patience=0, device="cpu", verbose=False)
    with pytest.raises(NotFittedError):
        TopKReinforce().fit(Trajectories.from_impressions(impressions, histories, max_len=3, gamma=0.5), start)
    data = Dataset.from_events(pd.DataFrame({"user": [0, 0, 1, 1], "item": [5, 1, 2, 4], "timestamp": [0, 1, 0, 1]}),
                               items=Vocabulary(range(6)))
    start.fit(data)
    n = 64
    slates = np.tile([[1, 2, 3], [3, 1, 2]], (n // 2, 1))
    planted = Trajectories(states=np.tile([0, 0, 6], (n, 1)), items=slates,
                           returns=(slates == 3).astype(np.float32), propensities=np.full((n, 3), 0.2, np.float32))
    tuned = TopKReinforce(k=3, epochs=20, lr=1e-2).fit(planted, start)
    assert np.allclose(tuned.baseline_, [0.5, 0, 0.5])  # the per-position mean return
    state = Histories.from_lists([[5]], 6)

    def probabilities(model) -> np.ndarray:
        logits = model.score(state)[0]
        return np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()

    before, after = probabilities(start), probabilities(tuned)
    assert after[3] > before[3] and after[1] < before[1] and after[2] < before[2]
    assert np.allclose(before, probabilities(start))  # the start is untouched
