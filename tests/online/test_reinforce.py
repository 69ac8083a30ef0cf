"""Top-K off-policy REINFORCE: the correction formula, the gradient's direction on a toy bandit, trajectories."""

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
    a = torch.as_tensor(clicked)
    ones = torch.ones(len(clicked))
    propensity = torch.as_tensor(beta[clicked], dtype=torch.float32) if corrected else ones
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


def test_loss_gradient_raises_the_logged_action_and_topk_damps_likely_items():
    logits = torch.tensor([[2.0, 0.0, 0.0]], requires_grad=True)
    for k, expected_sign in ((1, -1), (3, -1)):
        logits.grad = None
        reinforce_loss(logits, torch.tensor([1]), torch.tensor([1.0]), torch.tensor([0.5]), k=k,
                       weight_cap=10.0).backward()
        assert np.sign(logits.grad[0, 1].item()) == expected_sign  # descent raises the action's logit
    # For an item the policy already ranks first, lambda_K < 1 shrinks the push as K grows.
    pushes = []
    for k in (1, 5):
        logits.grad = None
        reinforce_loss(logits, torch.tensor([0]), torch.tensor([1.0]), torch.tensor([0.5]), k=k,
                       weight_cap=10.0).backward()
        pushes.append(-logits.grad[0, 0].item())
    assert pushes[1] < pushes[0] * 0.1
    # Capping: a tiny propensity gives the capped weight, not pi / beta.
    logits.grad = None
    capped = reinforce_loss(logits, torch.tensor([1]), torch.tensor([1.0]), torch.tensor([1e-9]), k=1,
                            weight_cap=2.0)
    pi = torch.softmax(logits, 1)[0, 1]
    assert capped.item() == pytest.approx(-2.0 * torch.log(pi).item(), rel=1e-5)


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


def test_trajectories_states_and_returns():
    impressions, histories = small_log()
    t = Trajectories.from_impressions(impressions, histories, max_len=3, gamma=0.5)
    assert t.actions.tolist() == [1, 2, 3, 2]
    # The clicks of request 0 both see only the history; request 2 sees them; padding is 0, items shifted by 1.
    assert t.states.tolist() == [[0, 0, 6], [0, 0, 6], [6, 2, 3], [0, 0, 0]]
    # Session 0: step 0 has 2 clicks, step 1 one: returns 1 + 0.5 * 1 at step 0, 1 at step 1.
    assert t.returns.tolist() == [1.5, 1.5, 1.0, 1.0]
    no_propensity = Impressions(*(np.full(6, np.nan, np.float32) if f == "propensity" else getattr(impressions, f)
                                  for f in Impressions.__dataclass_fields__))
    with pytest.raises(DataError, match="propensity"):
        Trajectories.from_impressions(no_propensity, histories, max_len=3, gamma=0.5)


def test_fine_tuning_raises_the_rewarded_items():
    impressions, histories = small_log()
    start = SASRec(hidden=8, blocks=1, max_len=3, epochs=1, patience=0, device="cpu")
    with pytest.raises(NotFittedError):
        TopKReinforce().fit(Trajectories.from_impressions(impressions, histories, max_len=3, gamma=0.5), start)
    data = Dataset.from_events(pd.DataFrame({"user": [0, 0, 1, 1], "item": [5, 1, 2, 4], "timestamp": [0, 1, 0, 1]}),
                               items=Vocabulary(range(6)))
    start.fit(data)
    trajectories = Trajectories.from_impressions(impressions, histories, max_len=3, gamma=0.5)
    before = start.score(histories)
    tuned = TopKReinforce(k=2, epochs=30, lr=1e-2).fit(trajectories, start)
    after = tuned.score(histories)
    # Item 3 (clicked after [5, 1, 2]) rises for user 0's next state relative to the never-clicked item 0.
    state = Histories.from_lists([[5, 1, 2]], 6)
    gain = tuned.score(state)[0] - start.score(state)[0]
    assert gain[3] > gain[0]
    assert not np.allclose(before, after) and np.allclose(before, start.score(histories))  # the start is untouched
