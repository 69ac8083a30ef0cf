"""One local[2] SparkSession for the whole Spark test run (starting one costs seconds)."""

import pytest

from recengine.engines.spark import spark_session


@pytest.fixture(scope="session")
def spark():
    session = spark_session("local[2]", app_name="recengine-tests")
    yield session
    session.stop()
