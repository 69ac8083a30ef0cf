"""The batch CLI end to end: fit → recommend → score, evaluate, tune, and every bad-input path."""

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recengine.cli import main
from recengine.data.sources import load_events_file
from recengine.data.splits import split
from recengine.evaluation.tuning import select_model
from recengine.models.itemknn import ItemKNN
from recengine.testing import contract_dataset
from recengine.trained import TrainedModel


@pytest.fixture()
def train_csv(tmp_path):
    frame = contract_dataset().to_frame()[["user", "item", "timestamp", "rating"]]
    path = tmp_path / "train.csv"
    frame.to_csv(path, index=False)
    return path, frame


def run(*argv) -> int:
    return main([str(a) for a in argv])


def test_fit_recommend_score_round_trip(tmp_path, train_csv, capsys):
    path, frame = train_csv
    model_dir = tmp_path / "model"
    assert run("fit", "--events", path, "--model", "itemknn", "--param", "neighbors=20", "--out", model_dir) == 0
    users = tmp_path / "users.txt"
    users.write_text("u1\nu2\nnobody\n")
    recs_path = tmp_path / "recs.csv"
    assert run("recommend", "--model-dir", model_dir, "--users", users, "--k", 5, "--out", recs_path) == 0
    recs = pd.read_csv(recs_path, dtype={"user": str, "item": str})
    assert list(recs.columns) == ["user", "item", "rank", "score"]
    assert recs.groupby("user").size().to_dict() == {"u1": 5, "u2": 5, "nobody": 5}
    seen = set(zip(frame["user"], frame["item"], strict=True))
    assert not any((u, i) in seen for u, i in zip(recs["user"], recs["item"], strict=True))
    assert all(ranks == [1, 2, 3, 4, 5] for ranks in recs.groupby("user")["rank"].apply(list))
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"user": ["u1", "u1", "nobody"], "item": ["i3", "unknown-item", "i3"]}).to_csv(pairs, index=False)
    scores_path = tmp_path / "scores.csv"
    assert run("score", "--model-dir", model_dir, "--pairs", pairs, "--out", scores_path) == 0
    scores = pd.read_csv(scores_path)
    assert list(scores.columns) == ["user", "item", "score"] and len(scores) == 3
    assert scores["score"].isna().tolist() == [False, True, False]
    assert "never seen" in capsys.readouterr().err


def test_recommend_explains_each_row(tmp_path, train_csv):
    path, _ = train_csv
    model_dir = tmp_path / "model"
    assert run("fit", "--events", path, "--model", "itemknn", "--out", model_dir) == 0
    users = tmp_path / "users.txt"
    users.write_text("u1\nnobody\n")
    recs_path = tmp_path / "recs.csv"
    assert run("recommend", "--model-dir", model_dir, "--users", users, "--k", 3, "--explain", "--out", recs_path) == 0
    recs = pd.read_csv(recs_path, dtype={"user": str, "item": str})
    assert list(recs.columns) == ["user", "item", "rank", "score", "reason", "text"]
    known, unknown = recs[recs["user"] == "u1"], recs[recs["user"] == "nobody"]
    assert (known["reason"] == "liked").all() and known["text"].str.startswith("Because you liked i").all()
    assert (unknown["reason"] == "popular").all() and unknown["text"].str.startswith("Popular").all()


def test_rating_model_scores_are_predicted_ratings(tmp_path, train_csv):
    path, _ = train_csv
    model_dir = tmp_path / "svd"
    assert run("fit", "--events", path, "--model", "biased-mf", "--param", "factors=4", "--out", model_dir) == 0
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"user": ["u0", "u1"], "item": ["i0", "i39"]}).to_csv(pairs, index=False)
    out = tmp_path / "scores.csv"
    assert run("score", "--model-dir", model_dir, "--pairs", pairs, "--out", out) == 0
    scores = pd.read_csv(out)["score"].to_numpy()
    # The CLI answers with the model's own predicted ratings for those entries.
    trained = TrainedModel.load(model_dir)
    users, items = trained.dataset.users, trained.dataset.items
    h = trained.histories_for(["u0", "u1"])
    entries = sp.csr_matrix(([1.0, 1.0], ([0, 1], [items.index("i0"), items.index("i39")])),
                            shape=(2, items.__len__()))
    expected = trained.model.predict(h, entries)
    np.testing.assert_allclose(scores, [expected[0, items.index("i0")], expected[1, items.index("i39")]],
                               rtol=1e-5)
    assert users.index("u0") >= 0


def test_model_auto_picks_on_validation_and_says_why(tmp_path, train_csv, capsys):
    path, _ = train_csv
    assert run("fit", "--events", path, "--model", "auto", "--candidates", "popular,itemknn",
               "--out", tmp_path / "auto") == 0
    err = capsys.readouterr()
    assert "picked" in err.err and "validation" in err.err
    info = json.loads((tmp_path / "auto" / "bundle.json").read_text())
    data = load_events_file(str(path))
    best, _ = select_model(["popular", "itemknn"], split(data, "temporal-user", random_state=42))
    assert info["model"] == best


def test_evaluate_writes_a_json_report(tmp_path, train_csv):
    path, _ = train_csv
    out = tmp_path / "report.json"
    assert run("evaluate", "--events", path, "--models", "popular,itemknn", "--k", "5,10", "--out", out) == 0
    report = json.loads(out.read_text())
    assert report["config"]["protocol"] == "temporal-user"
    assert report["dataset"]["users"] == 60
    names = [r["model"] for r in report["results"]]
    assert names == ["popular", "itemknn"]
    for result in report["results"]:
        assert 0.0 <= result["metrics"]["ndcg@10"] <= 1.0
        low, high = result["intervals"]["ndcg@10"]
        assert low < result["metrics"]["ndcg@10"] < high
        assert {"fit_seconds", "predict_seconds"} <= set(result["timings"])


def test_tune_and_models_and_info(tmp_path, train_csv, capsys):
    path, _ = train_csv
    out = tmp_path / "best.json"
    assert run("tune", "itemknn", "--events", path, "--trials", 3, "--out", out) == 0
    best = json.loads(out.read_text())
    assert best["model"] == "itemknn" and 0.0 <= best["value"] <= 1.0
    assert set(best["params"]) == set(ItemKNN.search_space)
    assert run("models") == 0
    assert "ease" in capsys.readouterr().out
    assert run("fit", "--events", path, "--model", "popular", "--out", tmp_path / "m") == 0
    assert run("info", tmp_path / "m") == 0
    assert '"model": "popular"' in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["fit", "--model", "nope"], "unknown model 'nope'"),
    (["fit", "--model", "itemknn", "--param", "neighbours=3"], "no parameter 'neighbours'"),
    (["fit", "--model", "itemknn", "--param", "neighbors=many"], "neighbors takes an integer"),
    (["fit", "--model", "itemknn", "--param", "neighbors"], "key=value"),
    (["fit", "--model", "itemknn", "--param", "neighbors=0"], "neighbors must be >= 1"),
])
def test_bad_model_options_exit_2_with_a_message(tmp_path, train_csv, capsys, argv, message):
    path, _ = train_csv
    assert run(*argv, "--events", path, "--out", tmp_path / "m") == 2
    assert message in capsys.readouterr().err.replace("\n", "")
    assert not (tmp_path / "m").exists()


def test_bad_files_exit_2_naming_the_problem(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,timestamp\nu1,i1,100\nu2,i2,yesterday-ish\n")
    assert run("fit", "--events", bad, "--model", "popular", "--out", tmp_path / "m") == 2
    err = capsys.readouterr().err.replace("\n", "")
    assert "bad.csv" in err and "line 3" in err
    assert run("fit", "--events", tmp_path / "missing.csv", "--model", "popular", "--out", tmp_path / "m") == 2
    assert "missing.csv" in capsys.readouterr().err.replace("\n", "")
    assert run("recommend", "--model-dir", tmp_path / "nothing-here", "--k", 3) == 2
    assert "not a model directory" in capsys.readouterr().err.replace("\n", "")


def test_reject_file_keeps_the_good_rows(tmp_path, capsys):
    bad = tmp_path / "mixed.csv"
    bad.write_text("user,item,timestamp\nu1,i1,100\nu2,i2,oops\nu2,i1,101\n")
    rejects = tmp_path / "rejects.csv"
    assert run("fit", "--events", bad, "--model", "popular", "--reject-file", rejects,
               "--out", tmp_path / "m") == 0
    assert len(pd.read_csv(rejects)) == 1
    info = json.loads((tmp_path / "m" / "bundle.json").read_text())
    assert info["dataset"]["interactions"] == 2


def test_fit_never_deletes_a_directory_that_is_not_a_model(tmp_path, train_csv, capsys):
    path, _ = train_csv
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    assert run("fit", "--events", path, "--model", "popular", "--out", keep) == 2
    assert "not a model directory" in capsys.readouterr().err.replace("\n", "")
    assert (keep / "notes.txt").read_text() == "mine"
    model_dir = tmp_path / "model"
    assert run("fit", "--events", path, "--model", "popular", "--out", model_dir) == 0
    assert run("fit", "--events", path, "--model", "itemknn", "--out", model_dir) == 0  # a bundle is replaced
    assert json.loads((model_dir / "bundle.json").read_text())["model"] == "itemknn"


def test_bad_cutoffs_and_split_sources_exit_2(tmp_path, train_csv, capsys):
    path, _ = train_csv
    with pytest.raises(SystemExit) as exit_info:
        run("evaluate", "--events", path, "--k", "ten")
    assert exit_info.value.code == 2
    assert "positive integers" in capsys.readouterr().err
    assert run("fit", "--dataset", "ncf:/nonexistent/lastfm", "--model", "popular", "--out", tmp_path / "m") == 2


def test_partial_column_mapping_keeps_the_other_canonical_columns(tmp_path, train_csv):
    path, frame = train_csv
    renamed = tmp_path / "renamed.csv"
    frame.rename(columns={"user": "customer"}).to_csv(renamed, index=False)
    data = load_events_file(str(renamed), columns="user=customer")
    assert data.has_ratings and data.n_interactions == len(frame)


@pytest.fixture()
def model_with_genres(tmp_path, train_csv):
    """A fitted model whose items carry genres: the contract data's two taste groups are Comedy and Horror."""
    path, frame = train_csv
    items = pd.DataFrame({"item": sorted(frame["item"].unique())})
    items["genres"] = ["Comedy" if int(i[1:]) < 20 else "Horror|Drama" for i in items["item"]]
    items_path = tmp_path / "items.csv"
    items.to_csv(items_path, index=False)
    model_dir = tmp_path / "model"
    assert run("fit", "--events", path, "--items", items_path, "--model", "popular", "--out", model_dir) == 0
    return model_dir


def test_profile_and_segments_of_a_model_directory(model_with_genres, capsys):
    capsys.readouterr()
    assert run("profile", "u0", "--model-dir", model_with_genres, "--segments", 2, "--json") == 0
    profile = json.loads(capsys.readouterr().out)
    assert profile["user"] == "u0" and profile["category_column"] == "genres"
    assert profile["categories"][0]["name"] == "Comedy"  # u0 is in the group that likes items i0..i19
    assert sum(c["weight"] for c in profile["categories"]) == pytest.approx(1.0)
    assert profile["activity"]["interactions"] == 10 and profile["activity"]["ratings"] == 10
    assert profile["segment"]["name"].startswith("Comedy")
    assert run("profile", "u1", "--model-dir", model_with_genres, "--top", 2) == 0
    text = capsys.readouterr().out
    assert "user u1" in text and "Horror" in text and "mainstreamness" in text
    assert run("segments", "--model-dir", model_with_genres, "--n", 2, "--json") == 0
    segments = json.loads(capsys.readouterr().out)["segments"]
    assert sorted(s["users"] for s in segments) == [30, 30]
    assert run("segments", "--model-dir", model_with_genres, "--n", 2) == 0
    assert "Comedy" in capsys.readouterr().out


def test_profile_without_item_features_and_bad_requests_exit_2(tmp_path, train_csv, model_with_genres, capsys):
    path, _ = train_csv
    assert run("profile", "u0", "--events", path) == 0
    captured = capsys.readouterr()
    assert "no item categories" in captured.out.replace("\n", "") and "10 interactions" in captured.out
    assert "no segment" in captured.err
    assert run("profile", "nobody", "--model-dir", model_with_genres) == 2
    assert "unknown user 'nobody'" in capsys.readouterr().err.replace("\n", "")
    assert run("segments", "--events", path) == 2
    assert "item categories" in capsys.readouterr().err.replace("\n", "")
    assert run("segments", "--model-dir", model_with_genres, "--n", 100) == 2
    assert "at most" in capsys.readouterr().err.replace("\n", "")
    assert run("profile", "u0") == 2
    assert "--model-dir" in capsys.readouterr().err
    assert run("profile", "u0", "--model-dir", model_with_genres, "--events", path) == 2
    assert "not both" in capsys.readouterr().err


def test_ingest_detects_kinds_and_export_writes_back(tmp_path, train_csv, capsys, monkeypatch):
    from recengine.store import Store

    path, frame = train_csv
    items = tmp_path / "items.csv"
    pd.DataFrame({"item": ["i0", "i1", "cold"], "title": ["A", "B", "C"], "genres": ["x|y", "y", ""]}).to_csv(
        items, index=False)
    users = tmp_path / "users.jsonl"
    pd.DataFrame({"user": ["u0", "new"], "age": [30, 40]}).to_json(users, orient="records", lines=True)
    monkeypatch.setenv("RECENGINE_STORE", f"sqlite:///{tmp_path / 'env.db'}")  # the default store
    assert run("ingest", path, items, users) == 0
    err = capsys.readouterr().err.replace("\n", "")
    assert f"{len(frame):,} events" in err and "events/s" in err and "3 items" in err and "2 users" in err
    with Store.open() as store:
        counts = store.counts()
        snapshot = store.snapshot()
    assert counts["events"] == len(frame) and counts["items"] == frame["item"].nunique() + 1
    assert snapshot.item_features.loc["i0", "genres"] == ["x", "y"] and "cold" in snapshot.items
    out = tmp_path / "events.parquet"
    assert run("export", "--what", "events", "--out", out) == 0
    back = pd.read_parquet(out)
    assert len(back) == len(frame) and set(back.columns) == {"user", "item", "timestamp", "rating"}
    assert run("export", "--what", "items", "--out", tmp_path / "items-out.csv") == 0
    assert pd.read_csv(tmp_path / "items-out.csv").set_index("item").loc["i0", "genres"] == "x|y"


def test_ingest_column_mapping_kind_and_bad_input_exit_2(tmp_path, capsys):
    from recengine.store import Store

    store = f"sqlite:///{tmp_path / 's.db'}"
    renamed = tmp_path / "ratings.csv"
    renamed.write_text("userId,movieId,ts\n1,10,100\n2,10,oops\n2,11,102\n")
    assert run("ingest", renamed, "--store", store, "--columns", "user=userId,item=movieId,timestamp=ts") == 2
    assert "ratings.csv, line 3: unparsable timestamp" in capsys.readouterr().err.replace("\n", "")
    rejects = tmp_path / "rejects.csv"
    assert run("ingest", renamed, "--store", store, "--columns", "user=userId,item=movieId,timestamp=ts",
               "--reject-file", rejects) == 0
    assert "1 bad rows" in capsys.readouterr().err.replace("\n", "") and len(pd.read_csv(rejects)) == 1
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b\n1,2\n")
    assert run("ingest", odd, "--store", store) == 2
    assert "--kind" in capsys.readouterr().err.replace("\n", "")
    people = tmp_path / "people.csv"
    people.write_text("userId,movieId\n1,10\n3,11\n")  # would be items by its columns
    assert run("ingest", people, "--store", store, "--kind", "users", "--columns", "user=userId") == 0
    assert "2 users" in capsys.readouterr().err
    with Store.open(store) as opened:
        assert "3" in opened.users().index
    assert run("ingest", renamed, "--store", "nonsense") == 2
    assert "not a store URL" in capsys.readouterr().err.replace("\n", "")
    assert run("export", "--store", store, "--out", tmp_path / "e.xlsx") == 2


def test_keys_create_list_revoke(tmp_path, capsys):
    from recengine.store import Store

    store = f"sqlite:///{tmp_path / 'keys.db'}"
    assert run("keys", "create", "dashboard", "--scopes", "read,write", "--store", store) == 0
    captured = capsys.readouterr()
    key = captured.out.strip()
    assert key.startswith("rk_") and "shown only this once" in captured.err
    with Store.open(store) as opened:
        assert opened.verify_api_key(key) == ["read", "write"]
    assert run("keys", "list", "--store", store) == 0
    listed = capsys.readouterr().out
    assert "dashboard" in listed and key not in listed
    assert run("keys", "revoke", "1", "--store", store) == 0
    with Store.open(store) as opened:
        assert opened.verify_api_key(key) is None
    assert run("keys", "create", "x", "--scopes", "read,root", "--store", store) == 2
    assert "read, write, admin" in capsys.readouterr().err


def test_serve_without_a_model_exits_2_before_binding_a_port(tmp_path, capsys):
    store = f"sqlite:///{tmp_path / 'empty.db'}"
    assert run("serve", "--store", store) == 2
    assert "no active model version" in capsys.readouterr().err
    assert run("serve", "--store", store, "--model-dir", tmp_path / "missing") == 2
