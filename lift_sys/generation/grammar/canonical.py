"""An instance in the one serialization our grammars produce, to test a grammar without a model.

A grammar compiled from a JSON Schema does not accept every text of a
valid value: both backends are compiled compact (no whitespace, ``,`` and
``:``), and llguidance emits an object's declared ``properties`` in schema
order, then any additional ones (measured: ``{"a":1,"c":2}`` accepted,
``{"c":2,"a":1}`` rejected for ``properties: {a, b}``). So to ask "does the
grammar accept this value?" the value is first written the way the grammar
would write it:

* compact separators, raw UTF-8 (no ``\\u`` escapes but the control
  characters JSON requires; llguidance refuses ``\\u00e9`` for ``é``);
* integral floats as integers (``1.0`` is an ``integer`` to JSON Schema;
  the grammars write ``1``); a bounded number without an exponent
  (:class:`Positional`);
* object keys reordered: the declared properties of the subschemas that
  apply -- the ``$ref`` target, ``allOf`` in order, the first ``anyOf``/
  ``oneOf`` branch the value is valid against, and the schema's own
  ``properties``, in the order those keywords are written
  (:func:`_applicable`) -- then required keys no
  ``properties`` declares, then the rest in instance order; recursively, each value with the subschema that applies to it.

Best effort by construction: for a value valid against none of the
branches the first branch is used, so an invalid instance the grammar
could emit in another key order is reported as rejected -- a limit of any
grammar-level check, said in the bench's docs.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from lift_sys.generation.grammar.schema_guard import MISSING, follow, pointer_tokens

_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


@dataclass(frozen=True)
class Positional:
    """A float written without an exponent (``0.000001``, not ``1e-06``): both backends' grammar for a
    number with a bound is a digit-range regex with no exponent (measured: ``{"type": "number",
    "minimum": 0}`` rejects ``1e-06`` and accepts ``0.000001`` with llguidance 1.9.1 and xgrammar 0.2.8;
    unbounded, both accept either)."""

    value: float


Validity = Callable[[Any, Any], bool]
"""(value, subschema) -> is the value valid against the subschema (resolving $ref in the root document)."""


def _resolve(schema: Any, root: Any, depth: int = 0) -> Any:
    """Follow a same-document ``$ref`` chain (the guard allows no other kind)."""
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and depth < 32:
        ref = schema["$ref"]
        if not ref.startswith("#"):
            return schema
        node: Any = follow(root, pointer_tokens(ref[1:]))  # not percent-decoded, unlike the guard's ref_tokens
        if node is MISSING:
            return schema
        rest = {k: v for k, v in schema.items() if k != "$ref"}
        if rest and isinstance(node, dict):  # 2020-12: siblings of $ref apply too
            return {"allOf": [node, rest]}
        schema = node
        depth += 1
    return schema


def _applicable(value: Any, schema: Any, root: Any, valid: Validity, depth: int = 0, *,
                written_order: bool = True) -> list[dict[str, Any]]:
    """The subschemas that apply to ``value`` in place, in the order a compiler merges their properties.

    llguidance merges in the order the keywords are *written*: a ``$ref``
    target, each ``allOf`` entry, the ``anyOf``/``oneOf`` branch and the
    schema's own ``properties`` come in their keys' order, each
    recursively the same way (measured, llguidance 1.9.1: ``{"anyOf":
    [{c}], "properties": {n}, "allOf": [{b}]}`` accepts ``c, n, b`` and none
    of the 5 other orders; with ``properties`` first, ``n`` comes first;
    xgrammar puts a ``$ref`` written first first too). The own keys' place is
    that of ``properties`` or of ``additionalProperties``, whichever is
    written first (``{"additionalProperties": false, "anyOf": [{b}],
    "properties": {a, b}}`` accepts only ``a, b``; MaskBench's
    Github_medium---o84199). ``written_order=False``
    is the schema-first order llama.cpp's converter uses.
    """
    if not written_order:
        return _schema_first(value, schema, root, valid, depth)
    if not isinstance(schema, dict) or depth > 32:
        return []
    out: list[dict[str, Any]] = []
    own = False
    for key, sub in schema.items():
        if key == "$ref" and isinstance(sub, str) and sub.startswith("#"):
            target = follow(root, pointer_tokens(sub[1:]))
            if target is not MISSING:
                out.extend(_applicable(value, target, root, valid, depth + 1))
        elif key == "allOf" and isinstance(sub, list):
            for entry in sub:
                out.extend(_applicable(value, entry, root, valid, depth + 1))
        elif key in ("anyOf", "oneOf") and isinstance(sub, list) and sub:
            chosen = next((b for b in sub if _safe_valid(valid, value, b)), sub[0])
            out.extend(_applicable(value, chosen, root, valid, depth + 1))
        elif key in ("properties", "additionalProperties") and not own:  # either one places the own keys
            out.append(schema)
            own = True
    return out if own else out + [schema]


def _schema_first(value: Any, schema: Any, root: Any, valid: Validity, depth: int = 0) -> list[dict[str, Any]]:
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > 32:
        return []
    out = [schema]
    for sub in schema.get("allOf", []) if isinstance(schema.get("allOf"), list) else []:
        out.extend(_schema_first(value, sub, root, valid, depth + 1))
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            chosen = next((b for b in branches if _safe_valid(valid, value, b)), branches[0])
            out.extend(_schema_first(value, chosen, root, valid, depth + 1))
    return out


def _safe_valid(valid: Validity, value: Any, schema: Any) -> bool:
    try:
        return valid(value, schema)
    except Exception:  # noqa: BLE001 - a branch the validator cannot read is not the one
        return False


def _child_schemas(key: str, schemas: list[dict[str, Any]]) -> list[Any]:
    found: list[Any] = []
    for s in schemas:
        props = s.get("properties")
        if isinstance(props, dict) and key in props:
            found.append(props[key])
            continue
        patterns = s.get("patternProperties")
        matched = False
        if isinstance(patterns, dict):
            for pattern, sub in patterns.items():
                try:
                    if re.search(pattern, key):
                        found.append(sub)
                        matched = True
                except re.error:
                    pass
        if not matched and isinstance(s.get("additionalProperties"), dict):
            found.append(s["additionalProperties"])
    return found


def _item_schemas(index: int, schemas: list[dict[str, Any]]) -> list[Any]:
    found: list[Any] = []
    for s in schemas:
        prefix = s.get("prefixItems")
        if isinstance(prefix, list) and index < len(prefix):
            found.append(prefix[index])
        elif isinstance(s.get("items"), dict):
            found.append(s["items"])
    return found


def _integral(value: Any) -> bool:
    """A float both grammars write as an integer (``1.0`` -> ``1``)."""
    return isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e16


def _integral_as_int(value: Any) -> Any:
    """A const/enum value as both backends write it: ``{"a": 0.0}`` as ``{"a":0}`` (measured, llguidance
    1.9.1 and xgrammar 0.2.8: ``0.0`` rejected, ``0`` accepted), key order kept."""
    if _integral(value):
        return int(value)
    if isinstance(value, dict):
        return {k: _integral_as_int(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_as_int(v) for v in value]
    return value


def _merged(found: list[Any], required_first: bool) -> Any:
    """The schema of a child several subschemas constrain: all of them, merged in order (a compiler
    intersects them; e.g. SchemaStore's libman: ``items: {required: [provider]}`` from an ``anyOf``
    branch and ``items: {$ref: libraryEntry}`` beside it). llama.cpp's order: the first one only."""
    if not found:
        return True
    return found[0] if len(found) == 1 or required_first else {"allOf": found}


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON values and as written (Python's ``[False] == [0]`` is not JSON's)."""
    try:
        return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    except (TypeError, ValueError):
        return False


def canonical_value(value: Any, schema: Any, root: Any, valid: Validity, depth: int = 0, *,
                    required_first: bool = False) -> Any:
    """``value`` with object keys in grammar order and integral floats as ints (see module doc).

    ``required_first``: llama.cpp's converter writes required properties
    first, then the optional ones (each in definition order).
    """
    if _integral(value):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and "e" in repr(value) and any(
            k in s for s in _applicable(value, schema, root, valid) for k in _BOUNDS):
        return Positional(value)
    if depth > 200 or not isinstance(value, (dict, list)):
        return value
    schemas = _applicable(value, schema, root, valid, written_order=not required_first)
    for s in schemas:  # a const/enum value is written as the schema wrote it (its key order)
        for option in ([s["const"]] if "const" in s else []) + (s["enum"] if isinstance(s.get("enum"), list) else []):
            if _same_json(option, value):
                return _integral_as_int(option)
    if isinstance(value, list):
        return [
            canonical_value(item, _merged(_item_schemas(i, schemas), required_first), root, valid, depth + 1,
                            required_first=required_first)
            for i, item in enumerate(value)
        ]
    order: list[str] = []
    if required_first:
        required = {r for s in schemas if isinstance(s.get("required"), list) for r in s["required"]}
        for s in schemas:
            if isinstance(s.get("properties"), dict):
                order.extend(k for k in s["properties"] if k in value and k in required and k not in order)
    for s in schemas:
        if isinstance(s.get("properties"), dict):
            order.extend(k for k in s["properties"] if k in value and k not in order)
    # Then required keys no ``properties`` declares, in ``required`` order (measured, llguidance 1.9.1:
    # properties {a}, required [xz, xb] accepts a, xz, xb, xq and rejects a, xq, xb, xz and a, xb, xz, xq).
    for s in schemas if not required_first else ():
        if isinstance(s.get("required"), list):
            order.extend(k for k in s["required"] if isinstance(k, str) and k in value and k not in order)
    order.extend(k for k in value if k not in order)
    return {k: canonical_value(value[k], _merged(_child_schemas(k, schemas), required_first), root, valid,
                               depth + 1, required_first=required_first)
            for k in order}


def canonical_json(value: Any, schema: Any, valid: Validity, *, required_first: bool = False) -> str:
    """The text our compact grammars would produce for ``value`` under ``schema``."""
    return _dumps(canonical_value(value, schema, schema, valid, required_first=required_first))


def _dumps(value: Any) -> str:
    """Compact JSON, raw UTF-8, with :class:`Positional` numbers written out in full."""
    if isinstance(value, Positional):
        return format(Decimal(repr(value.value)), "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{_dumps(str(k))}:{_dumps(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dumps(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, allow_nan=False)
