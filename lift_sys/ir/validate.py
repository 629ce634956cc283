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
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import jsonschema
import jsonschema_rs
from pydantic import ValidationError

from lift_sys.errors import InvalidRequest, OutputValidationError
from lift_sys.ir.models import IRSpec, ir_generation_schema


_FAST: dict[str, Any] = {}
_FAST_LOCK = threading.Lock()


def _refuse_retrieval(uri: str) -> Any:
    """Retriever for both validators: nothing outside the schema document is ever fetched.

    jsonschema-rs fetches an ``http://`` ``$ref`` or an unknown ``$schema``
    with its default retriever, and python-jsonschema's default registry
    used ``urlopen``; a schema from a client made the server open
    connections. The meta-schemas of the known drafts are bundled with both
    libraries and resolve without this.
    """
    from referencing.exceptions import NoSuchResource

    raise NoSuchResource(ref=uri)


def _py_validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """python-jsonschema, 2020-12, with a registry that refuses every retrieval."""
    from referencing import Registry

    return jsonschema.Draft202012Validator(schema, registry=Registry(retrieve=_refuse_retrieval))


def _rs_validator(schema: dict[str, Any]) -> Any:
    """jsonschema-rs, 2020-12, with a retriever that refuses every retrieval."""
    return jsonschema_rs.Draft202012Validator(schema, retriever=_refuse_retrieval)


@lru_cache(maxsize=1)
def _ir_schema() -> dict[str, Any]:
    return ir_generation_schema()


def _cached_validator(schema: dict[str, Any], key: str) -> Any:
    validator = _FAST.get(key)
    if validator is None:
        try:
            validator = _rs_validator(schema)
        except Exception:  # noqa: BLE001 - e.g. a regex dialect jsonschema-rs refuses: use jsonschema alone
            validator = _py_validator(schema)
        with _FAST_LOCK:
            if len(_FAST) >= 256:
                _FAST.clear()
            _FAST[key] = validator
    return validator


def prepare_validator(schema: dict[str, Any], *, schema_key: str) -> None:
    """Build (and cache) the jsonschema-rs validator for a *caller's* schema, before generating.

    A schema jsonschema-rs cannot read is refused here (400), instead of
    being checked after generation by python-jsonschema: that fallback runs
    the caller's regexes with Python's backtracking ``re`` on model output,
    holding the GIL -- a pattern like ``^([a-z]+|[[:digit:]])+$`` (a POSIX
    class to the backend, something else to ``re``) could freeze the server.
    """
    if isinstance(_FAST.get(schema_key), jsonschema_rs.Validator):
        return
    try:
        validator = _rs_validator(schema)
    except Exception as exc:  # noqa: BLE001 - a jsonschema-rs error naming what it cannot read
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InvalidRequest(
            f"the output validator cannot read this schema ({message[:200]}); simplify it",
            detail={"validator": "jsonschema-rs"},
        ) from None
    with _FAST_LOCK:
        if len(_FAST) >= 256:
            _FAST.clear()
        _FAST[schema_key] = validator


def _rs_error(validator: Any, value: Any) -> tuple[str, str, str]:
    first = next(iter(validator.iter_errors(value)))
    keyword = next((str(p) for p in reversed(first.schema_path) if isinstance(p, str)), "unknown")
    return "/" + "/".join(map(str, first.instance_path)), first.message, keyword


def schema_error(value: Any, schema: dict[str, Any], *, schema_key: str | None = None,
                 trusted: bool = True) -> tuple[str, str, str] | None:
    """The first way ``value`` fails ``schema``, as (JSON pointer, message, keyword); None if valid.

    Every constrained generation is checked, so the check must be cheap:
    jsonschema-rs answers valid/invalid in ~2 µs on an IR where the pure
    Python ``jsonschema`` takes ~1.5 ms. A failure is rare (a backend
    ignored part of the schema). For our own schemas (``trusted``) it is
    explained by ``jsonschema``'s ``best_match``, which picks the most
    relevant error of an ``anyOf``; a caller's schema is explained by
    jsonschema-rs itself, so the caller's regexes never run in Python's
    backtracking ``re``. ``schema_key`` (``GrammarSpec.key``) saves
    re-serializing a known schema to find its cached validator.
    """
    key = schema_key or json.dumps(schema, sort_keys=True)
    validator = _cached_validator(schema, key)
    if validator.is_valid(value):
        return None
    if not trusted and isinstance(validator, jsonschema_rs.Validator):
        return _rs_error(validator, value)
    error = jsonschema.exceptions.best_match(_py_validator(schema).iter_errors(value))
    if error is not None:
        return "/" + "/".join(map(str, error.absolute_path)), error.message, str(error.validator)
    pointer, message, _ = _rs_error(validator, value)  # the validators disagree: say what jsonschema-rs saw
    return pointer, message, "unknown"


def validate_json(value: Any, schema: dict[str, Any], *, schema_key: str | None = None, trusted: bool = True) -> None:
    """Validate ``value`` against ``schema``; raise OutputValidationError naming the first problem.

    ``trusted=False`` for a caller's schema (see :func:`schema_error`). A
    reference the validators cannot resolve (they never fetch) is the
    schema's fault, not the output's: InvalidRequest.
    """
    from referencing.exceptions import Unresolvable

    try:
        error = schema_error(value, schema, schema_key=schema_key, trusted=trusted)
    except Unresolvable as exc:
        raise InvalidRequest(f"the schema has a reference that cannot be resolved ({exc}); nothing is fetched") from None
    if error is not None:
        where, message, keyword = error
        raise OutputValidationError(
            f"output does not match the schema at {where}: {message}",
            detail={"pointer": where, "validator": keyword},
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
