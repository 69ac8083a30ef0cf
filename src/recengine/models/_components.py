"""Component models of composite models (the rating blend, the hybrids): their specs and their nested state.

A composite names its components like ``["ease", {"name": "itemknn", "params": {"neighbors": 50}}]`` — plain
strings and dicts, so that its own parameters save as JSON in the manifest. Fitted components are kept in the
composite's ``components_`` attribute. Saving writes every component's arrays and scalars under the prefix
``base<m>__`` next to the composite's own; ``Recommender.load`` restores them as attributes of the composite and
:func:`fitted_components` turns them back into models on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recengine.errors import ConfigError
from recengine.models.base import Recommender
from recengine.models.registry import get_model_class

#: A component as given by the user: a registry name or {"name": NAME, "params": {...}}.
ComponentSpec = str | dict[str, Any]
#: Where a composite keeps its fitted components.
COMPONENTS = "components_"
_STATE = "state"


def _prefix(m: int) -> str:
    return f"base{m}__"


def parse_specs(
    owner: str,
    entries: Sequence[ComponentSpec] | None,
    default: Sequence[ComponentSpec],
    *,
    feedback: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The components as checked (name, params) pairs: registered models (of `feedback`, when given) whose
    parameters are valid, so that a bad entry fails before anything is fitted. None means `default`."""
    entries = list(default) if entries is None else entries
    if not isinstance(entries, list | tuple) or not entries:
        raise ConfigError(f"{owner}: models must be a non-empty list of model names or "
                          "{'name': NAME, 'params': {...}}, got " + repr(entries))
    specs = []
    for entry in entries:
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str) and \
                isinstance(entry.get("params", {}), dict) and set(entry) <= {"name", "params"}:
            name, params = entry["name"], dict(entry.get("params", {}))
        else:
            raise ConfigError(f"{owner}: bad model entry {entry!r}; use a registry name or "
                              "{'name': NAME, 'params': {...}}")
        model_cls = get_model_class(name)
        if feedback is not None and model_cls.feedback != feedback:
            raise ConfigError(f"{owner}: {name!r} learns from {model_cls.feedback} feedback, but {owner} combines "
                              f"{feedback} models; choose components with feedback={feedback!r}")
        try:
            model_cls().set_params(**params)._validate_params()
        except ConfigError as error:
            raise ConfigError(f"{owner}: component {name!r}: {error}") from error
        specs.append((name, params))
    return specs


def new_components(specs: Sequence[tuple[str, dict[str, Any]]]) -> list[Recommender]:
    """Fresh, unfitted components."""
    return [get_model_class(name)(**params) for name, params in specs]


def any_component(specs: Sequence[tuple[str, dict[str, Any]]], attribute: str) -> bool:
    """Whether any component's class sets a flag (e.g. requires_item_features, personalized)."""
    return any(getattr(get_model_class(name), attribute, False) for name, _ in specs)


def fitted_components(owner: Recommender, specs: Sequence[tuple[str, dict[str, Any]]]) -> list[Recommender]:
    """The owner's fitted components; after load, rebuilt once from the state saved under their prefixes."""
    if COMPONENTS not in owner.__dict__:
        components = []
        for m, component in enumerate(new_components(specs)):
            prefix = _prefix(m)
            component.__dict__.update({key[len(prefix):]: value for key, value in owner.__dict__.items()
                                       if key.startswith(prefix) and key != prefix + _STATE})
            component.__dict__.update(owner.__dict__[prefix + _STATE])
            components.append(component)
        owner.__dict__[COMPONENTS] = components
    return owner.__dict__[COMPONENTS]


def composite_state(
    owner: Recommender, own: Sequence[str], components: Sequence[Recommender],
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The owner's learned attributes named in `own` (arrays to the npz, the rest to the manifest) plus every
    component's state under its prefix, as ``Recommender._state`` returns them."""
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    for key in own:
        value = getattr(owner, key)
        if isinstance(value, np.ndarray):
            arrays[key] = value
        else:
            meta[key] = value.item() if isinstance(value, np.generic) else value
    for m, component in enumerate(components):
        component_arrays, component_meta = component._state()
        arrays.update({_prefix(m) + key: value for key, value in component_arrays.items()})
        meta[_prefix(m) + _STATE] = component_meta
    return arrays, meta
