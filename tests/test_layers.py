"""Imports flow one way: cli -> serve/preflight -> pipeline -> stages/report -> search/executor -> runs
-> lm/data -> helpers (config, console, ...) -> errors.

Every ``rationalyst.*`` import in ``src/`` (module level or inside a function) is read with `ast` and
checked against the layer table below: a module may import its own package and packages of a lower
layer, never a higher one nor a different package of its own layer (``data`` does not import ``runs``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src" / "rationalyst"

#: Top-level package or module -> layer (higher may import lower).
LAYERS = {
    "cli": 8, "__main__": 8,
    "serve": 7, "preflight": 7,
    "pipeline": 6,
    "stages": 5, "report": 5,
    "executor": 4, "search": 4,
    "runs": 3,
    "lm": 2, "data": 2,
    "config": 1, "console": 1, "iterutils": 1, "cache": 1, "plots": 1, "__init__": 1,
    "errors": 0,
}
def _top(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text("utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rationalyst"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("rationalyst")]
    return found


def _owner(path: Path, src: Path) -> str:
    rel = path.relative_to(src)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def violations(src: Path = SRC) -> list[str]:
    out = []
    for path in sorted(src.rglob("*.py")):
        owner = _owner(path, src)
        if owner not in LAYERS:
            out.append(f"{path.relative_to(src)}: {owner!r} is missing from the layer table")
            continue
        for line, module in _imports(path):
            target = _top(module) if module != "rationalyst" else "__init__"
            if target == owner or target == "__init__":
                continue
            if target not in LAYERS:
                out.append(f"{path.relative_to(src)}:{line}: imports {module}, not in the layer table")
            elif LAYERS[target] >= LAYERS[owner]:
                out.append(f"{path.relative_to(src)}:{line}: {owner} (layer {LAYERS[owner]}) imports {module} "
                           f"(layer {LAYERS[target]})")
    return out


def test_imports_flow_one_way():
    assert violations() == []


def test_the_check_catches_an_upward_import(tmp_path):
    package = tmp_path / "rationalyst"
    (package / "search").mkdir(parents=True)
    (package / "data").mkdir()
    (package / "search" / "prompts.py").write_text("from rationalyst.stages.filter import x\n")
    (package / "data" / "records.py").write_text("def f():\n    from rationalyst.runs import y\n")
    found = violations(package)
    assert any("search/prompts.py:1: search (layer 4) imports rationalyst.stages.filter" in v for v in found)
    assert any("data/records.py:2: data (layer 2) imports rationalyst.runs" in v for v in found)


@pytest.mark.parametrize("module", ["rationalyst.search.pool", "rationalyst.search.solve", "rationalyst.runs"])
def test_moved_modules_import_on_their_own(module):
    __import__(module)
