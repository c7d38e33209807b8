"""Formulas in docstrings render as written: a docstring with a backslash is a raw string
(ruff D301 enforces that) and holds no doubled backslash, a leftover of escaping by hand that a
raw string shows twice (two backslashes before "alpha" instead of one)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def docstrings():
    for path in sorted((ROOT / "metrics_pipeline").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                doc = ast.get_docstring(node, clean=False)
                if doc:
                    yield f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 1)}", doc


def test_no_docstring_has_control_characters_or_doubled_backslashes():
    bad = [
        where
        for where, doc in docstrings()
        if "\\\\" in doc or any(ord(c) < 32 and c not in "\n\t" for c in doc)
    ]
    assert not bad, bad
