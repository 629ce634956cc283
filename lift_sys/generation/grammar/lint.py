"""Schema lint: refuse, before any generation, what a backend would not enforce.

A grammar backend that meets a JSON Schema keyword it cannot express has
two options: fail, or quietly compile a *looser* grammar. The second is the
dangerous one -- the output still parses, looks constrained, and is not.
This module walks the schema with JSON pointers and names the first
keyword the chosen backend would drop, so the caller gets a 400 naming
``uniqueItems`` at ``/properties/tags`` instead of silently wrong output.

The tables were checked against the pinned backend versions by probing
each keyword (see tests/test_grammar_lint.py).
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from urllib.parse import unquote
from typing import Any, Iterator

from lift_sys.errors import InvalidRequest, LiftError, UnsupportedSchemaError
from lift_sys.generation.grammar.formats import refusal as format_refusal
from lift_sys.generation.grammar.schema_guard import _escape, check_schema, follow, ref_tokens
from lift_sys.generation.grammar.type_split import splits_by_type
from lift_sys.generation.grammar.xgrammar_regex import xgrammar_pattern_gap

# Keywords that hold a single subschema / a list / a map of subschemas.
_SUB_ONE = ("additionalProperties", "items", "not", "if", "then", "else", "contains",
            "propertyNames", "unevaluatedItems", "unevaluatedProperties", "additionalItems")
_SUB_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUB_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")

# Rejected for every backend: no grammar can enforce them token by token
# (they relate siblings, negate, or branch on values already emitted).
_NEVER = {
    "not": "negation cannot be compiled into a grammar",
    "if": "conditional schemas are not compiled",
    "then": "conditional schemas are not compiled",
    "else": "conditional schemas are not compiled",
    "uniqueItems": "uniqueness across array items is not enforced",
    "contains": "'contains' is not enforced",
    "minContains": "'contains' is not enforced",
    "maxContains": "'contains' is not enforced",
    "dependentRequired": "dependencies between properties are not enforced",
    "dependentSchemas": "dependencies between properties are not enforced",
    "dependencies": "dependencies between properties are not enforced",
    "unevaluatedItems": "not enforced",
    "unevaluatedProperties": "not enforced",
    "$dynamicRef": "dynamic references are not supported",
    "$recursiveRef": "dynamic references are not supported",
}

_EXTRA: dict[str, dict[str, str]] = {
    "llguidance": {
        "oneOf": "llguidance does not enforce oneOf's exclusivity (it would be read as anyOf)",
        "propertyNames": "not enforced by llguidance",
        "minProperties": "not enforced by llguidance",
        "maxProperties": "not enforced by llguidance",
    },
    "xgrammar": {
        "oneOf": "xgrammar treats oneOf as anyOf: exclusivity is not enforced",
        "propertyNames": "not enforced by xgrammar",
        "patternProperties": "not enforced by xgrammar",
        "multipleOf": "not enforced by xgrammar",
        "minProperties": "not enforced by xgrammar",
        "maxProperties": "not enforced by xgrammar",
    },
}

XGRAMMAR_MAX_OPTIONAL_PROPERTIES = 512
XGRAMMAR_MAX_OPTIONAL_TOTAL = 1024
"""Optional properties xgrammar may compile, per object and per schema.

Measured on 0.2.8 (2 vCPUs): one object with 512 optional properties 0.3 s,
3000: 64 s; 2 x 512: 0.8 s, 8 x 512: 27 s; 1024 objects x 16: 14 s. A compile
cannot be interrupted, so past these it would hold a compile thread long
after its time box."""


XGRAMMAR_MAX_LENGTH_BOUND = 16
"""Largest ``minLength``/``maxLength`` xgrammar compiles; a larger one is left to validation.

Measured on 0.2.8 (the embedded model's 151k-token vocabulary, 2 cores), one
string: maxLength 8 0.16 s, 16 0.46 s, 32 1.0 s, 64 2.5 s, 255 and beyond
~7.3 s; minLength 4 0.17 s, 50+ ~2.5 s. MaskBench's ``maxLength: 32767``
beside ``minLength: 50`` overran the 10 s compile box, and every overrun
holds a compile thread until it ends (the bench of 500 schemas waited 40 min).
The same length as a regex repetition costs nothing, but a pattern-constrained
string cannot hold escapes in xgrammar, so that rewrite would not be exact."""

_LOOKAROUND = re.compile(r"\(\?<?[=!]")

_STRING_KW = ("minLength", "maxLength", "pattern", "format")
# A string length beside a pattern: xgrammar ignores it; llguidance intersects the two, and the
# intersection breaks on valid strings once it grows (measured, llguidance 1.9.1, the model's tokens, a
# mask before every token as in decoding, each pattern alone accepting the string: MaskBench's
# ``^$|(^(?:\\S+\\s+){0,99}\\S+$)`` with maxLength 5000 and ``^(?:[a-z]+\\s+){0,19}[a-z]+$`` with maxLength
# 20000 stop at the 2nd word, "too many expressions constructed"). 3 MaskBench schemas lost valid
# instances this way. Both leave the length to validation.
_LENGTH_BESIDE_PATTERN = {
    "xgrammar": "xgrammar ignores string length when a pattern is also given",
    "llguidance": "llguidance's intersection of a pattern with a string length can reject valid strings",
}
_NUMBER_KW = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
_COUNT_KW = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")


# Beside ``enum``/``const`` xgrammar 0.2.8 writes only the listed values: every other constraint is
# ignored. Measured: ``{"enum": [1, "a"], "minLength": 3}`` accepted ``"a"`` (JSTS), and MaskBench
# Github_medium---o30410's ``{"enum": ["MODIFIABLE", ...], "type": "object"}`` accepted ``"MODIFIABLE"``.
# The relaxer keeps only the values that meet them (an exact rewrite); otherwise they are refused.
ENUM_BLIND = ("items", "prefixItems", "properties", "required", "additionalProperties", "patternProperties",
              "propertyNames", "additionalItems", "unevaluatedItems", "unevaluatedProperties", "contains",
              "minContains", "maxContains", "uniqueItems", "dependentRequired", "dependentSchemas", "dependencies",
              "not", "if", "then", "else", "$ref")

# Every constraining keyword; xgrammar 0.2.8 drops all of them beside a ``$ref`` (unknown keys are data).
REF_BLIND = tuple(k for k in ENUM_BLIND if k != "$ref") + _STRING_KW + _NUMBER_KW + _COUNT_KW + (
    "type", "enum", "const", "anyOf", "oneOf", "allOf")

_JSON_TYPES: dict[str, Any] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer(),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


_BOUND_KW = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
# Measured on xgrammar 0.2.8, byte vocabulary (MaskBench, full run): a string with a length bound never
# has an escape written in it (``{"type": "string", "minLength": 1}`` rejected ``"a\\"b"`` and
# ``"a\\nb"``: Github_hard---o34341's HTML template, JsonSchemaStore---strings' "\\nUsage"), and a
# number with a bound has at most 6 decimals and no exponent (``{"type": "number", "minimum": 0,
# "maximum": 1}`` rejected ``0.0160425``: Github_medium---o3914). Valid values lost, so a caller's
# schema leaves them to validation; our own schemas accept the narrower grammar.
XGRAMMAR_LENGTH_ESCAPES = "xgrammar writes no escape (\\\", \\n, \\u...) inside a length-bounded string"
XGRAMMAR_NUMBER_BOUND = "xgrammar writes a bounded number with at most 6 decimals and no exponent"


def values_have_type(node: dict[str, Any]) -> bool:
    """Whether every value ``enum``/``const`` lists is of the node's ``type`` (False if unsure)."""
    kind = node.get("type")
    kinds = [kind] if isinstance(kind, str) else kind if isinstance(kind, list) else None
    if not kinds or not all(isinstance(k, str) and k in _JSON_TYPES for k in kinds):
        return False
    values = [node["const"]] if "const" in node else node.get("enum")
    if not isinstance(values, list):
        return False
    return all(any(_JSON_TYPES[k](v) for k in kinds) for v in values)


def _xgrammar_drops(node: dict[str, Any], top: bool = False, trusted: bool = False) -> tuple[str, str] | None:
    """(keyword, reason) xgrammar 0.2.8 would silently ignore in ``node``, or None.

    Found by the JSON-Schema-Test-Suite at grammar level (invalid instances
    accepted): string/number keywords with no ``type`` (``{"minLength": 2}``
    accepts ``"f"``), ``required`` naming a property not in ``properties``
    (``{"type": "object", "required": ["a"]}`` accepts ``{}``), and any
    constraint next to ``enum``/``const`` (``{"enum": [1, "a"], "minLength": 3}``
    accepts ``"a"``). An untyped subschema with nothing but type-specific
    keywords and annotations is compiled split by type
    (:mod:`.type_split`), where every keyword has its type.
    """
    if "type" not in node and not splits_by_type(node, top):
        for keyword in _STRING_KW + _NUMBER_KW + ("minItems", "maxItems"):
            if keyword in node:
                return keyword, "xgrammar ignores it when the subschema has no 'type'; add one"
        if "required" in node and "properties" not in node:
            return "required", "xgrammar ignores it when the subschema has no 'type'; add one"
    required = node.get("required")
    if isinstance(required, list) and required:
        declared = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        missing = [r for r in required if r not in declared]
        if missing:
            return "required", f"xgrammar ignores required properties not listed in 'properties' ({missing[0]!r})"
    if not trusted:
        for keyword in ("minLength", "maxLength"):
            if keyword in node:
                return keyword, XGRAMMAR_LENGTH_ESCAPES
    bounds = [k for k in _BOUND_KW if k in node]
    if bounds:
        kinds = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
        if ("number" in kinds or None in kinds) and not trusted:  # untyped: split, a number branch
            return bounds[0], XGRAMMAR_NUMBER_BOUND
        for keyword in bounds:
            value = node[keyword]
            if isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= 2 ** 63:
                return keyword, "xgrammar cannot compile a bound beyond 64-bit integers"
    if "enum" in node or "const" in node:
        for keyword in _STRING_KW + _NUMBER_KW + _COUNT_KW + ENUM_BLIND:
            if keyword in node:
                return keyword, "xgrammar ignores constraints next to 'enum'/'const'"
        if "type" in node and not values_have_type(node):
            return "type", "xgrammar ignores 'type' next to 'enum'/'const', and a listed value is not of that type"
    if "$ref" in node:
        beside = [k for k in node if k in REF_BLIND]
        if beside:  # measured: {"$ref": .., "properties": {"name": {"type": "string"}}} accepted {"name": 1}
            return "$ref", f"xgrammar drops the keywords beside a $ref ({beside[0]!r})"
    for applicator in ("anyOf", "oneOf", "allOf"):
        beside = applicator_siblings(node, applicator)
        if beside:
            return applicator, f"xgrammar reads only the {applicator} when other keywords stand beside it ({beside[0]!r})"
    if isinstance(node.get("pattern"), str) and not _LOOKAROUND.search(node["pattern"]):
        gap = xgrammar_pattern_gap(node["pattern"], escapes=not trusted)
        if gap:
            return "pattern", gap
    props = node.get("properties")
    if isinstance(props, dict):
        for name in props:
            if isinstance(name, str) and any(c in '"\\' or ord(c) < 0x20 for c in name):
                return "properties", (f"xgrammar mis-writes the property name {name!r} (a quote, backslash or "
                                      "control character); use llguidance")
    return None


# Keywords that constrain nothing (annotations, definitions): they may stand beside an applicator.
_ANNOTATIONS = frozenset({
    "$schema", "$id", "$anchor", "$dynamicAnchor", "$comment", "$defs", "definitions", "$vocabulary", "title",
    "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "contentMediaType",
    "contentEncoding", "contentSchema",
})


def applicator_siblings(node: dict[str, Any], applicator: str) -> list[str]:
    """Constraining keywords beside ``applicator`` in ``node``.

    Measured on xgrammar 0.2.8 after ``strict_mode`` was turned off (so that
    objects may have the properties their schema allows): with ``anyOf``,
    ``oneOf`` or ``allOf`` in a subschema, the keywords beside it are
    dropped -- ``{"properties": {"a": {"type": "integer"}}, "anyOf":
    [{"properties": {"a": {"type": "string"}}}]}`` accepted ``{"a": "x"}``
    (JSTS additionalProperties#5, unevaluatedItems#20).
    """
    if applicator not in node:
        return []
    return [k for k in node if k not in _ANNOTATIONS and k not in ("anyOf", "oneOf", "allOf")]


def _walk(schema: Any, pointer: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(schema, dict):
        return
    yield pointer, schema
    for key in _SUB_ONE:
        if isinstance(schema.get(key), dict):
            yield from _walk(schema[key], f"{pointer}/{_escape(key)}")
    for key in _SUB_LIST:
        if isinstance(schema.get(key), list):
            for i, sub in enumerate(schema[key]):
                yield from _walk(sub, f"{pointer}/{key}/{i}")
    for key in _SUB_MAP:
        if isinstance(schema.get(key), dict):
            for name, sub in schema[key].items():
                yield from _walk(sub, f"{pointer}/{_escape(key)}/{_escape(name)}")


def iter_schemas(schema: Any, pointer: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (json_pointer, subschema) for the schema and every nested subschema.

    Nested = under a keyword that holds subschemas, *or* the target of a
    local ``$ref`` wherever it lives: ``{"$ref": "#/ddd/npn"}`` makes
    ``/ddd/npn`` a subschema though ``ddd`` is no keyword (MaskBench, full
    run: a ``not``, a ``oneOf`` and an unknown ``format`` reached only that
    way went past the lint and came back as the backend's unnamed compile
    error). Each pointer is yielded once.
    """
    seen: set[str] = set()
    pending = [(pointer, schema)]
    while pending:
        start, sub = pending.pop(0)
        for p, node in _walk(sub, start):
            if p in seen:
                continue
            seen.add(p)
            yield p, node
            ref = node.get("$ref")
            if pointer == "" and isinstance(ref, str) and ref.startswith("#/"):
                target = unquote(ref[1:])
                if target not in seen:
                    resolved = follow(schema, ref_tokens(ref) or ())
                    if isinstance(resolved, dict):
                        pending.append((target, resolved))


TRUSTED_SCHEMAS: set[str] = set()
"""Spec keys of our own schemas (the IR's, the code's): registered by the service. For them a grammar
*narrower* than the schema is accepted (xgrammar cannot write an escape inside a pattern-constrained
string); a looser one never is."""


_LINTED: "OrderedDict[tuple[str, str, bool], LiftError | None]" = OrderedDict()
_LINTED_LOCK = threading.Lock()
_LINTED_MAX = 512


def lint_spec(spec: Any, backend: str) -> None:
    """:func:`lint_schema` for a :class:`GrammarSpec`, remembered per (backend, spec key, trusted).

    Why: one request lints the same schema up to four times (the enforced-mode
    check, the relaxed schema, the cache miss, the backend's own compile),
    and on a large schema each lint is a full walk plus the guard's reference
    and cycle checks -- on MaskBench's slowest 1 % that Python work was about
    as long as llguidance's compile itself. A refusal is remembered too and
    raised again each time (its traceback reset; the message and detail a
    client sees never change).
    """
    if spec.kind != "json_schema":
        return
    trusted = spec.key in TRUSTED_SCHEMAS
    memo_key = (backend, spec.key, trusted)
    with _LINTED_LOCK:
        known = _LINTED.get(memo_key, False)
        if known is not False:
            _LINTED.move_to_end(memo_key)
    if known is None:
        return
    if known is not False:
        raise known.with_traceback(None)
    try:
        lint_schema(spec.source, backend, trusted=trusted)
        outcome: LiftError | None = None
    except LiftError as exc:  # the schema's fault, the same every time
        outcome = exc
    with _LINTED_LOCK:
        _LINTED[memo_key] = outcome
        while len(_LINTED) > _LINTED_MAX:
            _LINTED.popitem(last=False)
    if outcome is not None:
        raise outcome.with_traceback(None)


def lint_schema(schema: Any, backend: str, *, trusted: bool = False) -> None:
    """Raise :class:`UnsupportedSchemaError` for the first keyword ``backend`` would not enforce.

    First the backend-independent :func:`~lift_sys.generation.grammar.schema_guard.check_schema`
    (no remote or dangling references, no cycles without progress, a valid
    JSON Schema): every backend's lint runs it, so no path -- local compile,
    remote engine, chat ``response_format`` -- reaches a library without it.
    """
    if schema is True or schema == {}:
        return
    if not isinstance(schema, dict):
        raise InvalidRequest(f"a JSON schema must be an object, got {type(schema).__name__}")
    schema = check_schema(schema)  # the schema as it will be read (older drafts translated)
    extra = _EXTRA.get(backend, {})
    optional_total = 0
    for pointer, node in iter_schemas(schema):
        for keyword in node:
            reason = _NEVER.get(keyword) or extra.get(keyword)
            if reason:
                raise UnsupportedSchemaError(keyword, pointer, backend, reason)
        for keyword in _COUNT_KW:  # 2.0 is an integer to JSON Schema, a compile error to llguidance
            if isinstance(node.get(keyword), float):
                raise UnsupportedSchemaError(keyword, pointer, backend, "write the count as an integer (2, not 2.0)")
        if backend == "xgrammar":
            dropped = _xgrammar_drops(node, top=pointer == "", trusted=trusted)
            if dropped:
                raise UnsupportedSchemaError(dropped[0], pointer, backend, dropped[1])
        if "format" in node:
            why = format_refusal(node["format"], backend)
            if why:
                raise UnsupportedSchemaError("format", pointer, backend, why)
        if backend == "xgrammar" and isinstance(node.get("properties"), dict):
            required = node.get("required") if isinstance(node.get("required"), list) else []
            optional = len(set(node["properties"]) - set(required))
            optional_total += optional
            if optional > XGRAMMAR_MAX_OPTIONAL_PROPERTIES or optional_total > XGRAMMAR_MAX_OPTIONAL_TOTAL:
                raise UnsupportedSchemaError(
                    "properties", pointer, backend,
                    f"too many optional properties ({optional} here, {optional_total} so far); xgrammar's compile "
                    f"time grows super-linearly with them (3000 in one object: 64 s), the limits are "
                    f"{XGRAMMAR_MAX_OPTIONAL_PROPERTIES} per object and {XGRAMMAR_MAX_OPTIONAL_TOTAL} per schema "
                    "(make some required, or use llguidance)",
                )
        if backend == "xgrammar":
            for keyword in ("minLength", "maxLength"):
                bound = node.get(keyword)
                if isinstance(bound, int) and bound > XGRAMMAR_MAX_LENGTH_BOUND:
                    raise UnsupportedSchemaError(
                        keyword, pointer, backend,
                        f"xgrammar's compile time grows with a string length bound ({bound} > "
                        f"{XGRAMMAR_MAX_LENGTH_BOUND}: 32 takes 1 s, 255 7 s); use llguidance")
        if backend == "xgrammar" and isinstance(node.get("allOf"), list) and len(node["allOf"]) > 1:
            # measured on 0.2.8: {"allOf": [{"type": "integer"}, {"minimum": 3}]} admits any JSON value
            raise UnsupportedSchemaError("allOf", pointer, backend, "xgrammar drops an allOf of more than one subschema")
        if backend == "xgrammar" and "format" in node and ("minLength" in node or "maxLength" in node):
            # measured on 0.2.8: "format combined with minLength/maxLength is not supported; ignoring minLength/maxLength"
            which = "minLength" if "minLength" in node else "maxLength"
            raise UnsupportedSchemaError(which, pointer, backend, "xgrammar ignores string length beside a format")
        if backend == "xgrammar" and isinstance(node.get("pattern"), str) and _LOOKAROUND.search(node["pattern"]):
            # measured on 0.2.8: "Lookahead assertion is not supported and is ignored" -- a looser regex
            raise UnsupportedSchemaError("pattern", pointer, backend, "xgrammar ignores lookaround assertions")
        if "pattern" in node and ("minLength" in node or "maxLength" in node):
            which = "minLength" if "minLength" in node else "maxLength"
            raise UnsupportedSchemaError(which, pointer, backend, _LENGTH_BESIDE_PATTERN.get(backend, "string length beside a pattern is not enforced"))


_COMPILE_KEYWORDS = (
    ("oneOf", "oneOf"), ("patternProperty", "patternProperties"), ("enum", "enum"), ("multipleOf", "multipleOf"),
    ("minItems", "minItems"), ("maxItems", "maxItems"), ("minLength", "minLength"), ("maxLength", "maxLength"),
    ("prefixItems", "prefixItems"), ("pattern", "pattern"), ("regex", "pattern"), ("Regex", "pattern"),
)


def name_compile_error(schema: Any, backend: str, message: str) -> UnsupportedSchemaError | None:
    """A backend's compile error as a refusal naming keyword and JSON pointer, when the message says which.

    Backends name the keyword but rarely where it is (llguidance: "oneOf
    constraints are not supported", "schema is false"; xgrammar: "Schema
    'false' cannot accept any value"); the pointer is the first subschema
    holding it (or, for an unsatisfiable ``false``, the position of the
    first ``false`` subschema).
    """
    if not isinstance(schema, dict):
        return None
    nodes = list(iter_schemas(schema))
    if "Cannot find field" in message:  # xgrammar reads some valid pointers (~0, %22, empty tokens) differently
        refs = [(p, n) for p, n in nodes if isinstance(n.get("$ref"), str)]
        odd = [(p, n) for p, n in refs if any(c in n["$ref"] for c in ("~", "%", "//"))] or refs
        if odd:
            return UnsupportedSchemaError("$ref", odd[0][0], backend, message)
    unsatisfiable = re.search(r"required property '(.+?)' is unsatisfiable", message)
    if unsatisfiable:
        for pointer, node in nodes:
            if isinstance(node.get("required"), list) and unsatisfiable.group(1) in node["required"]:
                return UnsupportedSchemaError("required", pointer, backend, message)
    if "is empty" in message or "must not be empty" in message:
        for pointer, node in nodes:
            for key in ("enum", "anyOf", "oneOf"):
                if node.get(key) == []:
                    return UnsupportedSchemaError(key, pointer, backend, "an empty list admits no value")
    if "false" in message and ("schema is false" in message or "Schema 'false'" in message):
        for pointer, node in nodes:
            for key, value in node.items():
                if value is False and key not in ("additionalProperties", "items", "unevaluatedProperties",
                                                  "unevaluatedItems", "uniqueItems", "exclusiveMinimum",
                                                  "exclusiveMaximum"):
                    return UnsupportedSchemaError(key, pointer, backend, message)
                if isinstance(value, (list, dict)):
                    subs = value if isinstance(value, list) else list(value.values())
                    if any(sub is False for sub in subs):
                        return UnsupportedSchemaError(key, pointer, backend, message)
    circular = re.search(r"circular references with sibling keys[^#]*#(\S*)", message)
    if circular:  # llguidance names the target; the refusal names the $ref beside other keys that points there
        target = circular.group(1).rstrip(".,;")
        ref = "#" + target
        for pointer, node in nodes:
            if node.get("$ref") == ref and len(node) > 1:  # {"$ref": ..., "description": ...}
                return UnsupportedSchemaError("$ref", pointer, backend, message)
        for pointer, node in nodes:  # {"allOf": [{"$ref": ...}, {...}]}: the same merge
            subs = node.get("allOf")
            if isinstance(subs, list) and len(subs) > 1:
                for i, sub in enumerate(subs):
                    if isinstance(sub, dict) and sub.get("$ref") == ref:
                        return UnsupportedSchemaError("$ref", f"{pointer}/allOf/{i}", backend, message)
        return UnsupportedSchemaError("$ref", target, backend, message)
    if "regex parse error" in message:
        # (Only a regex llguidance cannot parse; "patternProperty regexes ... are not disjoint" names the
        # object's patternProperties below, which enforced mode can leave to validation.)
        # The regex the message quotes: a ``pattern``, or a ``patternProperties`` key (llguidance:
        # "regex parse error:; <re>; ^^^; error: look-around ... is not supported"; long ones cut).
        regexes = [(p, "pattern", n["pattern"]) for p, n in nodes if isinstance(n.get("pattern"), str)]
        regexes += [(f"{p}/patternProperties/{_escape(key)}", "patternProperties", key)
                    for p, n in nodes if isinstance(n.get("patternProperties"), dict) for key in n["patternProperties"]]
        shown_match = re.search(r"regex parse error:;\s*(.*?)(?:;|$)", message)
        shown = shown_match.group(1) if shown_match else message
        # Compared with the quoted regex, not the whole message: a short key ("a", ".*") would match any text.
        quoted = [r for r in regexes if r[2] and (r[2] == shown or (len(r[2]) >= 4 and r[2][:60] in shown))]
        for pointer, keyword, _regex in sorted(quoted, key=lambda r: -len(r[2])):
            return UnsupportedSchemaError(keyword, pointer, backend, message)
        # Quoted after llguidance rewrote it (``\w`` -> ``[0-9a-zA-Z_]``): the longest shared start.
        if shown_match and regexes:
            shared, (pointer, keyword, _regex) = max(((len(os.path.commonprefix((r[2], shown))), r) for r in regexes),
                                                     key=lambda scored: scored[0])  # the first of equals, as before
            if shared >= 4:
                return UnsupportedSchemaError(keyword, pointer, backend, message)
    for phrase, keyword in _COMPILE_KEYWORDS:
        if phrase in message:
            holders = [(pointer, node) for pointer, node in nodes if keyword in node]
            for pointer, node in holders:
                return UnsupportedSchemaError(keyword, pointer, backend, message)
    return None
