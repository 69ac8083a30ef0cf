"""Model registry: every Recommender subclass with a ``name`` in a module of recengine.models (or of a subpackage
such as ``neural``) is a model; modules whose names start with "_" are helpers and are not imported here.

Adding a model is adding one module; nothing here lists them.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import recengine.models as models_package
from recengine.errors import ConfigError
from recengine.models.base import Recommender

_INFRASTRUCTURE = {"base", "registry", "topk"}


def _all_subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


def available_models() -> dict[str, type[Recommender]]:
    """{name: class} of every registered model, sorted by name."""
    prefix = f"{models_package.__name__}."
    for module in pkgutil.walk_packages(models_package.__path__, prefix):
        parts = module.name.removeprefix(prefix).split(".")
        if parts[0] not in _INFRASTRUCTURE and not any(part.startswith("_") for part in parts):
            importlib.import_module(module.name)
    found = {c.name: c for c in _all_subclasses(Recommender) if c.name}
    return dict(sorted(found.items()))


def get_model_class(name: str) -> type[Recommender]:
    models = available_models()
    if name not in models:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(models)}")
    return models[name]


def create_model(name: str, **params: Any) -> Recommender:
    """A model by registry name with the given hyper-parameters (the rest keep their tuned defaults)."""
    model_cls = get_model_class(name)
    return model_cls().set_params(**params)
