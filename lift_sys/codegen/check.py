"""Static checks of generated code against its IR (no execution).

Constrained decoding guarantees the *shape* ``{"code": "..."}``; these
checks say whether the string is Python that defines the IR's function.
(Running the IR's examples in a sandbox is a later step.)
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass

from lift_sys.ir.models import IRSpec


@dataclass(frozen=True)
class CodeCheck:
    name: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


def check_code_against_ir(code: str, ir: IRSpec) -> list[CodeCheck]:
    """parses / defines_function / signature_matches, each with its evidence."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [CodeCheck("parses", False, f"line {exc.lineno}: {exc.msg}")]
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, nesting beyond the parser
        return [CodeCheck("parses", False, f"{type(exc).__name__}: {str(exc)[:120] or 'too deeply nested'}")]
    checks = [CodeCheck("parses", True)]
    want = ir.signature.name
    fns = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    match = next((f for f in fns if f.name == want), None)
    if match is None:
        found = ", ".join(f.name for f in fns) or "none"
        checks.append(CodeCheck("defines_function", False, f"no top-level def {want}() (found: {found})"))
        return checks
    checks.append(CodeCheck("defines_function", True, f"def {want}() at line {match.lineno}"))
    expected = [p.name for p in ir.signature.parameters]
    got = _params(match)
    if got == expected:
        checks.append(CodeCheck("signature_matches", True, f"({', '.join(got)})"))
    else:
        checks.append(
            CodeCheck("signature_matches", False, f"parameters ({', '.join(got)}), IR says ({', '.join(expected)})")
        )
    return checks
