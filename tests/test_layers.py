"""Imports flow one way: core → data → models → evaluation, and core → data → store; the wiring modules (cli,
demo) sit on top."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "recengine"

#: layer → the recengine layers it may import (besides itself).
CORE = {"errors", "artifacts"}
ALLOWED = {
    "errors": set(),
    "artifacts": {"errors"},
    "data": CORE,
    "models": CORE | {"data"},
    "evaluation": CORE | {"data", "models"},
    "testing": CORE | {"data", "models"},
    "profiles": CORE | {"data", "models"},
    "trained": CORE | {"data", "models", "profiles"},
    "store": CORE | {"data"},
    "serving": CORE | {"data", "models", "store", "evaluation", "trained", "profiles", "online"},
    "online": CORE | {"data", "models", "evaluation"},
    "engines": CORE | {"data", "models", "evaluation", "trained"},
}


def imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        for name in names:
            parts = name.split(".")
            if parts[0] == "recengine" and len(parts) > 1:
                layers.add(parts[1])
    return layers


def test_layers_import_only_what_is_below_them():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        layer = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if layer not in ALLOWED:
            continue
        for imported in imported_layers(path) - ALLOWED[layer] - {layer}:
            problems.append(f"{path.relative_to(PACKAGE)} imports recengine.{imported}")
    assert not problems, "\n".join(problems)
