"""Verification cost per candidate, per isolation level.

What one ``verify_code`` call costs end to end (static checks, the
candidate's sandbox, the predicate sandbox, judging), for a few candidate
shapes, under ``bwrap`` and ``process`` isolation, interleaved in one run so
the two levels see the same machine. Reported as p50/p99 over ``reps`` calls
per level; the JSON keeps every sample.
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

from lift_sys.codegen import sandbox
from lift_sys.codegen.verify import verify_code
from lift_sys.ir import IRSpec
from lift_sys.ir.prompt import EXAMPLE_IR

CANDIDATES = {
    # the worked example: 3 examples, a precondition and a postcondition (two sandboxes)
    "count_vowels (pre+post)": (EXAMPLE_IR, """
def count_vowels(text: str) -> int:
    if not isinstance(text, str):
        raise TypeError('text must be a str')
    return sum(1 for ch in text.lower() if ch in 'aeiou')
"""),
    # examples only: one sandbox
    "examples only": ({**EXAMPLE_IR, "assertions": []}, """
def count_vowels(text):
    if not isinstance(text, str):
        raise TypeError('text must be a str')
    return sum(ch in 'aeiouAEIOU' for ch in text)
"""),
}


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else 0.0


def run_verify_bench(*, reps: int = 30, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    levels = ["bwrap", "process"] if sandbox.isolation() == "bwrap" else ["process"]
    samples: dict[str, dict[str, list[float]]] = {n: {lv: [] for lv in levels} for n in CANDIDATES}
    old = os.environ.get("LIFT_SANDBOX")
    try:
        for name, (ir_doc, code) in CANDIDATES.items():
            ir = IRSpec.model_validate(ir_doc)
            for i in range(reps + 2):
                for level in levels:  # interleaved: both levels see the same machine
                    os.environ["LIFT_SANDBOX"] = level
                    t0 = time.perf_counter()
                    report = verify_code(code, ir)
                    ms = (time.perf_counter() - t0) * 1000
                    if not report.verified:
                        raise RuntimeError(f"{name} under {level} did not verify: {report.feedback()}")
                    if i >= 2:  # two warm-up rounds
                        samples[name][level].append(ms)
            console.print(f"[dim]{name}: done[/]")
    finally:
        if old is None:
            os.environ.pop("LIFT_SANDBOX", None)
        else:
            os.environ["LIFT_SANDBOX"] = old
    rows = [{"candidate": n, "isolation": lv, "p50_ms": round(_pct(v, 0.5), 1), "p99_ms": round(_pct(v, 0.99), 1),
             "mean_ms": round(statistics.fmean(v), 1), "n": len(v), "samples_ms": [round(x, 2) for x in v]}
            for n, per in samples.items() for lv, v in per.items()]
    result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu_count": os.cpu_count(),
              "sandbox": sandbox.describe(), "reps": reps, "rows": rows}
    _print(result, console)
    return result


def _print(result: dict[str, Any], console: Console) -> None:
    t = Table(title=f"verification cost per candidate ({result['reps']} runs each, interleaved)")
    for col in ("candidate", "isolation", "p50 ms", "p99 ms", "mean ms"):
        t.add_column(col, justify="right" if "ms" in col else "left")
    for r in result["rows"]:
        t.add_row(r["candidate"], r["isolation"], f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['mean_ms']:.1f}")
    console.print(t)
