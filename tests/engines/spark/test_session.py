import os
import subprocess
import sys
from pathlib import Path

import pyspark

from recengine.engines.spark import spark_session


def test_the_session_runs_a_job_and_is_shared(spark):
    assert spark.range(10).selectExpr("sum(id) AS s").first()["s"] == 45
    assert spark_session() is spark
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"


def test_spark_submit_keeps_its_own_master(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "from recengine.engines.spark import spark_session\n"
        "session = spark_session()\n"
        "print('MASTER=' + session.sparkContext.master)\n"
        "session.stop()\n"
    )
    submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("RECENGINE_SPARK_MASTER", None)
    done = subprocess.run([str(submit), "--master", "local[1]", str(script)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "MASTER=local[1]" in done.stdout
