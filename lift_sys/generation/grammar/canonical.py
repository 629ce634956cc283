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
  the grammars write ``1``);
* object keys reordered: the declared properties of the subschema that
  applies (``$ref`` followed, ``allOf`` merged in order, the first ``anyOf``/
  ``oneOf`` branch the value is valid against), then the rest in instance
  order; recursively, each value with the subschema that applies to it.

Best effort by construction: for a value valid against none of the
branches the first branch is used, so an invalid instance the grammar
could emit in another key order is reported as rejected -- a limit of any
grammar-level check, said in the bench's docs.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable

from lift_sys.generation.grammar.schema_guard import MISSING, follow, pointer_tokens

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


def _applicable(value: Any, schema: Any, root: Any, valid: Validity, depth: int = 0) -> list[dict[str, Any]]:
    """The subschemas that apply to ``value`` in place, in the order a compiler merges them."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > 32:
        return []
    out = [schema]
    for sub in schema.get("allOf", []) if isinstance(schema.get("allOf"), list) else []:
        out.extend(_applicable(value, sub, root, valid, depth + 1))
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            chosen = next((b for b in branches if _safe_valid(valid, value, b)), branches[0])
            out.extend(_applicable(value, chosen, root, valid, depth + 1))
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
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and abs(value) < 1e16:
        return int(value)
    if depth > 200 or not isinstance(value, (dict, list)):
        return value
    schemas = _applicable(value, schema, root, valid)
    for s in schemas:  # a const/enum value is written as the schema wrote it (its key order)
        for option in ([s["const"]] if "const" in s else []) + (s["enum"] if isinstance(s.get("enum"), list) else []):
            if _same_json(option, value):
                return option
    if isinstance(value, list):
        return [
            canonical_value(item, (_item_schemas(i, schemas) or [True])[0], root, valid, depth + 1,
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
    order.extend(k for k in value if k not in order)
    return {k: canonical_value(value[k], (_child_schemas(k, schemas) or [True])[0], root, valid, depth + 1,
                               required_first=required_first)
            for k in order}


def canonical_json(value: Any, schema: Any, valid: Validity, *, required_first: bool = False) -> str:
    """The text our compact grammars would produce for ``value`` under ``schema``."""
    return json.dumps(canonical_value(value, schema, schema, valid, required_first=required_first), separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)
