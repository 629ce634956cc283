"""Schema guard: what a caller's JSON Schema may reference, checked before any library sees it.

A JSON Schema is code for several libraries at once -- the grammar backend
(llguidance, xgrammar, or a remote server's), and the output validators
(jsonschema-rs, jsonschema). Some of them *retrieve* what a schema points
at: jsonschema-rs fetches an ``http://`` ``$ref`` or an unknown ``$schema``
by default (measured: the worker thread blocked on a slow URL), and
python-jsonschema's default registry did too. Others loop or explode on
references: a ``$ref`` cycle that consumes no input is an error state in
llguidance and an empty grammar in xgrammar, and ``allOf``/``anyOf`` fans of
references make validation exponential (4 refs x 14 levels: 2.4 s; 30
levels would never finish).

So before lint, compile or validation, every caller-supplied schema must be
self-contained and finite:

* ``$ref`` is a same-document JSON pointer (``#`` or ``#/...``) that resolves
  to a subschema of this document -- never a URL, a relative path, or an
  anchor; ``$dynamicRef``/``$dynamicAnchor``, ``$recursiveRef``/
  ``$recursiveAnchor`` and ``$vocabulary`` (dialect machinery, the hooks
  that make libraries resolve things) are refused; ``$id`` (``id`` in
  draft-04) is removed where it is inert -- at the root, or with no ``$ref``
  beneath it -- and refused elsewhere, so no library ever sees a base URI;
* ``$schema`` may only name a well-known draft (04, 06, 07, 2019-09,
  2020-12), at the root; :func:`sanitize_schema` removes it and translates
  an older draft's forms into 2020-12 (:func:`upgrade_schema`), so the
  schema is read as 2020-12 by every backend and validator alike;
* no cycle of ``$ref``/``allOf``/``anyOf``/``oneOf``/``not``/``if``/``then``/
  ``else`` that consumes no input (recursion through ``properties``,
  ``items``... -- a JSON tree, like the IR's ``JsonValue`` -- is fine);
* the in-place expansion of those keywords from any subschema stays under
  :data:`MAX_INPLACE_EXPANSION` subschemas;
* the schema is valid against the 2020-12 meta-schema (bundled with
  jsonschema-rs; format assertions off, so a regex dialect is not judged here).

Every refusal is a :class:`~lift_sys.errors.SchemaRefused` naming the keyword
and the JSON pointer.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from typing import Any, Iterable, Iterator
from urllib.parse import unquote

from lift_sys.errors import InvalidRequest, SchemaRefused

# Dialects a caller may name in "$schema" (with or without the empty fragment,
# http or https). They are read as 2020-12: the differences that matter
# (tuple "items", "dependencies", boolean exclusive bounds of draft 4) fail
# the meta-schema check or the lint instead of changing meaning silently.
_DIALECTS = {
    "json-schema.org/draft/2020-12/schema": 2020,
    "json-schema.org/draft/2019-09/schema": 2019,
    "json-schema.org/draft-07/schema": 7,
    "json-schema.org/draft-06/schema": 6,
    "json-schema.org/draft-04/schema": 4,
}

# Keywords that change base URIs or dialects, or resolve dynamically: the
# machinery through which a library decides to look something up.
_RESOLUTION_KEYWORDS = {
    "$dynamicRef": "dynamic references are not supported",
    "$dynamicAnchor": "dynamic references are not supported",
    "$recursiveRef": "dynamic references are not supported",
    "$recursiveAnchor": "dynamic references are not supported",
    "$vocabulary": "'$vocabulary' belongs in meta-schemas, not in a request schema",
}

# Values that are data, not schemas: never walked (a "const" may legally hold {"$ref": ...}).
_DATA = frozenset({"const", "enum", "default", "examples", "required", "type", "$comment", "description", "title"})
# Objects whose *values* are schemas (their keys are names, not keywords).
_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies"})
# Keywords that apply their subschemas to the same instance: no input is consumed between them.
_INPLACE_LIST = ("allOf", "anyOf", "oneOf")
_INPLACE_ONE = ("not", "if", "then", "else")

APPROXIMATE_FORMAT = "x-lift-format"
"""Where enforced mode keeps a format its grammar only approximates (:mod:`.formats`): an annotation to the
guard and the lint, ``format`` to the backend. A caller's copy is dropped here, as the annotation it is."""

MAX_INPLACE_EXPANSION = 10_000
"""Most subschemas one subschema may expand to through $ref/allOf/anyOf/oneOf/not/if/then/else.

Validators (and allOf-merging compilers) visit every one of them for each
instance value; the IR schema needs a few dozen, a wide anyOf of constants a
few thousand. Measured exponential blow-up: 4-way allOf of refs, 14 levels
deep (4^14 = 2.7e8), 2.4 s per validation."""

Pointer = tuple[str, ...]


MISSING = object()
"""What :func:`follow` returns when the pointer leads nowhere (``None`` is a JSON value)."""


def pointer_tokens(pointer: str) -> Pointer:
    """The unescaped tokens of a JSON pointer (``""`` -> ``()``; ``~1`` is ``/``, ``~0`` is ``~``)."""
    return tuple(t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]) if pointer else ()


def ref_tokens(ref: Any) -> Pointer | None:
    """The unescaped tokens of a same-document ``$ref`` (``#`` -> ``()``), or None for any other reference."""
    if not isinstance(ref, str) or not ref.startswith("#"):
        return None
    return pointer_tokens(unquote(ref[1:]))


def follow(root: Any, tokens: Iterable[str]) -> Any:
    """The value at the (already unescaped) JSON-pointer ``tokens`` under ``root``, or :data:`MISSING`."""
    node = root
    for token in tokens:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return MISSING
    return node


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointer_str(path: Pointer) -> str:
    """A path as a JSON pointer ("" is the root, shown as "/" in messages)."""
    return "".join("/" + _escape(t) for t in path)


def _children(node: dict[str, Any], path: Pointer) -> Iterator[tuple[Pointer, Any]]:
    """(path, value) of every subschema position directly under ``node``.

    Conservative: a keyword this module does not know, holding an object or
    an array of objects, is treated as holding subschemas (a library might).
    """
    for key, value in node.items():
        if key in _DATA:
            continue
        if key in _MAPS and isinstance(value, dict):
            for name, sub in value.items():
                if isinstance(sub, (dict, bool)):
                    yield (*path, key, name), sub
        elif isinstance(value, (dict, bool)):
            yield (*path, key), value
        elif isinstance(value, list):
            for i, sub in enumerate(value):
                if isinstance(sub, (dict, bool)):
                    yield (*path, key, str(i)), sub


def _collect(schema: Any) -> dict[Pointer, Any]:
    """Every subschema position of the document, by path, in document order (pre-order).

    Iterative: no recursion limit to hit. Document order makes every message
    deterministic (the first offending keyword as written).
    """
    nodes: dict[Pointer, Any] = {}
    stack: list[tuple[Pointer, Any]] = [((), schema)]
    while stack:
        path, node = stack.pop()
        nodes[path] = node
        if isinstance(node, dict):
            stack.extend(reversed(list(_children(node, path))))
    return nodes


def _parse_ref(ref: Any, where: Pointer, nodes: dict[Pointer, Any]) -> Pointer:
    """The path a same-document ``$ref`` points to, or SchemaRefused."""
    w = pointer_str(where)
    if not isinstance(ref, str):
        raise SchemaRefused("$ref", w, "must be a string")
    if not ref.startswith("#"):
        raise SchemaRefused("$ref", w, f"{_short(ref)} is not a same-document reference: only '#' and '#/...' "
                            "JSON pointers are allowed (nothing is ever fetched)")
    fragment = unquote(ref[1:])
    if fragment and not fragment.startswith("/"):
        raise SchemaRefused("$ref", w, f"{_short(ref)} is an anchor reference: only '#' and '#/...' JSON pointers are allowed")
    target = ref_tokens(ref)
    if target not in nodes:
        raise SchemaRefused("$ref", w, f"{_short(ref)} does not resolve to a subschema of this document")
    return target


def _short(value: str, limit: int = 120) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _inplace_edges(node: Any, path: Pointer, nodes: dict[Pointer, Any]) -> list[tuple[str, Pointer]]:
    """(keyword, target path) of the subschemas ``node`` applies to the same instance."""
    if not isinstance(node, dict):
        return []
    edges: list[tuple[str, Pointer]] = []
    if "$ref" in node:
        edges.append(("$ref", _parse_ref(node["$ref"], path, nodes)))
    for key in _INPLACE_LIST:
        if isinstance(node.get(key), list):
            edges.extend((key, (*path, key, str(i))) for i, sub in enumerate(node[key]) if isinstance(sub, dict))
    for key in _INPLACE_ONE:
        if isinstance(node.get(key), dict):
            edges.append((key, (*path, key)))
    return edges


def _check_cycles_and_expansion(nodes: dict[Pointer, Any]) -> None:
    edges = {path: _inplace_edges(node, path, nodes) for path, node in nodes.items()}
    size: dict[Pointer, int] = {}
    on_stack: dict[Pointer, int] = {}
    for start in nodes:
        if start in size:
            continue
        # Iterative DFS: (path, index of the next edge to follow).
        stack: list[tuple[Pointer, int]] = [(start, 0)]
        trail: list[Pointer] = [start]
        on_stack[start] = 0
        while stack:
            path, i = stack[-1]
            out = edges[path]
            if i < len(out):
                stack[-1] = (path, i + 1)
                keyword, target = out[i]
                if target in on_stack:
                    cycle = trail[on_stack[target]:] + [target]
                    raise SchemaRefused(
                        keyword, pointer_str(path),
                        "reference cycle that consumes no input: " + " -> ".join(pointer_str(p) or "#" for p in cycle),
                    )
                if target not in size:
                    on_stack[target] = len(trail)
                    trail.append(target)
                    stack.append((target, 0))
                continue
            stack.pop()
            trail.pop()
            del on_stack[path]
            total = 1 + sum(size[t] for _, t in out)
            if total > MAX_INPLACE_EXPANSION:
                raise SchemaRefused(
                    out[0][0] if out else "$ref", pointer_str(path),
                    f"$ref/allOf/anyOf/oneOf expand to more than {MAX_INPLACE_EXPANSION} subschemas here "
                    "(every instance value would be checked against each)",
                )
            size[path] = total


def _dialect(uri: Any) -> int | None:
    """The draft a ``$schema`` URI names (4, 6, 7, 2019, 2020), None if unknown."""
    if not isinstance(uri, str):
        return None
    rest = uri.removesuffix("#")
    for scheme in ("https://", "http://"):
        if rest.startswith(scheme):
            return _DIALECTS.get(rest[len(scheme):])
    return None


def _has_ref(node: Any) -> bool:
    nodes = _collect(node)
    return any(isinstance(n, dict) and "$ref" in n for n in nodes.values())


def _upgrade_node(node: dict[str, Any], draft: int, path: Pointer) -> dict[str, Any]:
    """One subschema rewritten in 2020-12 terms (same meaning), base-URI keywords dropped where inert."""
    out = dict(node)
    out.pop(APPROXIMATE_FORMAT, None)  # an annotation from a caller; ours is added after this check
    ids = ("$id", "id") if draft == 4 else ("$id",)
    for key in ids:
        if key in out and (key == "$id" or isinstance(out[key], str)):
            # At the root, or with no $ref beneath it, an id changes nothing: every reference
            # allowed is a same-document '#/...' pointer, resolved against this document.
            # Beneath a nested id a '#/...' pointer means *that* subschema's root: refused.
            if path and _has_ref(out):
                raise SchemaRefused(key, pointer_str(path), "a nested base URI with references beneath it is not "
                                    "supported (they would resolve against it); inline it or move it to $defs")
            del out[key]
    if draft <= 2019 and isinstance(out.get("items"), list):  # tuple form -> prefixItems
        out["prefixItems"] = out.pop("items")
        if "additionalItems" in out:
            out["items"] = out.pop("additionalItems")
    elif draft <= 2019:
        out.pop("additionalItems", None)  # ignored by its draft unless items is a tuple
    if draft <= 7 and isinstance(out.get("dependencies"), dict):
        deps = out.pop("dependencies")
        required = {k: v for k, v in deps.items() if isinstance(v, list)}
        schemas = {k: v for k, v in deps.items() if not isinstance(v, list)}
        if required:
            out["dependentRequired"] = required
        if schemas:
            out["dependentSchemas"] = schemas
    if draft == 4:
        for bound, exclusive in (("maximum", "exclusiveMaximum"), ("minimum", "exclusiveMinimum")):
            flag = out.get(exclusive)
            if isinstance(flag, bool):
                del out[exclusive]
                if flag and bound in out:
                    out[exclusive] = out.pop(bound)
    return out


def upgrade_schema(schema: Any, draft: int) -> Any:
    """``schema`` as 2020-12 reads the same constraint: draft-04..2019-09 forms translated, inert ids removed.

    Why: 41% of MaskBench's real-world schemas name draft-04 (3,765 + 322 of
    11,306), and read as 2020-12 some of their keywords would *change
    meaning* silently (``exclusiveMaximum: true``, tuple ``items``,
    ``dependencies``) -- refusing them all (as before) left most real
    schemas unserved. Translated once here, the grammar, the output
    validator and the lint all see the same 2020-12 schema.
    """
    def walk(node: Any, path: Pointer) -> Any:
        if not isinstance(node, dict):
            return node
        node = _upgrade_node(node, draft, path)
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DATA:
                out[key] = value
            elif key in _MAPS and isinstance(value, dict):
                out[key] = {name: walk(sub, (*path, key, name)) for name, sub in value.items()}
            elif isinstance(value, dict):
                out[key] = walk(value, (*path, key))
            elif isinstance(value, list):
                out[key] = [walk(sub, (*path, key, str(i))) for i, sub in enumerate(value)]
            else:
                out[key] = value
        return out

    return walk(schema, ())


def _check_meta(schema: Any) -> None:
    """The schema must be a JSON Schema: jsonschema-rs's bundled 2020-12 meta-schema, nothing fetched.

    jsonschema-rs, not python-jsonschema: ~1000x faster on a large schema
    (10k properties: 2.5 ms vs 2.2 s), and a 1 MB hostile schema must not
    cost seconds of the worker. Format assertions are off, so a regex
    dialect is judged by the backend, not here.
    """
    import jsonschema_rs

    try:
        jsonschema_rs.meta.validate(schema)
    except jsonschema_rs.ValidationError as error:
        path = tuple(str(p) for p in error.instance_path)
        keyword = path[-1] if path else "$schema"
        message = error.message if len(error.message) <= 200 else error.message[:200] + "…"
        raise SchemaRefused(keyword, pointer_str(path), f"not a valid JSON Schema: {message}") from None


def check_schema(schema: Any) -> Any:
    """The schema as every library will read it (2020-12, no ``$schema``), or :class:`SchemaRefused`.

    Refused unless ``schema`` is self-contained, finite and a JSON Schema
    (see the module docstring); a known older draft is translated first
    (:func:`upgrade_schema`). Pure: nothing is fetched, resolved outside the
    document, or compiled.
    """
    if isinstance(schema, bool):
        return schema
    if not isinstance(schema, dict):
        raise InvalidRequest(f"a JSON schema must be an object, got {type(schema).__name__}")
    draft = 2020
    for path, node in _collect(schema).items():
        if isinstance(node, dict) and "$schema" in node:
            if path:
                raise SchemaRefused("$schema", pointer_str(path), "only allowed at the root")
            found = _dialect(node["$schema"])
            if found is None:
                raise SchemaRefused(
                    "$schema", "",
                    f"{_short(str(node['$schema']))} is not a known dialect; omit it, or name draft 2020-12, "
                    "2019-09, 07, 06 or 04 (it is never fetched)",
                )
            draft = found
    try:
        clean = upgrade_schema({k: v for k, v in schema.items() if k != "$schema"}, draft)
    except RecursionError:
        raise InvalidRequest("the schema is nested too deeply") from None
    nodes = _collect(clean)
    for path, node in nodes.items():
        if not isinstance(node, dict):
            continue
        for keyword, reason in _RESOLUTION_KEYWORDS.items():
            if keyword in node:
                raise SchemaRefused(keyword, pointer_str(path), reason)
    _check_cycles_and_expansion(nodes)
    _check_meta(clean)
    return clean


_CHECKED: OrderedDict[str, Any] = OrderedDict()
_CHECKED_LOCK = threading.Lock()


def sanitize_schema(schema: Any, key: str | None = None) -> Any:
    """:func:`check_schema`, then the schema without ``$schema`` (read as 2020-12 everywhere).

    Returns ``schema`` itself when there was nothing to remove. ``key`` (the
    spec's cache key) memoizes the verdict, so a repeated schema -- the IR
    schema on every request -- costs a dict lookup.
    """
    if key is not None:
        with _CHECKED_LOCK:
            if key in _CHECKED:
                _CHECKED.move_to_end(key)
                return _CHECKED[key]
    clean = check_schema(schema)
    if isinstance(clean, dict) and isinstance(schema, dict) and clean.keys() == schema.keys() and clean is not schema \
            and json.dumps(clean, sort_keys=True) == json.dumps(schema, sort_keys=True):
        clean = schema  # nothing changed: callers keep the spec (and its cached key)
    if key is not None:
        with _CHECKED_LOCK:
            _CHECKED[key] = clean
            while len(_CHECKED) > 256:
                _CHECKED.popitem(last=False)
    return clean
