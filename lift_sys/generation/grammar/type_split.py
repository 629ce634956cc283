"""An untyped subschema, written as one branch per JSON type (for xgrammar; an exact rewrite).

JSON Schema's type-specific keywords only constrain values of their type:
``{"properties": {"foo": {"type": "integer"}}}`` accepts ``12`` and ``[]``,
``{"minLength": 2}`` accepts ``5``. xgrammar 0.2.8 reads such a subschema
its own way -- measured on the JSON-Schema-Test-Suite at grammar level:

* object / array keywords (``properties``, ``required``, ``items``,
  ``prefixItems``) make it *only* an object / array: 28 valid instances of
  the suite rejected (``12`` for ``properties``, ``{"foo": false}`` for a
  ``$ref`` to such a root, ``{"0": "invalid", "length": 1}`` for ``items``);
* string / number keywords (``minLength``, ``minimum`` ...) are dropped
  (``{"minLength": 2}`` accepted ``"f"``), which the lint used to refuse
  ("add a 'type'") and enforced mode left to validation.

Written as ``{"anyOf": [{"type": "object", <its keywords>}, ..., {"type":
[<every other type>]}]}`` the subschema says the same thing in a form
xgrammar reads right. Only subschemas whose every other keyword is an
annotation or unknown keyword are split (an ``enum``, ``$ref`` or applicator
beside them has its own rules in the lint); those stay where they were, and
``$ref``\\ s into a moved keyword are re-pointed (:func:`retarget`).
"""

from __future__ import annotations

from typing import Any

from lift_sys.generation.grammar.formats import APPROXIMATE_FORMAT
from lift_sys.generation.grammar.schema_guard import Pointer, pointer_str, ref_tokens

TYPE_KEYWORDS: dict[str, tuple[str, ...]] = {
    "object": ("properties", "patternProperties", "additionalProperties", "required", "minProperties",
               "maxProperties", "propertyNames", "dependentRequired", "dependentSchemas", "dependencies",
               "unevaluatedProperties"),
    "array": ("items", "prefixItems", "additionalItems", "contains", "minContains", "maxContains", "minItems",
              "maxItems", "uniqueItems", "unevaluatedItems"),
    "string": ("minLength", "maxLength", "pattern", "format", APPROXIMATE_FORMAT),
    "number": ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
}
_TYPE_OF = {k: t for t, keys in TYPE_KEYWORDS.items() for k in keys}
_ALL_TYPES = ("object", "array", "string", "number", "boolean", "null")
# Keywords that constrain every type: their own rules apply (the lint's), so such a subschema is not split.
# Anything else -- annotations, $defs, unknown keywords (annotations to 2020-12) -- stays beside the branches,
# where a $ref into it still finds it. Not $id/$anchor below the root: they would change what a reference
# inside the moved keywords resolves against.
_GENERIC = frozenset({"type", "enum", "const", "$ref", "$dynamicRef", "$recursiveRef", "anyOf", "oneOf", "allOf",
                      "not", "if", "then", "else"})
_ROOT_ONLY = frozenset({"$id", "$anchor", "$dynamicAnchor"})


def splits_by_type(node: Any, top: bool = False) -> bool:
    """Whether ``node`` is an untyped subschema :func:`split_by_type` rewrites."""
    if not isinstance(node, dict) or "type" in node:
        return False
    typed = False
    for key in node:
        if key in _TYPE_OF:
            typed = True
        elif key in _GENERIC or (key in _ROOT_ONLY and not top):
            return False
    return typed


def split_by_type(node: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[dict[str, Any], tuple[str, ...]]]]:
    """``node`` as (the keywords kept beside, [(branch, the keywords moved into it)]); see the module docstring."""
    beside = {k: v for k, v in node.items() if k not in _TYPE_OF}
    branches: list[tuple[dict[str, Any], tuple[str, ...]]] = []
    untouched = []
    for t in _ALL_TYPES:
        keys = tuple(k for k in node if _TYPE_OF.get(k) == t)
        if keys:
            branches.append(({"type": t, **{k: node[k] for k in keys}}, keys))
        else:
            untouched.append(t)
    if untouched:
        branches.append(({"type": untouched if len(untouched) > 1 else untouched[0]}, ()))
    return beside, branches


def retarget(schema: Any, moves: dict[Pointer, Pointer]) -> Any:
    """``schema`` with every local ``$ref`` into a moved location pointed at where it went.

    ``moves`` maps old JSON-pointer paths to new ones; a reference follows
    the longest moved prefix of its target.
    """
    if not moves:
        return schema

    def fix(node: Any) -> Any:
        if isinstance(node, list):
            return [fix(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: fix(v) for k, v in node.items()}
        target = ref_tokens(out.get("$ref")) if isinstance(out.get("$ref"), str) else None
        if target is not None:
            for n in range(len(target), 0, -1):
                new = moves.get(tuple(target[:n]))
                if new is not None:
                    out["$ref"] = "#" + pointer_str((*new, *target[n:]))
                    break
        return out

    return fix(schema)
