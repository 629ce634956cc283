"""The one check type, and the static checks of code against its IR (no execution).

Constrained decoding guarantees the *shape* of the output; these checks
say whether the text is Python that defines the IR's function. Running
the IR's examples and assertions in the sandbox (:mod:`verify`) adds more
checks of the same type.
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass
from typing import Literal

from lift_sys.ir.models import IRSpec


Scope = Literal["code", "ir", "suspect"]
Provenance = Literal["static", "given", "invented", "agreed", "suspect", "probe"]


@dataclass(frozen=True)
class Check:
    """One verification check with its evidence.

    ``scope``: ``code`` counts toward *verified*; ``ir`` is a finding about
    the IR itself (it contradicts its own examples); ``suspect`` is a
    model-invented claim that independent candidates agreeing with each
    other contradict -- reported, never blocking.
    ``provenance``: where the claim comes from -- ``static`` (parses,
    signature, imports, runs), ``given`` (stated in the request),
    ``invented`` (by the model, not yet confirmed), ``agreed`` (invented,
    and the chosen code satisfies it), ``suspect`` (see scope), ``probe``
    (as many other candidates, also passing every check, answer a probe
    input differently: the checks do not pin the function down).
    """

    name: str
    passed: bool
    detail: str = ""
    scope: Scope = "code"
    calls_function: bool = False  # a postcondition that calls the function: evaluated beside the candidate
    provenance: Provenance = "static"

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
    a = fn.args
    return [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]


def check_code_against_ir(code: str, ir: IRSpec) -> list[Check]:
    """parses / defines_function / signature_matches, each with its evidence."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return [Check("parses", False, f"line {exc.lineno}: {exc.msg}")]
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, nesting beyond the parser
        return [Check("parses", False, f"{type(exc).__name__}: {str(exc)[:120] or 'too deeply nested'}")]
    checks = [Check("parses", True)]
    want = ir.signature.name
    fns = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    match = next((f for f in fns if f.name == want), None)
    if match is None:
        found = ", ".join(f.name for f in fns) or "none"
        checks.append(Check("defines_function", False, f"no top-level def {want}() (found: {found})"))
        return checks
    checks.append(Check("defines_function", True, f"def {want}() at line {match.lineno}"))
    expected = [p.name for p in ir.signature.parameters]
    got = _params(match)
    if got == expected:
        checks.append(Check("signature_matches", True, f"({', '.join(got)})"))
    else:
        checks.append(
            Check("signature_matches", False, f"parameters ({', '.join(got)}), IR says ({', '.join(expected)})")
        )
    return checks
