"""A standalone cluster (a master and two workers on 127.0.0.1, from pyspark's own launcher) runs a real
`recengine fit --engine spark` and stops without leaving a process behind."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recengine.engines.spark.cluster import StandaloneCluster
from recengine.trained import TrainedModel

RATINGS = Path(__file__).resolve().parents[4] / "shared" / "datasets" / "ml-latest-small" / "ratings.csv"


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def events(tmp_path):
    if not RATINGS.is_file():
        pytest.skip(f"needs MovieLens latest-small at {RATINGS}")
    path = tmp_path / "ratings.csv"
    path.write_text("".join(RATINGS.open().readlines()[:3001]))
    return path


def test_standalone_cluster_runs_a_fit_and_stops_cleanly(events, tmp_path):
    cluster = StandaloneCluster(workers=2, cores=1, memory="1g", log_dir=tmp_path / "cluster")
    with cluster:
        assert cluster.master_url.startswith("spark://127.0.0.1:") and cluster.alive_workers() == 2
        groups = cluster.pids
        done = subprocess.run(
            [sys.executable, "-m", "recengine.cli", "fit", "--engine", "spark", "--master", cluster.master_url,
             "--events", str(events), "--columns", "user=userId,item=movieId", "--model", "itemknn",
             "--param", "neighbors=20", "--out", str(tmp_path / "model"), "--spark-log", str(tmp_path / "spark.log")],
            capture_output=True, text=True, timeout=900)
        terminal = done.stdout + done.stderr
        assert done.returncode == 0, terminal
        # Both workers ran an executor of the job (each one's work folder holds the application's).
        assert all(any((tmp_path / "cluster" / f"work-{n}").glob("app-*")) for n in range(2))
    assert not any(group_alive(pgid) for pgid in groups)
    # Spark's own output went to the log file; the terminal has recengine's one line per stage.
    assert "WARN" not in terminal and "log4j" not in terminal and "INFO" not in terminal
    assert "read 3,000 events" in terminal and "trained itemknn on Spark" in terminal
    assert (tmp_path / "spark.log").stat().st_size > 0
    trained = TrainedModel.load(tmp_path / "model")
    assert trained.model.name == "itemknn" and len(trained.recommend(["1"], k=5)) == 5
