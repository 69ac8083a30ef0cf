"""The demo end to end with one fast model and without serving: leaderboard, recommendations, then the bundled
MovieLens in a fresh store with an active, evaluated model version and an admin key."""

from recengine.cli import main
from recengine.data.movielens import bundled_movielens
from recengine.store import Store
from recengine.trained import TrainedModel


def test_demo_loads_a_store_and_activates_a_version(tmp_path, capsys):
    argv = ["demo", "--models", "popular", "--users", "1", "--no-serve", "--dir", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "Leaderboard" in out and "recently rated" in out and "API key" in out
    data = bundled_movielens()
    with Store.open(f"sqlite:///{tmp_path / 'demo.db'}") as store:
        assert store.counts()["events"] == data.n_interactions
        assert store.items().loc["1", "title"] == "Toy Story (1995)"
        assert "Comedy" in store.items().loc["1", "categories"]
        version = store.active_version()
        assert version is not None and version.name == "popular" and version.metrics["ndcg@20"] > 0
        assert TrainedModel.load(version.artifact_path).dataset.n_interactions == data.n_interactions
        key = out.split("only this once):")[1].split()[0]
        assert store.verify_api_key(key) == ["read", "write", "admin"]
    # A second run starts from an empty store again.
    assert main(argv) == 0
    with Store.open(f"sqlite:///{tmp_path / 'demo.db'}") as store:
        assert store.counts()["events"] == data.n_interactions and len(store.versions()) == 1
