"""AUC and log-loss against scikit-learn (when installed) and against a brute-force pairwise count."""

import numpy as np
import pytest

from recengine.errors import DataError
from recengine.evaluation.metrics import auc, log_loss


def pairwise_auc(labels, scores):
    """Share of (positive, negative) pairs ordered correctly, ties half: the definition, by brute force."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size


@pytest.fixture
def sample():
    rng = np.random.default_rng(3)
    labels = (rng.random(400) < 0.3).astype(int)
    scores = np.round(rng.normal(labels * 0.8, 1.0), 1)  # rounded: many ties
    return labels, scores


def test_auc_is_the_pairwise_count(sample):
    labels, scores = sample
    assert auc(labels, scores) == pytest.approx(pairwise_auc(labels, scores), abs=1e-12)
    assert auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0 and auc([1, 0], [0.5, 0.5]) == 0.5


def test_log_loss_closed_form():
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2)
    assert np.isfinite(log_loss([1], [0.0]))  # clipped, not infinite


def test_matches_scikit_learn(sample):
    metrics = pytest.importorskip("sklearn.metrics")
    labels, scores = sample
    probabilities = 1 / (1 + np.exp(-scores))
    assert auc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert log_loss(labels, probabilities) == pytest.approx(metrics.log_loss(labels, probabilities), abs=1e-12)


@pytest.mark.parametrize("call", [lambda: auc([1, 1], [0.1, 0.2]), lambda: auc([0, 2], [0.1, 0.2]),
                                  lambda: auc([0, 1], [0.1]), lambda: log_loss([0, 1], [0.5, 1.5]),
                                  lambda: log_loss([], []), lambda: auc([0, 1], [0.1, np.nan])])
def test_bad_input_is_a_data_error(call):
    with pytest.raises(DataError):
        call()
