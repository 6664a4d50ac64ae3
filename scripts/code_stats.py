#!/usr/bin/env python3
"""File and function lengths of the project's packages, for before/after figures.

    python scripts/code_stats.py [--top N] [--over L] [PACKAGE ...]

Lines are physical lines. A function's length runs from its ``def`` (decorators excluded) to
its last line; nested functions and methods count on their own too. Standard library only
(``ast``), so it runs on any checkout: ``git stash; python scripts/code_stats.py`` gives the
figures of the base commit.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("config", "emotion", "tutoring", "records", "ml")


def python_files(package: Path) -> list[Path]:
    """The package's ``.py`` files, migrations left out (generated)."""
    return sorted(p for p in package.rglob("*.py") if "migrations" not in p.parts)


def functions(path: Path) -> list[tuple[str, int]]:
    """(qualified name, lines) of every function and method in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                found.append((name, child.end_lineno - child.lineno + 1))
                visit(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return found


def package_stats(root: Path, package: str) -> dict:
    files, funcs = [], []
    for path in python_files(root / package):
        rel = path.relative_to(root).as_posix()
        files.append((rel, len(path.read_text(encoding="utf-8").splitlines())))
        funcs += [(f"{rel}:{name}", n) for name, n in functions(path)]
    return {"files": files, "functions": funcs}


def report(root: Path, packages: list[str], top: int, over: int, out=sys.stdout) -> None:
    every_file, every_func = [], []
    print(
        f"{'package':<10}{'files':>6}{'lines':>8}{'longest file':>32}"
        f"{'funcs':>7}{f'>{over}':>6}  longest function",
        file=out,
    )
    for package in packages:
        s = package_stats(root, package)
        every_file += s["files"]
        every_func += s["functions"]
        lines = sum(n for _, n in s["files"])
        big_file = max(s["files"], key=lambda x: x[1], default=("-", 0))
        big_func = max(s["functions"], key=lambda x: x[1], default=("-", 0))
        n_over = sum(1 for _, n in s["functions"] if n > over)
        print(
            f"{package:<10}{len(s['files']):>6}{lines:>8}"
            f"{f'{big_file[0]} ({big_file[1]})':>32}{len(s['functions']):>7}{n_over:>6}"
            f"  {big_func[0]} ({big_func[1]})",
            file=out,
        )
    print(f"\n{top} longest files:", file=out)
    for name, n in sorted(every_file, key=lambda x: -x[1])[:top]:
        print(f"{n:>6}  {name}", file=out)
    print(f"\n{top} longest functions:", file=out)
    for name, n in sorted(every_func, key=lambda x: -x[1])[:top]:
        print(f"{n:>6}  {name}", file=out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("packages", nargs="*", default=list(PACKAGES))
    p.add_argument("--top", type=int, default=10, help="how many longest files/functions")
    p.add_argument("--over", type=int, default=50, help="count functions longer than this")
    p.add_argument("--root", default=str(ROOT), help="the checkout to measure")
    args = p.parse_args(argv)
    report(Path(args.root), args.packages, args.top, args.over)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
