"""The store's tables, the SQLite connection settings, and schema versions with their migration steps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Connection, Engine

from recengine.errors import ConfigError

metadata = sa.MetaData()

#: SQLite's INTEGER PRIMARY KEY is the rowid (fast, auto-assigned); BIGINT elsewhere.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
#: JSON on SQLite, JSONB on PostgreSQL (binary, indexable); None is SQL NULL, not the JSON null.
_Json = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class _Time(sa.TypeDecorator):
    """A UTC time that comes back time-zone aware from SQLite too (which keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


users = sa.Table(
    "users", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("external_id", sa.Text, nullable=False, unique=True),
    sa.Column("attributes", _Json, nullable=True),
    sa.Column("created_at", _Time(), nullable=False),
    sa.Column("updated_at", _Time(), nullable=False),
)

# Categories are a JSON list rather than a join table: the Dataset reads items whole and the service filters
# in memory; a join table is one migration away if filtering in SQL is ever needed.
items = sa.Table(
    "items", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("external_id", sa.Text, nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=True),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("categories", _Json, nullable=True),
    sa.Column("price", sa.Float, nullable=True),
    sa.Column("attributes", _Json, nullable=True),
    sa.Column("created_at", _Time(), nullable=False),
    sa.Column("updated_at", _Time(), nullable=False),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("user_id", _Id, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("item_id", _Id, sa.ForeignKey("items.id"), nullable=False),
    sa.Column("event", sa.Text, nullable=True),
    sa.Column("timestamp", sa.BigInteger, nullable=False),
    sa.Column("rating", sa.Float, nullable=True),
    sa.Column("weight", sa.Float, nullable=True),
    # The slate a click came from, for impression attribution by the service.
    sa.Column("request_id", sa.Text, nullable=True),
    # The one secondary index: each further one halves bulk-load speed on SQLite. Reads by time (snapshots,
    # events(since)) scan and sort; deleting an item scans, which is rare.
    sa.Index("events_user_time", "user_id", "timestamp"),
)

#: The life of a model version; at most one is active.
MODEL_STATUSES = ("training", "ready", "failed", "active")

model_versions = sa.Table(
    "model_versions", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("params", _Json, nullable=False),
    sa.Column("metrics", _Json, nullable=True),
    sa.Column("artifact_path", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("created_at", _Time(), nullable=False),
    sa.Column("updated_at", _Time(), nullable=False),
    sa.CheckConstraint(f"status IN {MODEL_STATUSES}", name="model_versions_status"),
    sa.Index("model_versions_one_active", "status", unique=True, sqlite_where=sa.text("status = 'active'"),
             postgresql_where=sa.text("status = 'active'")),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("scopes", _Json, nullable=False),
    # SHA-256 of the key, never the key: keys are 256 random bits, so a fast hash is safe and can be indexed.
    sa.Column("key_hash", sa.Text, nullable=False, unique=True),
    sa.Column("prefix", sa.Text, nullable=False),  # the key's first characters, to tell keys apart in lists
    sa.Column("created_at", _Time(), nullable=False),
    sa.Column("revoked_at", _Time(), nullable=True),
)

# Tombstones of deleted users. Their events leave the store with them, but a model trained before the deletion
# still holds what it learned from those events: the service reads these rows at start so that such a model
# never uses that state again (until a model trained after deleted_at is served). Keyed by external id, since
# the users row is gone.
deleted_users = sa.Table(
    "deleted_users", metadata,
    sa.Column("external_id", sa.Text, primary_key=True),
    sa.Column("deleted_at", _Time(), nullable=False),
)


def _impression_tables(meta: sa.MetaData, version: int) -> tuple[sa.Table, sa.Table]:
    """The impression log: one row per recommendation response, one per item shown in it. Users and items are
    external ids, not keys into users/items: the log records what was shown even for ids the store does not
    hold (yet). `version` is the schema version whose tables to build: the 2 → 3 step builds version 3's, so
    that a store upgraded step by step ends with the same tables as a new one."""
    shown = sa.Table(
        "impressions", meta,
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("created_at", _Time(), nullable=False),
        sa.Column("policy", sa.Text, nullable=False),  # the model (and version) that ranked the slate
        sa.Column("experiment", sa.Text, nullable=True),
        sa.Column("variant", sa.Text, nullable=True),
        # Version 4: the probability this request had of its variant (the design share under hashed
        # assignment, the bandit's choice probability under a bandit); NULL outside experiments.
        *([sa.Column("variant_propensity", sa.Float, nullable=True)] if version >= 4 else []),
        # Attribution looks up a user's impressions by time.
        sa.Index("impressions_user_time", "user", "created_at"),
    )
    slate = sa.Table(
        "impression_items", meta,
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),  # 1, 2, ... as in the logged-bandit format
        sa.Column("item", sa.Text, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        # The policy's probability of this item at this position; NULL for a deterministic policy.
        sa.Column("propensity", sa.Float, nullable=True),
    )
    return shown, slate


def _experiment_tables(meta: sa.MetaData) -> tuple[sa.Table, sa.Table]:
    """Experiments and the bandit rewards they have counted (schema version 4). An experiment's variants,
    shares and the owner of every hash bucket are one JSON document (recengine.serving.experiments reads and
    writes it): they change together, in one update. A bandit's posterior is not a table of its own but
    counts of rows: its pulls are the experiment's impressions per variant, its successes the rows of
    bandit_rewards, so it survives a restart exactly as far as the log does."""
    experiments = sa.Table(
        "experiments", meta,
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("surface", sa.Text, nullable=False),
        sa.Column("definition", _Json, nullable=False),
        sa.Column("starts_at", _Time(), nullable=False),
        sa.Column("stops_at", _Time(), nullable=True),  # NULL: runs until stopped
        sa.Column("created_at", _Time(), nullable=False),
        sa.Column("updated_at", _Time(), nullable=False),
    )
    rewards = sa.Table(
        "bandit_rewards", meta,
        # One reward per impression at most: a second click on a slate is not a second success.
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("experiment", sa.Text, nullable=False),
        sa.Column("variant", sa.Text, nullable=False),
        sa.Column("created_at", _Time(), nullable=False),
        sa.Index("bandit_rewards_experiment", "experiment", "variant"),
    )
    return experiments, rewards


impressions, impression_items = _impression_tables(metadata, version=4)
experiments, bandit_rewards = _experiment_tables(metadata)

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("version", sa.Integer, nullable=False),
)


def _add_deleted_users(conn: Connection) -> None:
    """1 → 2: the deleted_users table. Spelled out rather than deleted_users.create, so that the step keeps
    doing what version 2 was if the table's definition changes later (that is a step of its own)."""
    sa.Table("deleted_users", sa.MetaData(),
             sa.Column("external_id", sa.Text, primary_key=True),
             sa.Column("deleted_at", _Time(), nullable=False)).create(conn)


def _add_impressions(conn: Connection) -> None:
    """2 → 3: the impression log (impressions, impression_items), on a metadata of its own like step 1 → 2.
    checkfirst: a store whose version was set back by hand may have the tables already."""
    for table in _impression_tables(sa.MetaData(), version=3):
        table.create(conn, checkfirst=True)


def _add_experiments(conn: Connection) -> None:
    """3 → 4: experiments, bandit_rewards, and impressions.variant_propensity."""
    for table in _experiment_tables(sa.MetaData()):
        table.create(conn, checkfirst=True)
    if "variant_propensity" not in {c["name"] for c in sa.inspect(conn).get_columns("impressions")}:
        kind = sa.Float().compile(dialect=conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE impressions ADD COLUMN variant_propensity {kind}"))


#: Upgrade steps for stores made by older versions: MIGRATIONS[k] takes a store from version k + 1 to k + 2.
#: A change to the tables above adds a step here; a new store is created at the latest version directly.
MIGRATIONS: list[Callable[[Connection], None]] = [_add_deleted_users, _add_impressions, _add_experiments]


def latest_version() -> int:
    return 1 + len(MIGRATIONS)


def migrate(engine: Engine, url: str) -> None:
    """Create the tables of a new store, or bring an older store up to the latest version, in one transaction."""
    with engine.begin() as conn:
        if not sa.inspect(conn).has_table(schema_version.name):
            metadata.create_all(conn)
            conn.execute(schema_version.insert().values(version=latest_version()))
            return
        version = conn.execute(sa.select(schema_version.c.version)).scalar_one()
        if version > latest_version():
            raise ConfigError(f"the store at {url} has schema version {version}, newer than this recengine "
                              f"knows ({latest_version()}); upgrade recengine")
        for step in MIGRATIONS[version - 1:]:
            step(conn)
        conn.execute(schema_version.update().values(version=latest_version()))


#: The connection execution option that marks a write transaction (Store._writing): on SQLite it begins
#: IMMEDIATE, taking the write lock up front.
WRITE_TRANSACTION = "recengine_write"


def configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout, and transactions that SQLAlchemy (not the sqlite3 module) begins.

    synchronous=FULL: every commit fsyncs the write-ahead log, so an acknowledged event survives a power cut as
    well as a killed process (NORMAL survives only the latter). A bulk load is one transaction, so it pays
    one fsync; single-event commits pay one each, which the service batches.
    """

    @sa.event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record) -> None:
        # The sqlite3 module would otherwise begin transactions itself, only before DML, so reads (a snapshot)
        # would not share one consistent view; SQLAlchemy emits BEGIN instead (its documented recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # A 64 MiB page cache (the default is 2) keeps index pages of a bulk load in memory.
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "busy_timeout=30000",
                       "cache_size=-65536"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_TRANSACTION) else "BEGIN")
