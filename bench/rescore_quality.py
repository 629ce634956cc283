"""Offline re-scoring of a ``bench quality`` run: the same candidates, re-verified and re-selected.

    python bench/rescore_quality.py docs/bench/quality-0-39.jsonl

Each lift row keeps its IR (signature, assertions, examples with their
provenance) and every candidate's code as generated. This replays those
candidates, in order, through the *current* code path (the service's code
post-processing, sandbox verification, probes, selection, labelling) with a
scripted engine, and reports which candidate would win, whether it would be
verified, and whether HumanEval's tests passed that candidate in the run.
It measures a change to verification or selection without generating
again -- and says nothing about a change to generation.
"""
from __future__ import annotations

import json
import sys
from typing import Any

from lift_sys.codegen.prompt import fenced
from lift_sys.codegen.repair import PipelineResult, generate_verified_code
from lift_sys.generation.engines.fake import FakeEngine
from lift_sys.ir.models import IRSpec
from lift_sys.ir.prompt import EXAMPLE_IR
from lift_sys.ir.validate import spec_from_document
from lift_sys.service.core import GenerateOptions, InferenceService


def _ir(row: dict[str, Any]) -> IRSpec:
    doc = json.loads(json.dumps(EXAMPLE_IR))
    doc.update(row["ir"])
    ir = spec_from_document(doc)
    for example, stored in zip(ir.examples, row["ir"]["examples"]):
        example.given = stored["given"]  # as the run had it (a client's IR would count all as given)
    return ir


def replay(row: dict[str, Any]) -> PipelineResult:
    """The row's candidates, in order, through today's post-processing, verification and selection."""
    codes = iter([c["code"] or "" for c in row["candidates"]])
    service = InferenceService(FakeEngine(lambda messages, options, constraint: fenced(next(codes))))
    write = lambda ir, options, feedback=None: service.generate_code(ir, options, feedback=feedback)
    return generate_verified_code(write, _ir(row), GenerateOptions(), attempts=len(row["candidates"]),
                                  from_request=write)


def main(path: str) -> None:
    rows = {r["task_id"]: r for r in map(json.loads, open(path))}.values()
    n = live = passed = verified = verified_passed = skipped = 0
    for r in rows:
        lift = r["lift"]
        n += 1
        live += bool(lift["passed"])
        if not lift.get("candidates") or not lift.get("ir"):
            continue
        try:
            result = replay(lift)
        except ValueError as exc:  # an IR the stored document cannot rebuild (e.g. a camelCase def line)
            print(r["task_id"], "not rescored:", str(exc).splitlines()[0])
            skipped += 1
            passed += bool(lift["passed"])
            verified += bool(lift["verified"])
            verified_passed += bool(lift["verified"] and lift["passed"])
            continue
        winner = result.best.index if result.best else None
        ok = bool(winner is not None and lift["candidates_passed"][winner])
        passed += ok
        verified += result.verified
        verified_passed += result.verified and ok
        print(r["task_id"], "live", int(lift["passed"]), "rescored", int(ok), "verified", result.verified,
              "winner", winner, [a.agreement for a in result.attempts], len(result.attempts))
    print(f"problems {n}: live pass {live}, rescored pass {passed}; "
          f"rescored verified {verified}, of which pass {verified_passed} ({skipped} not replayed: live result kept)")


if __name__ == "__main__":
    main(sys.argv[1])
