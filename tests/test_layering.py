"""Dependencies run one way: each layer imports only the layers below it.

Read from the source (every ``import``, also inside functions), not from what
happens to be imported at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Source folder -> its import name.
PACKAGES = {
    ROOT / "autopeft_ray": "autopeft_ray",
    ROOT / "searchers": "autopeft_ray.searchers",
    ROOT / "trainables": "autopeft_ray.trainables",
}
#: Modules every layer may import: errors, value checks, where models come from.
FOUNDATION_MODULES = {"exceptions", "validation", "models", "network"}
FOUNDATION = {"foundation"}
LIBRARY = FOUNDATION | {"space", "objectives", "builder", "tasks", "config"}
#: Layer -> the layers it may import (itself included).
ALLOWED = {
    "foundation": FOUNDATION,
    "space": FOUNDATION | {"space"},
    "objectives": FOUNDATION | {"space", "objectives"},
    "builder": FOUNDATION | {"space", "objectives", "builder"},
    "tasks": FOUNDATION | {"space", "objectives", "tasks"},
    "config": LIBRARY,
    "searchers": LIBRARY | {"searchers"},
    "trainables": LIBRARY | {"trainables"},
    "run": LIBRARY | {"run"},
    "experiment": LIBRARY | {"searchers", "trainables", "run", "experiment"},
    "testing": FOUNDATION | {"space", "objectives", "testing"},
    "cli": LIBRARY | {"run", "experiment"},
    "package": FOUNDATION | {"space"},  # autopeft_ray/__init__.py
}


def _module_name(path: Path) -> str:
    for folder, name in PACKAGES.items():
        if path.is_relative_to(folder):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            return ".".join([name, *parts])
    raise AssertionError(path)


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "autopeft_ray":
        raise ValueError(module)
    if len(parts) == 1:
        return "package"
    return "foundation" if parts[1] in FOUNDATION_MODULES else parts[1]


def _imports(path: Path) -> set[str]:
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # ``from autopeft_ray import searchers`` names a module too.
            found |= {f"{target}.{a.name}" for a in node.names if target == "autopeft_ray"}
    return {name for name in found if name.split(".")[0] == "autopeft_ray"}


SOURCES = sorted(p for folder in PACKAGES for p in folder.rglob("*.py"))


def test_every_source_file_is_in_a_known_layer() -> None:
    assert SOURCES
    for path in SOURCES:
        assert _layer(_module_name(path)) in ALLOWED, path


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path: Path) -> None:
    layer = _layer(_module_name(path))
    wrong = sorted(
        name
        for name in _imports(path)
        if name != "autopeft_ray" and _layer(name) not in ALLOWED[layer]
    )
    assert not wrong, f"{path.relative_to(ROOT)} ({layer}) imports {wrong}"
