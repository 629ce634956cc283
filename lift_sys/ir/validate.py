"""Parsing and checking IR documents.

Two layers, on purpose:

* **Structural** (:func:`parse_ir_json`): the text must be JSON, valid
  against the generated JSON Schema (``jsonschema``) *and* the pydantic
  model. Constrained decoding should make this always pass; checking
  anyway catches a backend that silently ignored part of the schema.
* **Semantic** (:func:`check_ir`): things a grammar cannot express --
  predicates that parse as Python, example inputs naming real parameters,
  unique parameter names. These are reported as findings, not raised:
  a small model's IR is still useful with a warning attached.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import ValidationError

from lift_sys.errors import OutputValidationError
from lift_sys.generation.validation import (  # noqa: F401 - re-exported: generic JSON validation lives there
    _refuse_retrieval,
    prepare_validator,
    schema_error,
    validate_json,
)
from lift_sys.ir.models import IRSpec, ir_generation_schema


@lru_cache(maxsize=1)
def _ir_schema() -> dict[str, Any]:
    return ir_generation_schema()


def parse_ir_json(text: str | Any, *, schema_checked: bool = False) -> IRSpec:
    """Parse model output (text, or already-parsed JSON) into an :class:`IRSpec`.

    Checks the JSON Schema (unless the caller just did: ``schema_checked``)
    and the pydantic model.
    """
    if isinstance(text, str):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise OutputValidationError(f"output is not JSON: {exc}", detail={"text": text}) from exc
    else:
        value, text = text, json.dumps(text)
    error = None if schema_checked else schema_error(value, _ir_schema())
    if error is not None:
        where, message, _ = error
        raise OutputValidationError(
            f"IR does not match the schema at {where}: {message}",
            detail={"pointer": where, "text": text},
        )
    try:
        return IRSpec.model_validate(value)
    except ValidationError as exc:
        raise OutputValidationError(f"IR rejected by the model: {exc}", detail={"text": text}) from exc


@dataclass(frozen=True)
class IRCheck:
    """One semantic finding about an IR."""

    level: Literal["warning", "error"]
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.where}: {self.message}"


def _parses(expr: str) -> str | None:
    try:
        ast.parse(expr, mode="eval")
    except SyntaxError as exc:
        return exc.msg
    return None


def check_ir(spec: IRSpec) -> list[IRCheck]:
    """Semantic checks a JSON Schema cannot express. Empty list = clean."""
    found: list[IRCheck] = []
    names = [p.name for p in spec.signature.parameters]
    if len(set(names)) != len(names):
        found.append(IRCheck("error", "/signature/parameters", f"duplicate parameter names: {names}"))
    for i, p in enumerate(spec.signature.parameters):
        if (msg := _parses(p.type_hint)) is not None:
            found.append(IRCheck("warning", f"/signature/parameters/{i}/type_hint", f"not a Python annotation ({msg})"))
    if (msg := _parses(spec.signature.returns)) is not None:
        found.append(IRCheck("warning", "/signature/returns", f"not a Python annotation ({msg})"))
    found.extend(predicate_problems(spec))
    for i, ex in enumerate(spec.examples):
        unknown = sorted(set(ex.inputs) - set(names))
        if unknown:
            found.append(IRCheck("warning", f"/examples/{i}/inputs", f"unknown parameters {unknown}"))
        missing = sorted(set(names) - set(ex.inputs))
        if missing:
            found.append(IRCheck("warning", f"/examples/{i}/inputs", f"missing parameters {missing}"))
    return found


_BUILTIN_NAMES = frozenset(dir(__import__("builtins")))


def predicate_problem(predicate: str, params: list[str], fname: str, kind: str) -> str | None:
    """Why ``predicate`` is not one Python boolean expression over the parameters and ``result``; None if it is.

    Caught here, right after generation, so the IR is resampled instead of
    the verifier discovering later that ``n == 0 or fib(n) == x,`` (a tuple)
    is always true, or that ``len(lst)`` names no parameter. Predicates see
    the builtins, the parameters, ``result`` (not in preconditions) and the
    function itself -- and nothing else (no modules).
    """
    try:
        tree = ast.parse(predicate.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return f"not a Python expression ({getattr(exc, 'msg', type(exc).__name__)})"
    body = tree.body
    if isinstance(body, ast.Tuple):
        return "a tuple (a trailing comma?), which is always true"
    if isinstance(body, (ast.Constant, ast.JoinedStr, ast.List, ast.Dict, ast.Set, ast.Lambda)):
        return f"a bare {type(body).__name__.lower()}, not a condition"
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        elif isinstance(node, ast.arguments):
            bound.update(a.arg for a in (*node.posonlyargs, *node.args, *node.kwonlyargs))
            bound.update(a.arg for a in (node.vararg, node.kwarg) if a is not None)
    allowed = set(params) | {fname} | _BUILTIN_NAMES | bound
    if kind != "precondition":
        allowed.add("result")
    unknown = sorted({n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - allowed)
    if unknown:
        hint = " (`result` is only known after the call)" if unknown == ["result"] else ""
        return f"unknown name{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}{hint}"
    return None


def predicate_problems(spec: IRSpec) -> list[IRCheck]:
    """Every assertion of ``spec`` that is not a well-formed predicate, as an error finding."""
    params = [p.name for p in spec.signature.parameters]
    return [IRCheck("error", f"/assertions/{i}/predicate", f"{a.predicate!r}: {why}")
            for i, a in enumerate(spec.assertions)
            if (why := predicate_problem(a.predicate, params, spec.signature.name, a.kind.value)) is not None]


def spec_from_document(doc: Any) -> IRSpec:
    """A client's IR document (hand-written, or from /v1/ir) -> IRSpec; ValueError naming the problem.

    ``metadata`` is the system's and is ignored. An example that does not say
    whether it is ``given`` is the client's own statement, so it is given
    (it may reject code); one from /v1/ir carries ``"given": false`` when the
    model invented it, and stays a claim that agreement can overrule.
    """
    if not isinstance(doc, dict):
        raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
    body = {k: v for k, v in doc.items() if k != "metadata"}
    if isinstance(body.get("examples"), list):
        body["examples"] = [dict(e, given=e.get("given", True)) if isinstance(e, dict) else e for e in body["examples"]]
    return IRSpec.model_validate(body)
