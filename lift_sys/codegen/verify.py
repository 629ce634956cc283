"""Verification: is this code the IR's function, and does it do what the IR says?

1. static (parsed, never run): parses; defines exactly the IR's function
   (name, parameters in order); imports only from the allow-list (stdlib by
   default, minus modules that reach outside the process); no dynamic code
   execution. A fast first filter that explains itself -- *not* the
   security boundary (``__builtins__["__import__"]`` walks right past it).
2. dynamic, in the sandbox (:mod:`lift_sys.codegen.sandbox`), which is the
   boundary: the candidate is called on every IR example's inputs and
   answers data only (:mod:`lift_sys.codegen.harness`). Every judgement is
   made here, in the parent: type-strict comparison with the expected
   output (never sent to the sandbox), the exception's class, a count of
   answers against questions, a clean exit. A malformed answer is a failed
   ``runs`` check with its reason, never a crash.
3. predicates: IR assertions come from a model or a client, so they are
   untrusted code too and run only in a sandbox. Those over parameters and
   ``result`` run in a second sandbox that never loads the candidate, on the
   JSON the first returned; a postcondition that calls the function itself
   has to run beside the candidate and is marked ``calls_function``.

Preconditions describe valid *inputs*; they are checked against the IR's
own examples and reported with ``scope="ir"`` -- an inconsistent IR is
reported, but it does not fail the code. A predicate that raises is an IR
finding (``scope="ir"``) too.
"""

from __future__ import annotations

import ast
import math
import sys
from dataclasses import asdict, dataclass, field
from typing import Iterable, Literal

from lift_sys.codegen.check import CodeCheck, check_code_against_ir
from lift_sys.codegen.harness import CALL_HARNESS, PREDICATE_HARNESS
from lift_sys.codegen.sandbox import Limits, run_python
from lift_sys.codegen.sandbox import isolation as sandbox_isolation
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
    calls_function: bool = False  # a postcondition that calls the function: evaluated beside the candidate

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class VerificationReport:
    checks: list[VerifyCheck] = field(default_factory=list)
    sandbox_seconds: float = 0.0
    isolation: str = "process"  # "bwrap" | "process": the sandbox level in force
    seccomp: bool = False  # the harness confirmed its seccomp filter was installed

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
                "checks": [c.to_dict() for c in self.checks], "sandbox_seconds": round(self.sandbox_seconds, 3),
                "isolation": self.isolation, "seccomp": self.seccomp}


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


# --------------------------------------------------------------------------- judging sandbox answers

MAX_PREDICATE_CHARS = 2000


def _short(v: object, n: int = 200) -> str:
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."


def _number(v: object) -> bool:
    return type(v) in (int, float)


def same(actual: object, expected: object) -> bool:
    """Type-strict equality of a sandbox answer (plain JSON, ``{"$set"|"$float": ...}`` tags)
    with an IR value: a bool is not a number, ``None`` only equals ``None``, int and float
    compare numerically (1e-9 relative), a set equals a list with the same items in any order."""
    if isinstance(actual, dict) and set(actual) == {"$float"}:
        return False  # NaN / infinity never equal an IR value (JSON has neither)
    if isinstance(actual, dict) and set(actual) == {"$set"} and isinstance(actual["$set"], list):
        if not isinstance(expected, list) or len(actual["$set"]) != len(expected):
            return False
        rest = list(expected)
        for item in actual["$set"]:
            hit = next((k for k, e in enumerate(rest) if same(item, e)), None)
            if hit is None:
                return False
            rest.pop(hit)
        return True
    if type(actual) is bool or type(expected) is bool:
        return type(actual) is bool and type(expected) is bool and actual is expected
    if _number(actual) and _number(expected):
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)  # type: ignore[arg-type]
    if actual is None or expected is None:
        return actual is None and expected is None
    if type(actual) is str or type(expected) is str:
        return type(actual) is str and actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(same(a, e) for a, e in zip(actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(same(actual[k], expected[k]) for k in actual)
    return False


class MalformedAnswer(ValueError):
    """The sandbox answered something other than what it was asked for: a failed check, never a crash."""


_OUTCOMES = {"value", "raised", "timeout", "memory", "unserializable"}


def _outcome(entry: object, where: str) -> dict:
    if not isinstance(entry, dict):
        raise MalformedAnswer(f"{where} is not an object")
    kinds = _OUTCOMES & entry.keys()
    if len(kinds) != 1:
        raise MalformedAnswer(f"{where} has {sorted(kinds) or 'no outcome'}")
    if "raised" in entry:
        names, msg = entry.get("raised"), entry.get("message", "")
        if not (isinstance(names, list) and names and all(isinstance(x, str) for x in names) and isinstance(msg, str)):
            raise MalformedAnswer(f"{where}: malformed exception")
    return entry


def describe_outcome(entry: dict, call_timeout_s: float) -> str:
    if "timeout" in entry:
        return f"timeout: call did not return within {call_timeout_s:g}s"
    if "memory" in entry or (entry.get("raised") or [""])[0] == "MemoryError":
        return "memory: allocation beyond the sandbox limit"
    if "unserializable" in entry:
        return f"returned a value that is not plain data ({str(entry['unserializable'])[:100]})"
    if "raised" in entry:
        return f"raised {entry['raised'][0]}: {entry['message'][:200]}"
    return f"returned {_short(entry['value'])}"


def _predicate_names(predicate: str) -> set[str] | None:
    """Names a predicate mentions (parsed, never run); ``None`` when it does not parse."""
    if len(predicate) > MAX_PREDICATE_CHARS:
        return None
    try:
        tree = ast.parse(predicate, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def verify_code(code: str, ir: IRSpec, *, limits: Limits = Limits(), allowed_modules: Iterable[str] | None = None,
                call_timeout_s: float = 2.0, static_checks: list[CodeCheck] | None = None) -> VerificationReport:
    """Static checks, then the IR's examples and assertions run in the sandbox and judged here.

    ``static_checks``: the result of :func:`check_code_against_ir` when the caller already has it.
    """
    report = VerificationReport(isolation=sandbox_isolation())
    static = static_checks if static_checks is not None else check_code_against_ir(code, ir)
    report.checks.extend(VerifyCheck(c.name, c.passed, c.detail) for c in static)
    if not all(c.passed for c in static):
        return report
    tree = ast.parse(code)
    problems = check_imports(tree, allowed_modules if allowed_modules is not None else default_allowed_modules())
    report.checks.append(VerifyCheck("imports_allowed", not problems, "; ".join(problems) or "stdlib allow-list"))
    if problems:
        return report

    fname = ir.signature.name
    examples = [e.model_dump(mode="json") for e in ir.examples]
    kinds = [a.kind.value for a in ir.assertions]
    names = [_predicate_names(a.predicate) for a in ir.assertions]
    self_ref = [kinds[j] != "precondition" and n is not None and fname in n for j, n in enumerate(names)]
    self_checks = [{"predicate": a.predicate, "call": i, "index": j}
                   for i, ex in enumerate(examples) if not ex.get("raises")
                   for j, a in enumerate(ir.assertions) if self_ref[j]]

    call = run_python(CALL_HARNESS, {
        "code": code, "name": fname, "calls": [ex["inputs"] for ex in examples],
        "self_checks": [{"predicate": c["predicate"], "call": c["call"]} for c in self_checks],
        "call_timeout": call_timeout_s, "output_cap": 64 * 1024,
    }, limits)
    report.sandbox_seconds = call.seconds
    report.isolation = call.isolation
    if not call.ok:
        report.checks.append(VerifyCheck("runs", False, call.reason))
        return report
    try:
        rep = call.payload
        if not isinstance(rep, dict) or not isinstance(rep.get("calls"), list) or not isinstance(rep.get("self_checks"), list):
            raise MalformedAnswer("not a report")
        report.seccomp = rep.get("seccomp") is True
        if rep.get("load_error") is not None:
            report.checks.append(VerifyCheck("runs", False, f"loading the code failed: {str(rep['load_error'])[:300]}"))
            return report
        if len(rep["calls"]) != len(examples):
            raise MalformedAnswer(f"{len(rep['calls'])} answers for {len(examples)} calls")
        outcomes = [_outcome(e, f"answer {i}") for i, e in enumerate(rep["calls"])]
        asked = [c for c in self_checks if "value" in outcomes[c["call"]]]
        if len(rep["self_checks"]) != len(asked):
            raise MalformedAnswer(f"{len(rep['self_checks'])} answers for {len(asked)} self-referential checks")
        self_answers = []
        for c, e in zip(asked, rep["self_checks"]):
            if not isinstance(e, dict) or e.get("index") != c["index"]:
                raise MalformedAnswer("self-referential check answers out of order")
            e = _outcome({k: v for k, v in e.items() if k != "index"}, f"check {c['index']}")
            if "value" in e and type(e["value"]) is not bool:
                raise MalformedAnswer(f"check {c['index']} is not a bool")
            self_answers.append(e)
    except MalformedAnswer as exc:
        report.checks.append(VerifyCheck("runs", False, f"malformed answer from the sandbox: {exc}"))
        return report
    report.checks.append(VerifyCheck("runs", True, f"{len(outcomes)} calls in {call.seconds:.2f} s"))

    for i, (ex, got) in enumerate(zip(examples, outcomes)):
        want_raise = ex.get("raises")
        if want_raise:
            short_name = want_raise.split(".")[-1]
            ok = "raised" in got and short_name in got["raised"]
            detail = (f"raised {got['raised'][0]}" if ok else
                      f"{describe_outcome(got, call_timeout_s)}, expected {want_raise} to be raised"
                      if "value" in got else describe_outcome(got, call_timeout_s))
        elif "value" in got:
            ok = same(got["value"], ex.get("output"))
            detail = f"returned {_short(got['value'])}" + ("" if ok else f", expected {_short(ex.get('output'))}")
        else:
            ok, detail = False, describe_outcome(got, call_timeout_s)
        report.checks.append(VerifyCheck(f"example[{i}]", ok, detail))

    # Predicates over data only: a second sandbox that never loads the candidate.
    jobs, labels = [], []
    for i, ex in enumerate(examples):
        if ex.get("raises"):
            continue
        for j, kind in enumerate(kinds):
            if kind == "precondition":
                jobs.append({"predicate": j, "env": dict(ex["inputs"])})
                labels.append((j, i, "ir"))
            elif not self_ref[j] and "value" in outcomes[i]:
                jobs.append({"predicate": j, "env": dict(ex["inputs"], result=outcomes[i]["value"])})
                labels.append((j, i, "code"))
    answers: list[dict] = []
    if jobs:
        pred = run_python(PREDICATE_HARNESS, {"predicates": [a.predicate for a in ir.assertions], "jobs": jobs,
                                              "call_timeout": call_timeout_s, "output_cap": 64 * 1024}, limits)
        report.sandbox_seconds += pred.seconds
        results = pred.payload.get("results") if pred.ok and isinstance(pred.payload, dict) else None
        if not isinstance(results, list) or len(results) != len(jobs):
            why = pred.reason or "malformed answer"
            results = [{"raised": ["SandboxError"], "message": why}] * len(jobs)
        for r in results:
            try:
                r = _outcome(r, "predicate")
                if "value" in r and type(r["value"]) is not bool:
                    raise MalformedAnswer("not a bool")
            except MalformedAnswer as exc:
                r = {"raised": ["SandboxError"], "message": str(exc)}
            answers.append(r)
    for (j, i, scope), r in zip(labels, answers):
        a = ir.assertions[j]
        name = f"{kinds[j]}[{j}] on example[{i}]"
        if "value" in r:
            report.checks.append(VerifyCheck(name, r["value"], f"{a.predicate} is {r['value']}", scope))  # type: ignore[arg-type]
        else:
            report.checks.append(VerifyCheck(name, False, f"{a.predicate} {describe_outcome(r, call_timeout_s)}", "ir"))
    answered = iter(self_answers)
    for c in asked:
        a, r = ir.assertions[c["index"]], next(answered)
        name = f"{kinds[c['index']]}[{c['index']}] on example[{c['call']}]"
        if "value" in r:
            report.checks.append(VerifyCheck(name, r["value"], f"{a.predicate} is {r['value']}", "code", calls_function=True))
        else:
            report.checks.append(VerifyCheck(name, False, f"{a.predicate} {describe_outcome(r, call_timeout_s)}", "ir",
                                             calls_function=True))
    return report
