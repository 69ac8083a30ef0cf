from recengine.engines.spark import spark_session


def test_the_session_runs_a_job_and_is_shared(spark):
    assert spark.range(10).selectExpr("sum(id) AS s").first()["s"] == 45
    assert spark_session() is spark
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
