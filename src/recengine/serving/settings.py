"""The service's one settings object, read from the environment when asked (never at import time)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from recengine.errors import ConfigError
from recengine.store import DEFAULT_URL

_ENV_PREFIX = "RECENGINE_"
#: Settings read from the environment, as RECENGINE_<NAME upper-cased>.
_FROM_ENV = ("store", "model_dir", "max_body_bytes", "max_events", "max_k")


@dataclass(frozen=True)
class Settings:
    """store: the store URL. model_dir: the model directory to serve; None serves the store's active model
    version. max_body_bytes: larger request bodies get 413. max_events: events per POST. max_k: the largest k."""

    store: str = DEFAULT_URL
    model_dir: str | None = None
    max_body_bytes: int = 10 * 2**20
    max_events: int = 10_000
    max_k: int = 1_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then RECENGINE_STORE, RECENGINE_MODEL_DIR, RECENGINE_MAX_BODY_BYTES, RECENGINE_MAX_EVENTS,
        RECENGINE_MAX_K, then the overrides that are not None (command-line options)."""
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


def _parse(name: str, raw: str, default: object) -> object:
    if not isinstance(default, int):
        return raw
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{_ENV_PREFIX}{name.upper()}={raw!r}: give a whole number") from None
