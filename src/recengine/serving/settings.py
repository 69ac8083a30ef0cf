"""The service's one settings object, read from the environment when asked (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from recengine.errors import ConfigError
from recengine.serving.ann import EXACT_BELOW
from recengine.serving.score_cache import DEFAULT_MAX_BYTES
from recengine.store import DEFAULT_URL

_ENV_PREFIX = "RECENGINE_"
#: Settings read from the environment, as RECENGINE_<NAME upper-cased>.
_FROM_ENV = ("store", "model_dir", "max_body_bytes", "max_events", "max_k", "ann_min_items", "ann_search",
             "score_cache_mb")
#: The searches an item index of a large catalogue can run (recengine.serving.retrieval).
ANN_SEARCHES = ("hnsw", "exact")


@dataclass(frozen=True)
class Settings:
    """store: the store URL. model_dir: the model directory to serve; None serves the store's active model
    version. max_body_bytes: larger request bodies get 413. max_events: events per POST. max_k: the largest k.
    ann_min_items: a factor model (user vector · item vectors) over at least this many items answers through an
    item index (recengine.serving.retrieval); smaller catalogues and other models score every item.
    ann_search: how that index searches: "hnsw" (approximate, faiss) or "exact" (every item, by one matmul: the
    index path with the model's own results, for checking the approximate one or serving without faiss).
    score_cache_mb: the bound on each served model's cache of users' scores (recengine.serving.score_cache);
    0 scores every request afresh."""

    store: str = DEFAULT_URL
    model_dir: str | None = None
    max_body_bytes: int = 10 * 2**20
    max_events: int = 10_000
    max_k: int = 1_000
    ann_min_items: int = EXACT_BELOW
    ann_search: str = "hnsw"
    score_cache_mb: int = DEFAULT_MAX_BYTES // 2**20

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then RECENGINE_STORE, RECENGINE_MODEL_DIR, RECENGINE_MAX_BODY_BYTES, RECENGINE_MAX_EVENTS,
        RECENGINE_MAX_K, RECENGINE_ANN_MIN_ITEMS, RECENGINE_ANN_SEARCH, RECENGINE_SCORE_CACHE_MB, then the
        overrides that are not None (command-line options)."""
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        types = {f.name: f.default for f in fields(cls)}
        for name in _FROM_ENV:
            raw = environ.get(_ENV_PREFIX + name.upper())
            if raw:
                values[name] = _parse(name, raw, types[name])
        values.update({name: value for name, value in overrides.items() if value is not None})
        return replace(cls(), **values)

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_events", "max_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name in ("ann_min_items", "score_cache_mb"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be a whole number >= 0, got {getattr(self, name)}")
        if self.ann_search not in ANN_SEARCHES:
            raise ConfigError(f"ann_search must be one of {', '.join(ANN_SEARCHES)}, got {self.ann_search!r}")


def _parse(name: str, raw: str, default: object) -> object:
    if not isinstance(default, int):
        return raw
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{_ENV_PREFIX}{name.upper()}={raw!r}: give a whole number") from None
