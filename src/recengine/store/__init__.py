"""The SQL store (SQLite or PostgreSQL): events, items, users, model versions and API keys; snapshots to a
Dataset; bulk ingestion of event, item and user files."""

from recengine.store.store import DEFAULT_URL, ExperimentRecord, ModelVersion, Store, default_url

__all__ = ["DEFAULT_URL", "ExperimentRecord", "ModelVersion", "Store", "default_url"]
