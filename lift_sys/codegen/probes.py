"""Probe inputs: more calls to tell candidates apart than the IR's examples give.

Two candidates that pass the same two doctests may still be different
functions. HumanEval/0 ("is any pair of numbers closer than threshold?")
with the 0.5B model: the candidate written from the request compared only
*adjacent* numbers, passed both doctests, every IR check, and was reported
verified -- and was wrong. Agreement between independently written
candidates (CodeT) is only evidence on inputs where a wrong program and a
right one can differ, and the examples alone are too few.

So every candidate is also called on *probes*: the examples' inputs,
perturbed deterministically and type-preserving -- a list reordered,
shortened, reversed; a string reversed, cut, case-swapped; a number moved
by one (or by a half, for a float). A probe has no expected output: it
never fails a candidate, it only makes candidates that differ *look*
different (see :mod:`lift_sys.codegen.repair`). Nothing here runs code;
the probes are plain JSON values built from JSON values.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from lift_sys.ir.models import IRSpec

MAX_PROBES = 12


def _list_variants(v: list) -> list[list]:
    out = [v[::2] + v[1::2], v[::-1], v[1:] + v[:1], v[:-1]]
    return [x for x in out if x != v]


def _str_variants(v: str) -> list[str]:
    out = [v[::-1], v[1:], v.swapcase(), v + v[:1]]
    return [x for x in out if x != v]


def _int_variants(v: int) -> list[int]:
    return [v + 1, v - 1] if abs(v) < 1 << 31 else []


def _float_variants(v: float) -> list[float]:
    return [v + 0.5, v / 2] if abs(v) < 1e12 else []


def _variants(value: Any) -> list[Any]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int):
        return _int_variants(value)
    if isinstance(value, float):
        return _float_variants(value)
    if isinstance(value, str):
        return _str_variants(value)
    if isinstance(value, list):
        return _list_variants(value)
    return []


def probe_inputs(ir: IRSpec, limit: int = MAX_PROBES) -> list[dict[str, Any]]:
    """Up to ``limit`` new argument dicts, each one example's inputs with one argument perturbed.

    Round-robin over examples (given ones first) and their parameters, so a
    few probes already touch every example; inputs equal to an example's
    or to an earlier probe are skipped.
    """
    names = [p.name for p in ir.signature.parameters]
    bases = [e.inputs for e in sorted(ir.examples, key=lambda e: not e.given)
             if not e.raises and set(e.inputs) == set(names)]
    key: Callable[[dict], str] = lambda d: json.dumps(d, sort_keys=True)
    seen = {key(b) for b in bases}
    queues = [[dict(b, **{n: v}) for n in names for v in _variants(b[n])] for b in bases]
    probes: list[dict[str, Any]] = []
    while len(probes) < limit and any(queues):
        for q in queues:
            while q:
                p = q.pop(0)
                k = key(p)
                if k not in seen:
                    seen.add(k)
                    probes.append(p)
                    break
            if len(probes) >= limit:
                break
    return probes
