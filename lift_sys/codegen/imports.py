"""The imports a candidate forgot: ``List`` without ``from typing import List``, ``math.sqrt`` without ``import math``.

A small model copies a request's ``def`` line -- annotations and all -- but
not the request's import lines. HumanEval 0-20 with the 0.5B model: of the
four correct ``filter_by_substring`` candidates three wrote ``List[str]``
with no import, failed at definition time (``NameError``) and could not be
verified, so selection had nothing to choose from. (HumanEval's own harness
prepends the prompt's imports, which is why the same code passes there.)

The repair is mechanical and reads the code, never runs it: a name the code
*loads* but never binds (no import, def, class, assignment, parameter,
comprehension variable, builtin) that is a public name of ``typing``, or is
one of the allowed standard-library modules used as ``name.attribute``, gets
its import line prepended. Nothing is added for any other name, so a typo
still fails verification as it should.
"""

from __future__ import annotations

import ast
import builtins
import typing
from typing import Iterable

_TYPING = frozenset(n for n in getattr(typing, "__all__", ()) if n[:1].isupper())
_MODULES = frozenset({
    "math", "re", "collections", "itertools", "functools", "string", "heapq", "bisect", "statistics",
    "operator", "fractions", "decimal", "datetime", "json", "random", "hashlib", "copy", "cmath",
})


def _bound(tree: ast.AST) -> set[str]:
    names = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchAs) and node.name:
            names.add(node.name)
    return names


def missing_imports(code: str, allowed_modules: Iterable[str] | None = None) -> list[str]:
    """The import lines ``code`` needs and lacks (see the module docstring); [] when it does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    bound = _bound(tree)
    loaded = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    as_module = {n.value.id for n in ast.walk(tree) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)}
    free = loaded - bound
    modules = _MODULES if allowed_modules is None else _MODULES & set(allowed_modules)
    lines = sorted(f"import {m}" for m in free & as_module & modules)
    typing_names = sorted(free & _TYPING - modules)
    if typing_names:
        lines.insert(0, f"from typing import {', '.join(typing_names)}")
    return lines


def add_missing_imports(code: str) -> str:
    """``code`` with the lines :func:`missing_imports` finds prepended (unchanged when none)."""
    lines = missing_imports(code)
    return "\n".join(lines) + "\n" + code if lines else code
