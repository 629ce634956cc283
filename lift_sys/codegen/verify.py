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
import builtins
import json
import math
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Iterable, Literal

from lift_sys.codegen.check import Check, check_code_against_ir
from lift_sys.codegen.harness import CALL_HARNESS, PREDICATE_HARNESS
from lift_sys.codegen.sandbox import Limits, SandboxResult, SandboxUnavailable, run_python
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


@dataclass
class VerificationReport:
    checks: list[Check] = field(default_factory=list)
    sandbox_seconds: float = 0.0
    isolation: str = "process"  # "bwrap" | "process": the sandbox level in force
    seccomp: bool = False  # the harness confirmed its seccomp filter was installed
    landlock: int = 0  # the Landlock ABI the harness restricted itself with (0: none)
    # What the candidate answered for each example's inputs (tagged data, in order): the behaviour
    # candidates are compared by when they are ranked by agreement. Not part of the report's dict.
    outcomes: list[dict] = field(default_factory=list, repr=False)

    @property
    def verified(self) -> bool:
        code_checks = [c for c in self.checks if c.scope == "code"]
        return bool(code_checks) and all(c.passed for c in code_checks)

    @property
    def passed(self) -> int:
        return sum(c.passed for c in self.checks if c.scope == "code")

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.scope == "code" and not c.passed]

    def feedback(self, provenances: tuple[str, ...] | None = None) -> str:
        """Failed checks, one per line: what a repair attempt is told (only these provenances, if given)."""
        return "\n".join(f"- {c.name}: {c.detail}" for c in self.failures()
                         if provenances is None or c.provenance in provenances)

    def to_dict(self) -> dict:
        return {"verified": self.verified, "passed": self.passed, "total": sum(c.scope == "code" for c in self.checks),
                "checks": [c.to_dict() for c in self.checks], "sandbox_seconds": round(self.sandbox_seconds, 3),
                "ir_findings": sum(c.scope == "ir" and not c.passed for c in self.checks),
                "suspect": sum(c.scope == "suspect" for c in self.checks),
                "isolation": self.isolation, "seccomp": self.seccomp, "landlock": self.landlock}


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

MAX_CODE_CHARS = 100_000  # generated functions are a few KB; parsing 5 MB took 19 s and 2.5 GB here
MAX_PREDICATE_CHARS = 2000
MAX_CALL_ROUNDS = 4  # predicate -> function -> predicate round trips for checks that call the function
_BUILTIN_EXCEPTIONS = frozenset(n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException))


def _plain(v: object) -> object:
    """A sandbox value as Python shows it (tags back to tuple/set/float, escaped keys back)."""
    tag = _tag(v)
    if tag == "$float":
        return float(v["$float"])  # type: ignore[index]
    if tag == "$dict":
        try:
            return {_plain(a): _plain(b) for a, b in v["$dict"]}  # type: ignore[index]
        except TypeError:
            return v
    if tag == "$tuple":
        return tuple(_plain(x) for x in v["$tuple"])  # type: ignore[index]
    if tag == "$set":
        try:
            return set(_plain(x) for x in v["$set"])  # type: ignore[index]
        except TypeError:
            return v
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {(k[1:] if k.startswith("$$") else k): _plain(x) for k, x in v.items()}
    return v


def _short(v: object, n: int = 200) -> str:
    try:
        r = repr(_plain(v))
    except RecursionError:
        r = "<nested too deep to show>"
    return r if len(r) <= n else r[:n] + "..."


def _tag(v: object) -> str | None:
    """The tag of a well-formed tagged value ({"$tuple": [...]}, ...); anything else is plain data."""
    if not (isinstance(v, dict) and len(v) == 1):
        return None
    (k, x), = v.items()
    if k == "$float" and x in ("nan", "inf", "-inf"):
        return k
    if k in ("$tuple", "$set") and isinstance(x, list):
        return k
    if k == "$dict" and isinstance(x, list) and all(isinstance(p, list) and len(p) == 2 for p in x):
        return k
    return None


def _key_text(k: object) -> str | None:
    """A non-string dict key as JSON would write it (JSON objects only have string keys)."""
    if type(k) is str:
        return k
    if type(k) in (int, float, bool) or k is None:
        return json.dumps(k)
    return None


def _non_str_keys(returns: str) -> bool:
    """The IR's return type declares a dict with keys that are not strings (``dict[int, ...]``)."""
    r = returns.replace(" ", "").lower()
    return any(f"{d}[{t}" in r for d in ("dict", "mapping") for t in ("int", "float", "bool", "tuple", "any"))


def _allows_float(returns: str) -> bool:
    r = returns.lower()
    return any(w in r for w in ("float", "number", "real", "any", "decimal"))


def escape_keys(v: object) -> object:
    """An IR value in the sandbox's encoding (dict keys starting with ``$`` get one more ``$``)."""
    if isinstance(v, list):
        return [escape_keys(x) for x in v]
    if isinstance(v, dict):
        return {("$" + k if k.startswith("$") else k): escape_keys(x) for k, x in v.items()}
    return v


def same(actual: object, expected: object, returns: str = "") -> bool:
    """Type-strict equality of a sandbox answer with an IR value (already in the sandbox's encoding).

    A bool is not a number; ``None`` only equals ``None``; two ints compare exactly; an int and a
    float never match unless the return type admits floats, and then (as two floats do) with 1e-9
    relative tolerance; NaN/infinity equal nothing (JSON has neither). JSON has no tuple, set or
    non-string key: a tuple equals a list only when the IR's return type mentions ``tuple``, a
    set equals a list with the same items in any order only when it mentions ``set``, and
    ``{1: 2}`` equals ``{"1": 2}`` only when it declares ``dict[int, ...]``."""
    tag = _tag(actual)
    if tag == "$float":
        return False
    if tag == "$dict":
        pairs = actual["$dict"]  # type: ignore[index]
        if not _non_str_keys(returns) or not isinstance(expected, dict) or len(pairs) != len(expected):
            return False
        keys = [_key_text(k) for k, _ in pairs]
        if None in keys or len(set(keys)) != len(keys) or set(keys) != set(expected):
            return False
        return all(same(v, expected[k], returns) for k, (_, v) in zip(keys, pairs))  # type: ignore[index]
    if tag == "$tuple":
        return "tuple" in returns.lower() and isinstance(expected, list) and same(actual["$tuple"], expected, returns)  # type: ignore[index]
    if tag == "$set":
        items = actual["$set"]  # type: ignore[index]
        if "set" not in returns.lower() or not isinstance(expected, list) or len(items) != len(expected):
            return False
        rest = list(expected)
        for item in items:
            hit = next((k for k, e in enumerate(rest) if same(item, e, returns)), None)
            if hit is None:
                return False
            rest.pop(hit)
        return True
    if type(actual) is bool or type(expected) is bool:
        return type(actual) is bool and type(expected) is bool and actual is expected
    if type(actual) is int and type(expected) is int:
        return actual == expected
    if type(actual) in (int, float) and type(expected) in (int, float):
        if type(actual) is not type(expected) and not _allows_float(returns):
            return False
        return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)  # type: ignore[arg-type]
    if actual is None or expected is None:
        return actual is None and expected is None
    if type(actual) is str or type(expected) is str:
        return type(actual) is str and actual == expected
    if isinstance(actual, list) and isinstance(expected, list):
        return len(actual) == len(expected) and all(same(a, e, returns) for a, e in zip(actual, expected))
    if isinstance(actual, dict) and isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(same(actual[k], expected[k], returns) for k in actual)
    return False


def raised_matches(outcome: dict, expected: str) -> bool:
    """Did the call raise ``expected``? A built-in name needs the genuine built-in class in the MRO
    (a home-made ``class TypeError(Exception)`` is not one); another name matches by class name."""
    short = expected.split(".")[-1]
    if "raised" not in outcome:
        return False
    if short in _BUILTIN_EXCEPTIONS:
        return short in outcome.get("builtin", [])
    return short in outcome["raised"]


class MalformedAnswer(ValueError):
    """The sandbox answered something other than what it was asked for: a failed check, never a crash."""


_OUTCOMES = {"value", "raised", "timeout", "memory", "unserializable", "need"}


def _outcome(entry: object, where: str) -> dict:
    if not isinstance(entry, dict):
        raise MalformedAnswer(f"{where} is not an object")
    kinds = _OUTCOMES & entry.keys()
    if len(kinds) != 1:
        raise MalformedAnswer(f"{where} has {sorted(kinds) or 'no outcome'}")
    if "raised" in entry:
        names, msg, genuine = entry.get("raised"), entry.get("message", ""), entry.get("builtin", [])
        if not (isinstance(names, list) and names and all(isinstance(x, str) for x in names) and isinstance(msg, str)
                and isinstance(genuine, list) and all(isinstance(x, str) for x in genuine)):
            raise MalformedAnswer(f"{where}: malformed exception")
    if "need" in entry and not isinstance(entry["need"], str):
        raise MalformedAnswer(f"{where}: malformed call request")
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
    if "need" in entry:
        return f"needs more than {MAX_CALL_ROUNDS} rounds of calls to the function"
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


def _call_candidate(code: str, fname: str, calls: list[dict], limits: Limits, call_timeout_s: float) -> tuple[SandboxResult, list[dict]]:
    """The candidate's answers to ``calls`` ([{args, kwargs}] in the sandbox encoding), validated."""
    res = run_python(CALL_HARNESS, {"code": code, "name": fname, "calls": calls, "call_timeout": call_timeout_s,
                                    "output_cap": 64 * 1024}, limits)
    if not res.ok:
        return res, []
    rep = res.payload
    if not isinstance(rep, dict) or not isinstance(rep.get("calls"), list):
        raise MalformedAnswer("not a report")
    if rep.get("load_error") is not None:
        raise _LoadError(str(rep["load_error"])[:300], rep)
    if len(rep["calls"]) != len(calls):
        raise MalformedAnswer(f"{len(rep['calls'])} answers for {len(calls)} calls")
    outcomes = [_outcome(e, f"answer {i}") for i, e in enumerate(rep["calls"])]
    if any("need" in o for o in outcomes):
        raise MalformedAnswer("a call answered with a call request")
    return res, outcomes


def call_outcomes(code: str, ir: IRSpec, inputs: list[dict], *, limits: Limits = Limits(wall_s=6.0, cpu_s=3),
                  call_timeout_s: float = 0.5) -> list[dict] | None:
    """The candidate's answers to extra calls (``inputs``: argument dicts by name), in their own sandbox run.

    For telling candidates apart (:mod:`lift_sys.codegen.probes`), never for judging one: any failure
    of the run as a whole is ``None`` (no evidence), a call that raises or times out is an answer.
    """
    if not inputs:
        return []
    calls = [{"args": [], "kwargs": escape_keys(i)} for i in inputs]
    try:
        res, outcomes = _call_candidate(code, ir.signature.name, calls, limits, call_timeout_s)
    except (_LoadError, MalformedAnswer, SandboxUnavailable, ValueError, TypeError, KeyError, RecursionError,
            MemoryError, OverflowError):
        return None
    return outcomes if res.ok else None


class _LoadError(Exception):
    def __init__(self, message: str, payload: dict) -> None:
        super().__init__(message)
        self.payload = payload


def _predicates(jobs: list[dict], predicates: list[str], fname: str | None, table: dict, limits: Limits,
                call_timeout_s: float) -> tuple[SandboxResult, list[dict]]:
    """Evaluate predicate jobs ({predicate, env}) in a sandbox that never loads the candidate."""
    res = run_python(PREDICATE_HARNESS, {"predicates": predicates, "jobs": jobs, "name": fname, "table": table,
                                         "call_timeout": call_timeout_s, "output_cap": 64 * 1024}, limits)
    results = res.payload.get("results") if res.ok and isinstance(res.payload, dict) else None
    if not isinstance(results, list) or len(results) != len(jobs):
        why = res.reason or "malformed answer"
        return res, [{"raised": ["SandboxError"], "builtin": [], "message": why, "sandbox_failed": True}] * len(jobs)
    out = []
    for r in results:
        try:
            r = _outcome(r, "predicate")
            if "value" in r and type(r["value"]) is not bool:
                raise MalformedAnswer("not a bool")
        except MalformedAnswer as exc:
            r = {"raised": ["SandboxError"], "builtin": [], "message": str(exc), "sandbox_failed": True}
        out.append(r)
    return res, out


def verify_code(code: str, ir: IRSpec, *, limits: Limits = Limits(), allowed_modules: Iterable[str] | None = None,
                call_timeout_s: float = 2.0, static_checks: list[Check] | None = None) -> VerificationReport:
    """Static checks, then the IR's examples and assertions run in the sandbox and judged here.

    Never raises on hostile input: anything unexpected becomes a failed check with its reason.
    ``static_checks``: the result of :func:`check_code_against_ir` when the caller already has it.
    """
    try:
        report = VerificationReport(isolation=sandbox_isolation())
    except SandboxUnavailable as exc:
        report = VerificationReport(isolation="unavailable")
        report.checks.append(Check("runs", False, f"no sandbox: {exc}"))
        return report
    if len(code) > MAX_CODE_CHARS:
        report.checks.append(Check("parses", False, f"code is {len(code)} characters, more than the "
                                                          f"{MAX_CODE_CHARS} verified"))
        return report
    static = static_checks if static_checks is not None else check_code_against_ir(code, ir)
    report.checks.extend(static)
    if not all(c.passed for c in static):
        return report
    try:
        tree = ast.parse(code)
        problems = check_imports(tree, allowed_modules if allowed_modules is not None else default_allowed_modules())
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        problems = [f"could not be analysed: {type(exc).__name__}"]
    report.checks.append(Check("imports_allowed", not problems, "; ".join(problems) or "stdlib allow-list"))
    if problems:
        return report
    try:
        _run_dynamic(code, ir, report, limits, call_timeout_s)
    except _LoadError as exc:
        _confinement(report, exc.payload)
        report.checks.append(Check("runs", False, f"loading the code failed: {exc}"))
    except MalformedAnswer as exc:
        report.checks.append(Check("runs", False, f"malformed answer from the sandbox: {exc}"))
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, MemoryError, OverflowError) as exc:
        name = "judged" if any(c.name == "runs" for c in report.checks) else "runs"  # never two "runs" checks
        report.checks.append(Check(name, False, f"could not verify: {type(exc).__name__}: {str(exc)[:200]}"))
    return report


def _confinement(report: VerificationReport, payload: dict) -> None:
    """What the harness confirmed was in force (it reports it even when the candidate failed to load)."""
    report.seccomp = payload.get("seccomp") is True
    landlock = payload.get("landlock")
    report.landlock = landlock if type(landlock) is int else 0


def _run_dynamic(code: str, ir: IRSpec, report: VerificationReport, limits: Limits, call_timeout_s: float) -> None:
    fname = ir.signature.name
    returns = ir.signature.returns or ""
    examples = [e.model_dump(mode="json") for e in ir.examples]
    predicates = [a.predicate for a in ir.assertions]
    kinds = [a.kind.value for a in ir.assertions]
    names = [_predicate_names(p) for p in predicates]
    self_ref = [n is not None and fname in n for n in names]

    # IR-only jobs, in parallel with the candidate: preconditions on the examples' inputs, and every
    # other predicate on the examples' *expected* outputs -- is the IR consistent with itself?
    ir_jobs, ir_labels = [], []
    for i, ex in enumerate(examples):
        if ex.get("raises"):
            continue
        for j, kind in enumerate(kinds):
            if kind == "precondition":
                ir_jobs.append({"predicate": j, "env": escape_keys(ex["inputs"])})
                ir_labels.append((j, i))
            elif not self_ref[j]:
                ir_jobs.append({"predicate": j, "env": escape_keys(dict(ex["inputs"], result=ex.get("output")))})
                ir_labels.append((j, i))
    calls = [{"args": [], "kwargs": escape_keys(ex["inputs"])} for ex in examples]
    with ThreadPoolExecutor(2) as pool:
        ir_future = pool.submit(_predicates, ir_jobs, predicates, None, {}, limits, call_timeout_s) if ir_jobs else None
        try:
            call, outcomes = _call_candidate(code, fname, calls, limits, call_timeout_s)
        finally:
            ir_res, ir_answers = ir_future.result() if ir_future else (None, [])
    report.sandbox_seconds = call.seconds + (ir_res.seconds if ir_res else 0.0)
    report.isolation = call.isolation
    if not call.ok:
        report.checks.append(Check("runs", False, call.reason))
        return
    _confinement(report, call.payload)
    report.outcomes = outcomes
    report.checks.append(Check("runs", True, f"{len(outcomes)} calls in {call.seconds:.2f} s"))

    for i, (ex, got) in enumerate(zip(examples, outcomes)):
        want_raise = ex.get("raises")
        if want_raise:
            ok = raised_matches(got, want_raise)
            if ok:
                detail = f"raised {got['raised'][0]}"
            elif "raised" in got and want_raise.split(".")[-1] in got["raised"]:
                detail = f"raised a class named {want_raise.split('.')[-1]} that is not the built-in one"
            elif "value" in got:
                detail = f"{describe_outcome(got, call_timeout_s)}, expected {want_raise} to be raised"
            else:
                detail = f"{describe_outcome(got, call_timeout_s)}, expected {want_raise}"
        elif "value" in got:
            ok = same(got["value"], escape_keys(ex.get("output")), returns)
            detail = f"returned {_short(got['value'])}" + ("" if ok else f", expected {_short(ex.get('output'))}")
        else:
            ok, detail = False, describe_outcome(got, call_timeout_s)
        report.checks.append(Check(f"example[{i}]", ok, detail,
                                   provenance="given" if ex.get("given") else "invented"))

    ir_ok: dict[tuple[int, int], bool] = {}
    for (j, i), r in zip(ir_labels, ir_answers):
        if kinds[j] == "precondition":
            name = f"precondition[{j}] on example[{i}]"
            detail = f"{predicates[j]} is {r['value']}" if "value" in r else f"{predicates[j]} {describe_outcome(r, call_timeout_s)}"
            report.checks.append(Check(name, r.get("value") is True, detail, "ir", provenance="invented"))
        else:
            ir_ok[(j, i)] = r.get("value") is True
            if not ir_ok[(j, i)]:
                what = f"is {r['value']}" if "value" in r else describe_outcome(r, call_timeout_s)
                report.checks.append(Check(f"{kinds[j]}[{j}] on the IR's own example[{i}]", False,
                                                 f"{predicates[j]} {what} for the expected output", "ir",
                                                 provenance="invented"))

    # The candidate's results: every non-precondition predicate, on every example that returned.
    jobs, labels = [], []
    for i, (ex, got) in enumerate(zip(examples, outcomes)):
        if ex.get("raises") or "value" not in got:
            continue
        for j, kind in enumerate(kinds):
            if kind != "precondition":
                jobs.append({"predicate": j, "env": dict(escape_keys(ex["inputs"]), result=got["value"])})
                labels.append((j, i))
    for j, kind in enumerate(kinds):
        if kind != "precondition" and not any(jj == j for jj, _ in labels):
            report.checks.append(Check(f"{kind}[{j}]", False, f"{predicates[j]} was never checked: no example "
                                             "returns a value", "ir", provenance="invented"))
    if not jobs:
        return
    table: dict[str, dict] = {}
    pending = list(range(len(jobs)))
    answers: list[dict] = [{}] * len(jobs)
    for _ in range(MAX_CALL_ROUNDS + 1):
        res, got_answers = _predicates([jobs[k] for k in pending], predicates, fname, table, limits, call_timeout_s)
        report.sandbox_seconds += res.seconds
        for k, a in zip(pending, got_answers):
            answers[k] = a
        needs = sorted({a["need"] for a in got_answers if "need" in a})
        if not needs or _ == MAX_CALL_ROUNDS:
            break
        asked = []
        for key in needs:
            spec = json.loads(key)
            asked.append({"args": spec["args"], "kwargs": spec["kwargs"]})
        call_res, more = _call_candidate(code, fname, asked, limits, call_timeout_s)
        report.sandbox_seconds += call_res.seconds
        if not call_res.ok:
            more = [{"raised": ["SandboxError"], "builtin": [], "message": call_res.reason}] * len(asked)
        table.update(zip(needs, more))
        pending = [k for k in pending if "need" in answers[k]]
    for (j, i), r in zip(labels, answers):
        name = f"{kinds[j]}[{j}] on example[{i}]"
        consistent = True if self_ref[j] else ir_ok.get((j, i), False)
        if "value" in r:
            ok, detail = r["value"], f"{predicates[j]} is {r['value']}"
        else:
            ok, detail = False, f"{predicates[j]} {describe_outcome(r, call_timeout_s)}"
        # A check that calls the function has no IR-only evaluation to tell an IR mistake from a code
        # one, so every failure of it counts against the code: "verified" must never rest on a check
        # that could not be run (the red team made exceptions the stand-in could not rebuild).
        scope = "code" if (self_ref[j] or consistent) else "ir"
        report.checks.append(Check(name, bool(ok), detail, scope, calls_function=self_ref[j],  # type: ignore[arg-type]
                                   provenance="invented"))
