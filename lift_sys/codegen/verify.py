"""Verification: is this code the IR's function, and does it do what the IR says?

1. static: parses; defines exactly the IR's function (name, parameters in
   order); imports only from the allow-list (stdlib by default, minus
   modules that reach outside the process); no dynamic code execution;
2. dynamic, in the sandbox (:mod:`lift_sys.codegen.sandbox`): every IR
   example (inputs -> output, or -> raises) and every post-condition /
   invariant on each successful example's ``result``.

Preconditions describe valid *inputs*; they are checked against the IR's
own examples and reported with ``scope="ir"`` -- an inconsistent IR is
reported, but it does not fail the code.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import asdict, dataclass, field
from typing import Iterable, Literal

from lift_sys.codegen.check import check_code_against_ir
from lift_sys.codegen.harness import HARNESS
from lift_sys.codegen.sandbox import Limits, run_python
from lift_sys.ir.models import IRSpec

# Standard-library modules that reach outside the process or load native code.
DENIED_MODULES = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "socket", "_socket", "ssl", "ctypes", "multiprocessing",
    "threading", "_thread", "signal", "shutil", "pty", "fcntl", "resource", "importlib", "builtins",
    "asyncio", "selectors", "select", "mmap", "http", "urllib", "ftplib", "smtplib", "telnetlib",
    "socketserver", "webbrowser", "pickle", "marshal", "code", "codeop", "runpy", "gc", "inspect",
})
DYNAMIC_CALLS = frozenset({"exec", "eval", "compile", "__import__", "open", "breakpoint", "input"})


def default_allowed_modules() -> frozenset[str]:
    return frozenset(sys.stdlib_module_names) - DENIED_MODULES


@dataclass(frozen=True)
class VerifyCheck:
    name: str
    passed: bool
    detail: str = ""
    scope: Literal["code", "ir"] = "code"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VerificationReport:
    checks: list[VerifyCheck] = field(default_factory=list)
    sandbox_seconds: float = 0.0

    @property
    def verified(self) -> bool:
        code_checks = [c for c in self.checks if c.scope == "code"]
        return bool(code_checks) and all(c.passed for c in code_checks)

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.checks if c.scope == "code")

    def failures(self) -> list[VerifyCheck]:
        return [c for c in self.checks if c.scope == "code" and not c.passed]

    def feedback(self) -> str:
        """Failed checks, one per line: what a repair attempt is told."""
        return "\n".join(f"- {c.name}: {c.detail}" for c in self.failures())

    def to_dict(self) -> dict:
        return {"verified": self.verified, "passed": self.passed, "total": sum(c.scope == "code" for c in self.checks),
                "checks": [c.to_dict() for c in self.checks], "sandbox_seconds": round(self.sandbox_seconds, 3)}


def check_imports(tree: ast.AST, allowed: Iterable[str]) -> list[str]:
    """Problems with imports and dynamic execution, as readable strings."""
    allowed = set(allowed)
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            roots = [(node.module or "").split(".")[0]] if node.level == 0 else ["(relative import)"]
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in DYNAMIC_CALLS:
            problems.append(f"line {node.lineno}: call to {node.func.id}() is not allowed")
            continue
        else:
            continue
        for root in roots:
            if root not in allowed:
                problems.append(f"line {node.lineno}: import of {root!r} is not allowed")
    return problems


def verify_code(code: str, ir: IRSpec, *, limits: Limits = Limits(), allowed_modules: Iterable[str] | None = None,
                call_timeout_s: float = 2.0) -> VerificationReport:
    report = VerificationReport()
    static = check_code_against_ir(code, ir)
    report.checks.extend(VerifyCheck(c.name, c.passed, c.detail) for c in static)
    if not all(c.passed for c in static):
        return report
    tree = ast.parse(code)
    problems = check_imports(tree, allowed_modules if allowed_modules is not None else default_allowed_modules())
    report.checks.append(VerifyCheck("imports_allowed", not problems, "; ".join(problems) or "stdlib allow-list"))
    if problems:
        return report

    names = [p.name for p in ir.signature.parameters]
    for i, ex in enumerate(ir.examples):  # IR-level consistency of preconditions
        if ex.raises:
            continue
        for j, a in enumerate(ir.assertions):
            if a.kind.value != "precondition":
                continue
            try:
                ok = bool(eval(compile(ast.parse(a.predicate, mode="eval"), "<pre>", "eval"), {"__builtins__": {
                    "isinstance": isinstance, "len": len, "int": int, "str": str, "float": float, "list": list,
                    "dict": dict, "bool": bool, "tuple": tuple, "set": set, "all": all, "any": any, "abs": abs,
                    "min": min, "max": max, "sorted": sorted, "sum": sum}}, dict(ex.inputs)))
                detail = f"{a.predicate} is {ok} for example {i}"
            except Exception as exc:  # noqa: BLE001 - a broken predicate is an IR finding
                ok, detail = False, f"{a.predicate} raised {type(exc).__name__}: {exc}"
            report.checks.append(VerifyCheck(f"precondition[{j}] on example[{i}]", ok, detail, scope="ir"))

    payload = {
        "code": code,
        "name": ir.signature.name,
        "params": names,
        "examples": [e.model_dump(mode="json") for e in ir.examples],
        "assertions": [a.model_dump(mode="json") for a in ir.assertions],
        "call_timeout": call_timeout_s,
        "output_cap": 64 * 1024,
    }
    result = run_python(HARNESS, payload, limits)
    report.sandbox_seconds = result.seconds
    if not result.ok:
        report.checks.append(VerifyCheck("runs", False, result.reason))
        return report
    rep = result.payload
    if rep.get("load_error"):
        report.checks.append(VerifyCheck("runs", False, f"loading the code failed: {rep['load_error']}"))
        return report
    report.checks.append(VerifyCheck("runs", True, f"{len(rep['examples'])} calls in {result.seconds:.2f} s"))
    for e in rep["examples"]:
        report.checks.append(VerifyCheck(f"example[{e['index']}]", e["passed"], e["detail"]))
    for a in rep["assertions"]:
        kind = ir.assertions[a["index"]].kind.value
        scope = "ir" if a["error"] else "code"
        report.checks.append(VerifyCheck(f"{kind}[{a['index']}] on example[{a['example']}]", a["passed"], a["detail"], scope))
    return report
