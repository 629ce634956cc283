"""An IR generation schema fitted to the request's own ``def`` line: the signature fixed, every example typed.

Why: when the request states its ``def`` line, :func:`~lift_sys.ir.given.carry_given`
overwrites the model's signature with it *after* generation -- but the
model's examples and predicates were written against its own, and the
generic schema lets an example's ``inputs`` hold any keys and its
``output`` any JSON value. Measured (0.5B, HumanEval 0-39, 2-core AMD EPYC
Zen 4): HumanEval/7's three IR samples all looped on
``{"inputs":{"":"","":"a"},"output":[],...}`` (empty parameter names) and
HumanEval/6's example gave ``"output":[0,"1"]`` for a ``List[int]``; both
lifts ended in a runaway with no IR.

So, when the request has a usable ``def`` line, the grammar itself says:

* ``signature.name``, each parameter's ``name`` and, where annotated, its
  ``type_hint`` and ``returns`` are single-valued enums -- the grammar
  forces them (fast-forwarded, not decoded), and the model only writes
  the parameters' descriptions;
* an example's ``inputs`` has exactly the parameters as keys, in order;
  in a call that returns, each value is typed by its annotation (``int``
  -> JSON integer, ``List[str]`` -> an array of strings, ``Optional[X]``
  -> X or null, ...) and so is the ``output`` by the return annotation;
  a call that raises (``output`` null, ``raises`` a class name) may pass
  any values -- "raising TypeError if it is not a string" is what the
  worked example in the prompt shows.

An annotation this module does not know types its values as any JSON
value, as before: the fitting narrows only what it understands. Only the
``def`` header is read (``ast`` on the text, never executed); a header the
generic schema could not hold anyway (non-snake_case names, more than 8
parameters, very long annotations) keeps the generic schema.
"""

from __future__ import annotations

import ast
import copy
import re
from typing import Any

from lift_sys.ir.models import SNAKE_CASE, Parameter, ir_generation_schema

_ANY: dict[str, Any] = {"$ref": "#/$defs/JsonValue"}
_MAX_ITEMS = 16  # as the generic schema's arrays: a bound on a counting runaway
_MAX_DEPTH = 4
_MAX_HINT = 120  # characters of one annotation carried as a forced string
_SCALARS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer"}, "float": {"type": "number"}, "bool": {"type": "boolean"},
    "str": {"type": "string"}, "None": {"type": "null"}, "NoneType": {"type": "null"},
}
_ARRAYS = {"list", "List", "Sequence", "MutableSequence", "Iterable", "Iterator", "Collection", "set", "Set",
           "frozenset", "FrozenSet", "AbstractSet"}
_TUPLES = {"tuple", "Tuple"}
_OBJECTS = {"dict", "Dict", "Mapping", "MutableMapping", "OrderedDict", "DefaultDict", "defaultdict"}
_ANYS = {"Any", "object"}


def value_schema(hint: str | None) -> dict[str, Any]:
    """JSON Schema of the JSON values a Python annotation allows (any JSON value when it is not understood)."""
    if not hint:
        return _ANY
    try:
        node = ast.parse(hint.strip(), mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return _ANY
    return _schema(node, 0)


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):  # typing.List, t.Optional
        return node.attr
    return None


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items, "maxItems": _MAX_ITEMS}


def _any_of(options: list[dict[str, Any]]) -> dict[str, Any]:
    if any(o is _ANY for o in options):
        return _ANY
    unique: list[dict[str, Any]] = []
    for o in options:
        if o not in unique:
            unique.append(o)
    return unique[0] if len(unique) == 1 else {"anyOf": unique}


def _schema(node: ast.expr, depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        return _ANY
    if isinstance(node, ast.Constant) and node.value is None:
        return _SCALARS["None"]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):  # X | Y
        return _any_of([_schema(node.left, depth + 1), _schema(node.right, depth + 1)])
    name = _name(node)
    if name is not None:
        if name in _SCALARS:
            return _SCALARS[name]
        if name in _ARRAYS or name in _TUPLES:
            return _array(_ANY)
        if name in _OBJECTS:
            return {"type": "object", "additionalProperties": _ANY}
        return _ANY
    if not isinstance(node, ast.Subscript):
        return _ANY
    base = _name(node.value)
    args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
    if base == "Optional" and len(args) == 1:
        return _any_of([_schema(args[0], depth + 1), _SCALARS["None"]])
    if base == "Union":
        return _any_of([_schema(a, depth + 1) for a in args])
    if base in _ARRAYS and len(args) == 1:
        return _array(_schema(args[0], depth + 1))
    if base in _TUPLES:
        if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
            return _array(_schema(args[0], depth + 1))
        if 0 < len(args) <= _MAX_ITEMS:
            return {"type": "array", "prefixItems": [_schema(a, depth + 1) for a in args],
                    "items": False, "minItems": len(args), "maxItems": len(args)}
        return _array(_ANY)
    if base in _OBJECTS and len(args) == 2:
        return {"type": "object", "additionalProperties": _schema(args[1], depth + 1)}
    if base == "Literal":
        values = [a.value for a in args if isinstance(a, ast.Constant)
                  and (a.value is None or isinstance(a.value, (str, int, float, bool)))]
        return {"enum": values} if values and len(values) == len(args) else _ANY
    return _ANY


def fitted_ir_schema(name: str, parameters: list[Parameter], returns: str | None) -> dict[str, Any] | None:
    """The IR generation schema with this signature fixed and the examples typed; None when it cannot hold it."""
    snake = re.compile(SNAKE_CASE)
    if not snake.match(name) or len(parameters) > 8 or any(not snake.match(p.name) for p in parameters):
        return None
    hints = [p.type_hint for p in parameters] + [returns or ""]
    if any(len(h) > _MAX_HINT for h in hints) or len({p.name for p in parameters}) != len(parameters):
        return None
    schema = ir_generation_schema()
    defs = schema["$defs"]
    free_text = {"type": "string"}
    param_items = [
        {"type": "object", "additionalProperties": False,
         "properties": {"name": {"enum": [p.name]},
                        "type_hint": {"enum": [p.type_hint]} if p.type_hint not in ("", "Any") else free_text,
                        "description": free_text},
         "required": ["name", "type_hint", "description"]}
        for p in parameters
    ]
    defs["Signature"] = {
        "type": "object", "additionalProperties": False,
        "description": defs["Signature"].get("description", ""),
        "properties": {
            "name": {"enum": [name]},
            "parameters": ({"type": "array", "prefixItems": param_items, "items": False,
                            "minItems": len(parameters), "maxItems": len(parameters)}
                           if parameters else {"type": "array", "maxItems": 0}),
            "returns": {"enum": [returns]} if returns else free_text,
        },
        "required": ["name", "parameters", "returns"],
    }
    example = defs["Example"]
    props = example["properties"]

    def shape(inputs: dict[str, Any], output: dict[str, Any], raises: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False, "required": ["inputs", "output", "raises"],
                "properties": {
                    "inputs": {"type": "object", "additionalProperties": False, "properties": inputs,
                               "required": [p.name for p in parameters],
                               "description": props["inputs"].get("description", "")},
                    "output": {**output, "description": props["output"].get("description", "")},
                    "raises": raises}}

    raising = next(o for o in props["raises"]["anyOf"] if o.get("type") == "string")
    defs["Example"] = {
        "description": example.get("description", ""),
        "anyOf": [
            # a call that returns: every argument and the result typed by the annotations
            shape({p.name: value_schema(p.type_hint) for p in parameters}, value_schema(returns), {"type": "null"}),
            # a call that raises: the arguments may break the annotations ("TypeError if it is not a str")
            shape({p.name: _ANY for p in parameters}, {"type": "null"}, raising),
        ],
    }
    return copy.deepcopy(schema)  # no module-level dict shared into a schema someone may mutate
