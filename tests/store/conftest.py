"""The store fixtures: an empty store over SQLite and, when RECENGINE_TEST_POSTGRES_URL is set, PostgreSQL."""

import os
import uuid

import pytest
import sqlalchemy as sa

from recengine.store import Store

POSTGRES_URL = os.environ.get("RECENGINE_TEST_POSTGRES_URL")


@pytest.fixture(scope="module")
def postgres_database():
    """A fresh database for this module on the server RECENGINE_TEST_POSTGRES_URL names, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL store tests are off: set RECENGINE_TEST_POSTGRES_URL=postgresql+psycopg://USER:"
                    "PASSWORD@HOST/DB (a role that may create databases; .ci/run starts a server and sets it)")
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"recengine_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sa.make_url(POSTGRES_URL).set(database=name)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    """An empty store: a file in tmp_path, or a fresh schema in the module's PostgreSQL database."""
    if request.param == "sqlite":
        opened = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        database = request.getfixturevalue("postgres_database")
        name = f"t_{uuid.uuid4().hex[:12]}"
        engine = sa.create_engine(database)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {name}")
        engine.dispose()
        opened = Store.open(database.update_query_dict({"options": f"-csearch_path={name}"})
                            .render_as_string(hide_password=False))
    yield opened
    opened.close()
