import json
from dataclasses import replace
from typing import Self

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.data import Dataset, Histories, Vocabulary
from recengine.data.splits import predefined_split, split
from recengine.errors import ConfigError, DataError, NotFittedError
from recengine.evaluation import compare, evaluate, fit_and_evaluate, leaderboard
from recengine.models.base import Recommender
from recengine.models.popular import MostPopular

ITEMS = Vocabulary(["A", "B", "C", "D", "E"])
L3 = 1 / np.log2(3)


def loo_split():
    """loo on five users. Train popularity A=3, B=2, C=D=E=1; MostPopular (ties to the lower index), minus
    each user's train items, ranks: u1 C,D,E (truth C); u2 C,D,E (truth D); u3 B,D,E (truth B); u4 A,B,C
    (truth A). u5 has one interaction and is not evaluated."""
    rows = [("u1", "A", 1), ("u1", "B", 2), ("u1", "C", 3), ("u2", "A", 1), ("u2", "B", 2), ("u2", "D", 3),
            ("u3", "A", 1), ("u3", "C", 2), ("u3", "B", 3), ("u4", "E", 1), ("u4", "A", 2), ("u5", "D", 1)]
    frame = pd.DataFrame(rows, columns=["user", "item", "timestamp"])
    ds = Dataset.from_events(frame, items=ITEMS, name="tiny")
    return split(ds, "loo")


class ItemMean(Recommender):
    """Predicts each item's mean training rating (a test-only rating model; no name, so not registered)."""

    feedback = "ratings"

    def fit(self, dataset: Dataset) -> Self:
        self._validate_params()
        self._check_dataset(dataset)
        sums = np.bincount(dataset.item_index, weights=dataset.rating, minlength=dataset.n_items)
        counts = np.bincount(dataset.item_index, minlength=dataset.n_items)
        means = np.where(counts > 0, sums / np.maximum(counts, 1), dataset.rating.mean())
        self.means_ = means.astype(np.float32)
        self.n_items_ = dataset.n_items
        return self

    def score(self, histories: Histories) -> np.ndarray:
        return np.broadcast_to(self.means_, (len(histories), self.n_items_))


def ratings_split():
    """Train: u1 A=5 B=3, u2 A=3 C=2, u3 B=5 -> item means A=4, B=4, C=2. Test: u1 C=4 (predicted 2),
    u2 B=1 (predicted 4): errors -2 and +3."""
    rows = [("u1", "A", 5.0), ("u1", "B", 3.0), ("u2", "A", 3.0), ("u2", "C", 2.0), ("u3", "B", 5.0),
            ("u1", "C", 4.0), ("u2", "B", 1.0)]
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"]).assign(timestamp=np.arange(len(rows)))
    users, items = Vocabulary(["u1", "u2", "u3"]), Vocabulary(["A", "B", "C"])
    train = Dataset.from_events(frame.iloc[:5], users=users, items=items)
    test = Dataset.from_events(frame.iloc[5:], users=users, items=items)
    return predefined_split(train, test)


def test_most_popular_metrics_by_hand():
    s = loo_split()
    report = fit_and_evaluate(MostPopular(), s, ks=(1, 3))
    users = list(s.train.users.lookup(report.users))
    assert users == ["u1", "u2", "u3", "u4"]
    np.testing.assert_allclose(report.per_user["hr@1"], [1, 0, 1, 1])
    np.testing.assert_allclose(report.per_user["mrr@3"], [1, 0.5, 1, 1])
    np.testing.assert_allclose(report.per_user["ndcg@3"], [1, L3, 1, 1])
    np.testing.assert_allclose(report.per_user["recall@3"], [1, 1, 1, 1])
    np.testing.assert_allclose(report.per_user["precision@3"], [1 / 3] * 4)
    np.testing.assert_allclose(report.per_user["arp@1"], [1, 1, 2, 3])  # first items C, C, B, A
    np.testing.assert_allclose(report.per_user["novelty@1"], -np.log2(np.array([1, 1, 2, 3]) / 5))
    assert report.metrics["hr@1"] == pytest.approx(0.75)
    assert report.metrics["mrr@3"] == pytest.approx(0.875)
    assert report.metrics["ndcg@3"] == pytest.approx((3 + L3) / 4)
    assert report.metrics["coverage@1"] == pytest.approx(3 / 5)   # {A, B, C}
    assert report.metrics["coverage@3"] == pytest.approx(1.0)
    assert list(report.metrics)[:6] == ["recall@1", "precision@1", "ndcg@1", "map@1", "hr@1", "mrr@1"]
    ci = report.intervals["mrr@3"]
    assert ci.low < 0.875 < ci.high and ci.n == 4
    assert report.timings["fit_seconds"] >= 0 and report.timings["predict_seconds"] > 0
    assert report.dataset["evaluated_users"] == 4 and report.dataset["name"] == "tiny:train"
    assert report.model == "popular" and report.protocol == "loo"


def test_sampled_candidates_restrict_the_ranking():
    s = loo_split()
    # Candidates are each truth item plus E. Every truth item (C, D, B, A) is at least as popular as E and
    # has a lower index, so it is ranked first; u2, who missed at full ranking (C came first), now hits.
    e = sp.csr_matrix((np.ones(4), (np.arange(4), np.full(4, 4))), shape=s.truth.shape)
    report = evaluate(MostPopular().fit(s.train), replace(s, candidates=(s.truth + e).tocsr()), ks=(1,))
    np.testing.assert_allclose(report.per_user["hr@1"], [1, 1, 1, 1])


def test_rating_models_get_rmse_and_mae():
    s = ratings_split()
    report = fit_and_evaluate(ItemMean(), s, ks=(1,))
    assert report.metrics["rmse"] == pytest.approx(np.sqrt((4 + 9) / 2))
    assert report.metrics["mae"] == pytest.approx(2.5)
    np.testing.assert_allclose(np.sort(report.per_entry["error"]), [-2.0, 3.0])
    assert "rating_predict_seconds" in report.timings
    with pytest.raises(ConfigError, match="rating model"):
        evaluate(MostPopular().fit(s.train), s, metrics=("rmse",))


def test_relevance_threshold_keeps_only_liked_items():
    s = ratings_split()
    report = evaluate(ItemMean().fit(s.train), s, ks=(1,), relevance_threshold=3.0)
    assert list(s.train.users.lookup(report.users)) == ["u1"]   # u2's only test rating (1) is not relevant
    assert report.info["users_without_relevant_items"] == 1
    assert report.metrics["rmse"] == pytest.approx(np.sqrt(6.5))  # rating metrics still use every rating


def test_report_to_dict_is_strict_json():
    report = fit_and_evaluate(MostPopular(), loo_split(), ks=(1, 3))
    text = json.dumps(report.to_dict(per_user=True), allow_nan=False)
    back = json.loads(text)
    assert back["metrics"]["hr@1"] == pytest.approx(0.75) and back["protocol"] == "loo"
    assert back["intervals"]["hr@1"][0] < 0.75 and back["per_user"]["hr@1"] == [1, 0, 1, 1]
    assert back["params"] == {"half_life_days": 0.0, "category_prior": False, "tie_break": "index",
                              "random_state": 42}


def test_leaderboard_sorts_and_compare_pairs_users():
    s = ratings_split()
    good = fit_and_evaluate(ItemMean(), s, ks=(1,))
    pop = fit_and_evaluate(MostPopular(), s, ks=(1,))
    board = leaderboard([pop, good], sort_by="rmse")
    assert board["label"].tolist()[0] == "ItemMean()" and np.isnan(board["rmse"].iloc[1])
    loo = loo_split()
    a = fit_and_evaluate(MostPopular(), loo, ks=(1, 3))
    b = evaluate(MostPopular().fit(loo.train), loo, ks=(1, 3), metrics=("ndcg",))
    board = leaderboard([b, a], sort_by="ndcg@3", intervals=True)
    assert "ndcg@3 low" in board.columns and len(board) == 2
    same = compare(a, b, "ndcg@3")
    assert same.mean_difference == 0 and same.wilcoxon_pvalue == 1.0
    with pytest.raises(ConfigError, match="cannot sort by 'auc@10'"):
        leaderboard([a], sort_by="auc@10")
    with pytest.raises(DataError, match="same split"):
        compare(a, good, "hr@1")


def test_evaluate_rejects_mistakes():
    s = loo_split()
    with pytest.raises(NotFittedError):
        evaluate(MostPopular(), s)
    model = MostPopular().fit(s.train)
    with pytest.raises(ConfigError, match="unknown metric"):
        evaluate(model, s, metrics=("auc",))
    with pytest.raises(ConfigError, match="item_features"):
        evaluate(model, s, metrics=("diversity",))
    with pytest.raises(ConfigError, match="ks"):
        evaluate(model, s, ks=(0,))
    features = np.eye(5)
    report = evaluate(model, s, ks=(3,), item_features=features)
    np.testing.assert_allclose(report.per_user["diversity@3"], 1.0)  # orthogonal one-hot items
