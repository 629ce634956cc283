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

import jsonschema
from pydantic import ValidationError

from lift_sys.errors import OutputValidationError
from lift_sys.ir.models import IRSpec, ir_generation_schema


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    schema = ir_generation_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@lru_cache(maxsize=256)
def _validator_for(schema_text: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_text))


def validate_json(value: Any, schema: dict[str, Any]) -> None:
    """Validate ``value`` against ``schema``; raise OutputValidationError naming the first problem."""
    validator = _validator_for(json.dumps(schema, sort_keys=True))
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        raise OutputValidationError(
            f"output does not match the schema at {where}: {error.message}",
            detail={"pointer": where, "validator": error.validator},
        )


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
    error = None if schema_checked else jsonschema.exceptions.best_match(_validator().iter_errors(value))
    if error is not None:
        where = "/" + "/".join(str(p) for p in error.absolute_path)
        raise OutputValidationError(
            f"IR does not match the schema at {where}: {error.message}",
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
    for i, a in enumerate(spec.assertions):
        if (msg := _parses(a.predicate)) is not None:
            found.append(IRCheck("warning", f"/assertions/{i}/predicate", f"not a Python expression ({msg})"))
    for i, ex in enumerate(spec.examples):
        unknown = sorted(set(ex.inputs) - set(names))
        if unknown:
            found.append(IRCheck("warning", f"/examples/{i}/inputs", f"unknown parameters {unknown}"))
        missing = sorted(set(names) - set(ex.inputs))
        if missing:
            found.append(IRCheck("warning", f"/examples/{i}/inputs", f"missing parameters {missing}"))
    return found
