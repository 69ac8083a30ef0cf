"""Fitting on Spark into the bundle that `recengine fit` writes (model + training data + popularity fallback)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import recengine
from recengine.data.dataset import Dataset
from recengine.engines.spark.als import SparkBiasedMF, SparkImplicitALS
from recengine.engines.spark.block_als import SparkBlockALS
from recengine.engines.spark.ids import indexed_events, spark_vocabulary, vocabulary_table
from recengine.engines.spark.itemknn import SparkItemKNN
from recengine.engines.spark.metrics import ranking_metrics
from recengine.engines.spark.scoring import history_table, top_k
from recengine.engines.spark.splits import split
from recengine.errors import ConfigError
from recengine.models.popular import MostPopular
from recengine.trained import TrainedModel

#: The models `--engine spark` trains, by the registry name of the artifact each one writes; ials-cg writes the
#: ials artifact too, solved by recengine's CG kernel in Spark tasks instead of MLlib's ALS.
TRAINERS = {"ials": SparkImplicitALS, "ials-cg": SparkBlockALS, "biased-mf": SparkBiasedMF, "itemknn": SparkItemKNN}


def create_trainer(name: str, **params: Any):
    """The Spark trainer of a model name, with hyper-parameters checked by name (values are checked at fit)."""
    if name not in TRAINERS:
        raise ConfigError(f"--engine spark trains {', '.join(TRAINERS)}, not {name!r}; use --engine local for it")
    trainer = TRAINERS[name]()
    unknown = sorted(set(params) - set(trainer.get_params()))
    if unknown:
        valid = ", ".join(sorted(trainer.get_params()))
        raise ConfigError(f"spark {name} has no parameter(s) {unknown}; valid: {valid}")
    for key, value in params.items():
        setattr(trainer, key, value)
    return trainer


def fit_bundle(events, dataset: Dataset, name: str, params: dict[str, Any] | None = None,
               progress: Callable[[str], None] = lambda line: None) -> TrainedModel:
    """Train `name` on a Spark events table (user, item, weight, timestamp[, rating]) into a TrainedModel.

    dataset is the same events collected (SparkEvents.to_dataset()): its vocabularies index the factor rows and
    it is the bundle's training data, so recommend, score and serve load the result as any fitted model.
    """
    trainer = create_trainer(name, **(params or {}))
    spark = events.sparkSession
    start = time.perf_counter()
    interactions = indexed_events(events, vocabulary_table(spark, dataset.users, "user"),
                                  vocabulary_table(spark, dataset.items, "item"))
    progress(f"indexed {dataset.n_interactions:,} events of {dataset.n_users:,} users and {dataset.n_items:,} items")
    trainer.fit(interactions, dataset.n_users, dataset.n_items)
    seconds = time.perf_counter() - start
    progress(f"trained {name} on Spark in {seconds:.1f}s")
    model = trainer.model_
    info = {"model": model.name, "params": model.get_params(), "fit_seconds": round(seconds, 3),
            "dataset": dataset.stats(), "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "recengine_version": recengine.__version__, "engine": "spark",
            "spark": {"trainer": type(trainer).__name__, "params": trainer.get_params(),
                      "master": spark.sparkContext.master, "spark_version": spark.version}}
    return TrainedModel(model, dataset, MostPopular().fit(dataset), info)


def evaluate_models(events, names: list[str], params: dict[str, dict[str, Any]], protocol: str = "temporal-user",
                    ks: tuple[int, ...] = (10, 20), *, random_state: int = 42,
                    progress: Callable[[str], None] = lambda line: None) -> list[dict[str, Any]]:
    """Split, train each model, rank every test user's unseen items and measure, all on Spark.

    Items are indexed over all events (as the single-node split keeps the whole catalogue); a test user without
    training history is scored from an empty one by the model itself, as single-node evaluation does. One row
    per model: model, fit and score seconds, and the metrics of recengine.engines.spark.metrics.
    """
    trainers = {name: create_trainer(name, **params.get(name, {})) for name in names}
    train, test = split(events, protocol, random_state=random_state)
    users, items = spark_vocabulary(events, "user").cache(), spark_vocabulary(events, "item").cache()
    n_users, n_items = users.count(), items.count()
    interactions = indexed_events(train, users, items).cache()
    progress(f"{protocol}: {interactions.count():,} train and {test.count():,} test events, {n_users:,} users, "
             f"{n_items:,} items")
    # Every indexed user is a known user of the trained models, so no scoring here reads history ratings.
    histories = history_table(interactions)
    test_users = users.join(test.select("user").distinct(), "user", "left_semi")
    rows = []
    for name, trainer in trainers.items():
        start = time.perf_counter()
        model = trainer.fit(interactions, n_users, n_items).model_
        fitted = time.perf_counter()
        recommendations = top_k(histories, model, model, test_users, items, max(ks)).cache()
        metrics = ranking_metrics(recommendations, test, ks, n_items=n_items)
        recommendations.unpersist()
        done = time.perf_counter()
        progress(f"{name}: fitted in {fitted - start:.1f}s, ranked and measured in {done - fitted:.1f}s")
        rows.append({"model": name, "fit_seconds": round(fitted - start, 2),
                     "score_seconds": round(done - fitted, 2), **metrics})
    interactions.unpersist()
    return rows
