"""recengine fit / recommend / evaluate --engine spark: the artifact serves the single-node commands, and bad
engine/model combinations stop with one clear line."""

import json

import pandas as pd
import pytest

from recengine.cli import main
from recengine.data.movielens import bundled_movielens
from recengine.trained import TrainedModel


@pytest.fixture(scope="module")
def events_csv(tmp_path_factory):
    data = bundled_movielens()
    frame = data.select(data.user_index < 100).to_frame()[["user", "item", "timestamp", "rating"]]
    path = tmp_path_factory.mktemp("events") / "ratings.csv"
    frame.to_csv(path, index=False)
    return path


def test_fit_on_spark_then_recommend_on_both_engines(spark, events_csv, tmp_path, capsys):
    model_dir = tmp_path / "model"
    assert main(["fit", "--engine", "spark", "--master", "local[2]", "--events", str(events_csv), "--model", "ials",
                 "--param", "factors=8", "--param", "iterations=3", "--out", str(model_dir)]) == 0
    said = capsys.readouterr().err
    assert "read 1" in said and "trained ials on Spark" in said and "wrote ImplicitALS" in said
    trained = TrainedModel.load(model_dir)
    assert trained.model.name == "ials" and trained.dataset.n_users == 100

    assert main(["recommend", "--model-dir", str(model_dir), "--k", "5", "--out", str(tmp_path / "local.csv")]) == 0
    assert main(["recommend", "--engine", "spark", "--model-dir", str(model_dir), "--k", "5",
                 "--out", str(tmp_path / "spark")]) == 0
    local = pd.read_csv(tmp_path / "local.csv", dtype={"user": str, "item": str})
    from_spark = pd.read_parquet(tmp_path / "spark")
    merged = local.merge(from_spark, on=["user", "rank"], suffixes=("_local", "_spark"))
    assert len(merged) == len(local) == 500
    assert (merged["item_local"] == merged["item_spark"]).mean() > 0.95  # ties aside (test_scoring: exact)


def test_evaluate_on_spark_matches_the_local_engine(spark, events_csv, tmp_path):
    args = ["evaluate", "--events", str(events_csv), "--models", "itemknn", "--param", "neighbors=50", "--k", "10"]
    assert main([*args, "--engine", "spark", "--out", str(tmp_path / "spark.json")]) == 0
    assert main([*args, "--out", str(tmp_path / "local.json")]) == 0
    on_spark = json.loads((tmp_path / "spark.json").read_text())["results"][0]
    local = json.loads((tmp_path / "local.json").read_text())["results"][0]["metrics"]
    assert on_spark["ndcg@10"] == pytest.approx(local["ndcg@10"], abs=0.01)
    assert on_spark["recall@10"] == pytest.approx(local["recall@10"], abs=0.01)


@pytest.mark.parametrize("argv, message", [
    (["fit", "--engine", "spark", "--model", "ease", "--events", "x.csv", "--out", "m"], "--engine spark trains"),
    (["fit", "--engine", "spark", "--model", "ials", "--param", "solver=cg", "--events", "x", "--out", "m"],
     "no parameter 'solver'"),
    (["recommend", "--engine", "spark", "--model-dir", "m"], "give --out"),
    (["recommend", "--engine", "spark", "--model-dir", "m", "--explain", "--out", "o"], "--explain is for"),
    (["evaluate", "--engine", "spark", "--events", "x", "--negatives", "10"], "--negatives is for"),
])
def test_bad_engine_combinations_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err

