"""Spark MLlib ALS writes the single-node iALS / biased-MF artifact: it loads, recommends, folds in and explains."""

import numpy as np
import pytest

from recengine.data.dataset import Dataset
from recengine.data.movielens import bundled_movielens
from recengine.data.splits import split
from recengine.engines.spark.als import SparkImplicitALS
from recengine.engines.spark.training import create_trainer, fit_bundle
from recengine.errors import ConfigError, DataError
from recengine.evaluation.evaluate import evaluate
from recengine.models.biased_mf import BiasedMF
from recengine.models.ials import ImplicitALS
from recengine.trained import TrainedModel


@pytest.fixture(scope="module")
def ratings():
    return bundled_movielens()


def events_of(spark, dataset: Dataset):
    """The event table the Spark reader produces, from a Dataset (user, item, timestamp, rating, weight)."""
    return spark.createDataFrame(dataset.to_frame())


def test_spark_ials_artifact_loads_as_ials_and_recommends_folds_in_and_explains(spark, ratings, tmp_path):
    trained = fit_bundle(events_of(spark, ratings), ratings, "ials", {"factors": 16, "iterations": 5})
    trained.save(tmp_path / "model")
    loaded = TrainedModel.load(tmp_path / "model")
    assert type(loaded.model) is ImplicitALS and loaded.model.name == "ials"
    assert loaded.info["engine"] == "spark" and loaded.model.solver == "cholesky"
    assert loaded.model.user_factors_.shape == (ratings.n_users, 16)
    assert np.abs(loaded.model.item_factors_).sum(axis=1).min() > 0  # every item was trained

    users = list(ratings.users.ids[:50])
    recs = loaded.recommend(users, k=10)
    assert len(recs) == 500 and (recs["source"] == "ials").all()
    seen = set(zip(ratings.to_frame()["user"], ratings.to_frame()["item"], strict=True))
    assert not any((u, i) in seen for u, i in zip(recs["user"], recs["item"], strict=True))

    # A training user's history folded in as a new user ranks items much as the learned factors do.
    history = loaded.histories_for([users[0]])
    learned = loaded.model.score(history)[0]
    folded = loaded.model.score(history.with_users(None))[0]
    assert np.corrcoef(learned, folded)[0, 1] > 0.9
    new_user = loaded.recommend_new_user(5, liked=list(ratings.items.ids[:3]))
    assert len(new_user) == 5 and (new_user["source"] == "model").all()
    # Hu et al.'s explanation of the Spark factors: the contributions sum to the folded-in score.
    item = int(ratings.items.index(recs["item"].iloc[0]))
    explanation = loaded.model.explain(history, item, top=len(history.items))
    assert sum(c for _, c in explanation.contributions) == pytest.approx(float(folded[item]), rel=1e-3)
    assert loaded.explain(users[0], recs["item"].iloc[0])["text"].startswith("Because you liked")


def test_spark_biased_mf_artifact_predicts_ratings(spark, ratings, tmp_path):
    trained = fit_bundle(events_of(spark, ratings), ratings, "biased-mf", {"factors": 8, "iterations": 5})
    trained.save(tmp_path / "model")
    loaded = TrainedModel.load(tmp_path / "model")
    assert type(loaded.model) is BiasedMF
    frame = ratings.to_frame()
    predicted = loaded.score_pairs(frame[["user", "item"]])["score"].to_numpy()
    rmse = np.sqrt(np.mean((predicted - frame["rating"].to_numpy()) ** 2))
    baseline = frame["rating"].std()
    assert rmse < 0.8 * baseline
    assert predicted.min() >= 0.5 and predicted.max() <= 5.0
    # A training user's ratings folded in as a new user's (the model's ridge regression) predict alike.
    history = loaded.histories_for([ratings.users.ids[0]])
    learned = loaded.model.score(history)[0]
    folded = loaded.model.score(history.with_users(None))[0]
    assert np.corrcoef(learned, folded)[0, 1] > 0.8


def test_spark_als_ndcg_is_close_to_single_node_ials(spark, ratings):
    """The equivalence target, loosened for test time (fewer iterations); benchmarks/spark.py has the full row."""
    data = split(ratings, "temporal-user")
    train = data.train
    spark_model = fit_bundle(events_of(spark, train), train, "ials",
                             {"regularization": 0.05, "alpha": 1.0, "iterations": 8}).model
    ours = ImplicitALS(iterations=8).fit(train)
    spark_ndcg = evaluate(spark_model, data, ks=(20,)).metrics["ndcg@20"]
    our_ndcg = evaluate(ours, data, ks=(20,)).metrics["ndcg@20"]
    assert spark_ndcg > 0.9 * our_ndcg


def test_bad_inputs_get_clear_errors(spark):
    with pytest.raises(ConfigError, match="--engine spark trains"):
        create_trainer("ease")
    with pytest.raises(ConfigError, match="no parameter"):
        create_trainer("ials", learning_rate=0.1)
    frame = bundled_movielens().to_frame().head(200)
    frame["weight"] = -1.0
    dataset = Dataset.from_events(frame)
    with pytest.raises(DataError, match="non-negative"):
        fit_bundle(spark.createDataFrame(frame), dataset, "ials")
    with pytest.raises(ConfigError, match="factors"):
        SparkImplicitALS(factors=0).fit(None, 1, 1)
