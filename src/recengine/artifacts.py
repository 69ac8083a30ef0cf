"""Reading the JSON manifests and arrays of saved artifacts (datasets, models, bundles) with one set of checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recengine.errors import ArtifactError


def read_manifest(path: Path, file: str, fmt: str, version: int, what: str) -> dict[str, Any]:
    """The manifest `file` in directory `path`, checked to be of format `fmt` and `version`.

    Missing, unreadable or corrupt manifests and other formats raise ArtifactError saying what `path` is not.
    """
    manifest_file = Path(path) / file
    if not manifest_file.is_file():
        raise ArtifactError(f"{path} is not {what} (no {file})")
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{manifest_file} is unreadable or corrupt: {error}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != fmt or manifest.get("format_version") != version:
        got = manifest.get("format") if isinstance(manifest, dict) else None
        raise ArtifactError(f"{path}: unsupported format {got!r} version "
                            f"{manifest.get('format_version') if isinstance(manifest, dict) else None!r}; "
                            f"expected {fmt!r} version {version}")
    return manifest


def load_arrays(path: Path) -> dict[str, Any]:
    """Every array of `path`/arrays.npz (never unpickling anything)."""
    import numpy as np

    file = Path(path) / "arrays.npz"
    try:
        with np.load(file, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{file} is missing or corrupt: {error}") from error


#: The file of a model's named tensors (a neural network's weights), beside arrays.npz.
TENSORS_FILE = "tensors.safetensors"


def load_tensors(path: Path) -> dict[str, Any]:
    """Every named tensor of `path`/tensors.safetensors as NumPy arrays ({} when the artifact has none)."""
    file = Path(path) / TENSORS_FILE
    if not file.is_file():
        return {}
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(file)
    except (OSError, SafetensorError) as error:
        raise ArtifactError(f"{file} is corrupt: {error}") from error
