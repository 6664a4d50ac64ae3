"""The layering, read from the source (issue 21): every ``import`` statement counts, at module
level or inside a function, so an import moved into a function to dodge a cycle is still seen.

- ``ml/`` is plain Python + PyTorch: it imports no Django, nor any of the Django apps.
- ``ml/`` has no import cycle (library modules keep no CLI: ``ml/cli_*.py`` hold them).
- The apps depend one way: ``emotion`` builds on ``tutoring``, ``records`` (reports, export,
  erasure, retention) on both. ``tutoring`` imports neither ``emotion`` nor ``records`` (it
  tells them of changes by signals, ``tutoring.signals``); ``emotion`` imports ``tutoring`` at
  module level only (no function-local import hiding a cycle) and not ``records``; ``records``
  imports both, and neither imports it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DJANGO_BOUND = {"django", "rest_framework", "channels", "config", "emotion", "tutoring", "records"}


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    """The package a relative import in ``path`` starts from ("" outside the checkout)."""
    if not path.is_relative_to(ROOT):
        return ""
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports(path: Path) -> Iterator[tuple[str, list[str], int, bool]]:
    """(module, imported names, line, inside a function?) of every import in ``path``;
    relative imports resolved against the file's package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = package_of(path)

    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[str, list[str], int, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, [], child.lineno, in_function
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    anchor = parts[: len(parts) - child.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                yield base, [a.name for a in child.names], child.lineno, in_function
            inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield from walk(child, inner)

    yield from walk(tree, False)


def imports_of(package: str, targets: set[str], *, function_level_only: bool = False):
    """``file:line module`` for each import in ``package`` of a top-level name in ``targets``."""
    found = []
    for path in python_files(package):
        for module, _, line, in_function in imports(path):
            if module.split(".")[0] in targets and (in_function or not function_level_only):
                where = "function" if in_function else "module"
                found.append(f"{path.relative_to(ROOT)}:{line} {module} ({where} level)")
    return found


def ml_import_graph() -> dict[str, set[str]]:
    """ml-internal imports: module → the ml modules it imports (function-level ones too)."""
    modules = {module_name(p): p for p in python_files("ml")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names, _, _ in imports(path):
            if module.split(".")[0] != "ml":
                continue
            # ``from ml import train`` imports the submodule ml.train
            subs = {f"{module}.{n}" for n in names} & modules.keys()
            graph[name] |= subs or ({module} & modules.keys())
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_ml_imports_no_django():
    assert imports_of("ml", DJANGO_BOUND) == []


def test_ml_has_no_import_cycle():
    graph = ml_import_graph()
    assert len(graph) > 20 and graph["ml.cli_train"] >= {"ml.train", "ml.fit"}  # it sees them
    assert cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d"}, "e": {"a"}}
    assert cycles(graph) == [["a", "b", "c"], ["d"]]


def test_function_level_imports_are_seen(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import os\n\ndef f():\n    if True:\n        from django.db import models\n")
    assert [(m, inside) for m, _, _, inside in imports(f)] == [
        ("os", False),
        ("django.db", True),
    ]


def test_tutoring_does_not_import_emotion():
    assert imports_of("tutoring", {"emotion"}) == []


def test_tutoring_does_not_import_records():
    assert imports_of("tutoring", {"records"}) == []


def test_emotion_imports_tutoring_at_module_level_only():
    """A function-local import of tutoring inside emotion would hide a cycle."""
    assert imports_of("emotion", {"tutoring"}, function_level_only=True) == []


def test_emotion_does_not_import_records():
    """``records`` is the top: it imports both apps, neither imports it."""
    assert imports_of("emotion", {"records"}) == []


def test_records_imports_both_apps():
    """It is where code needing sessions and readings together lives (the check sees it)."""
    imported = {m.split(".")[0] for p in python_files("records") for m, _, _, _ in imports(p)}
    assert {"tutoring", "emotion"} <= imported
