"""Enforced mode: a looser grammar for what a backend cannot express, then the full schema by validation.

The lint (:mod:`.lint`) refuses a keyword the chosen backend would not
enforce -- ``not``, ``if``/``then``/``else``, ``uniqueItems``, ``contains``,
dependencies, ``unevaluated*``, an unknown ``format``, llguidance's and
xgrammar's ``oneOf`` ... Refusing is safe but leaves the caller without an
answer. Every one of those keywords only *narrows* what is valid, so
removing it gives a grammar whose language is a superset of the schema's:
every valid instance is still accepted, and the ones the grammar lets
through that the schema does not are caught by the reference validator
(jsonschema-rs) on the full schema, then resampled (the service does that,
and says ``enforcement: grammar+validation``).

:func:`relax_schema` returns the looser schema and what it did, one
:class:`Relaxation` per keyword and JSON pointer. Some rewrites keep the
meaning exactly (``oneOf`` of mutually exclusive branches as ``anyOf``, an
``enum`` filtered by its sibling constraints, ``2.0`` as ``2``); those are
marked ``exact`` and need no validation. Never relaxed, so still refused by
name: anything of the schema guard (references, ``$id``, cycles, dialect
machinery), xgrammar's optional-property limits (a compile-time bound), a
reference into a part that would be removed, and any keyword whose removal
would lift a bound the grammar does enforce (lengths, item counts, ``enum``,
``required``, ``additionalProperties``) -- but ``minLength``/``maxLength``
beside a ``pattern``, which xgrammar ignores there and llguidance can get
wrong (:data:`.lint._LENGTH_BESIDE_PATTERN`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any, Callable

from lift_sys.errors import UnsupportedSchemaError
from lift_sys.generation.grammar.schema_guard import MISSING, follow, pointer_tokens, ref_tokens
from lift_sys.generation.grammar import formats
from lift_sys.generation.grammar.type_split import splits_by_type
from lift_sys.generation.grammar.xgrammar_regex import xgrammar_pattern_gap
from lift_sys.generation.grammar.lint import (REF_BLIND, XGRAMMAR_LENGTH_ESCAPES, XGRAMMAR_NUMBER_BOUND, _BOUND_KW, _EXTRA, _LENGTH_BESIDE_PATTERN, _LOOKAROUND, _NEVER, _NUMBER_KW,
                                             _STRING_KW, ENUM_BLIND, _escape, applicator_siblings,
                                             values_have_type)

# Keywords whose removal only loosens the grammar (never a reference, never a bound the grammar enforces).
RELAXABLE = frozenset(set(_NEVER) - {"$dynamicRef", "$recursiveRef"}) | {
    "oneOf", "propertyNames", "minProperties", "maxProperties", "patternProperties", "multipleOf", "format",
}
# Named by a backend's *compile* error (after the lint passed): relaxed the same way, one at a time.
COMPILE_RELAXABLE = frozenset({"pattern", "format", "patternProperties", "multipleOf", "oneOf"})
MAX_COMPILE_RELAXATIONS = 4
_MAX_INLINED = 64_000  # a schema's $ref targets copied beside their siblings, in bytes of JSON (xgrammar)

_KNOWN = frozenset({
    "additionalProperties", "items", "contains", "propertyNames", "unevaluatedItems", "unevaluatedProperties",
    "additionalItems", "not", "if", "then", "else", "anyOf", "oneOf", "allOf", "prefixItems", "properties",
    "patternProperties", "$defs", "definitions", "dependentSchemas", "dependencies", "dependentRequired", "enum",
    "const", "default", "examples", "required", "type",
})
_APPLICATORS = ("allOf", "anyOf", "oneOf", "not", "if", "then", "else", "$ref", "dependentSchemas")


@dataclass(frozen=True)
class Relaxation:
    """One keyword the grammar does not enforce (``exact``: rewritten with the same meaning)."""

    keyword: str
    pointer: str
    reason: str
    exact: bool = False

    def to_dict(self) -> dict[str, str]:
        return {"keyword": self.keyword, "pointer": self.pointer or "/", "reason": self.reason}


class _NotRelaxable(Exception):
    pass


def _ref_targets(schema: Any) -> list[tuple[str, ...]]:
    """Every same-document ``$ref`` target in the document (the guard allows no other kind)."""
    out: list[tuple[str, ...]] = []
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            target = ref_tokens(node.get("$ref")) if "$ref" in node else None
            if target is not None:
                out.append(target)
            stack.extend(v for v in node.values() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return out


def _ptr(path: tuple[str, ...]) -> str:
    return "".join("/" + _escape(t) for t in path)


class _Relaxer:
    def __init__(self, root: dict[str, Any], backend: str) -> None:
        self.root = root
        self.backend = backend
        self.extra = _EXTRA.get(backend, {})
        self.exact_formats = formats.EXACT.get(backend, frozenset())
        self.superset_formats = formats.SUPERSET.get(backend, frozenset())
        self.refs = _ref_targets(root)
        self.done: list[Relaxation] = []
        self._validity: Callable[[Any, Any], bool] | None = None
        self._inlined = 0  # bytes of $ref targets copied in (xgrammar), bounded by _MAX_INLINED

    # -- helpers
    def note(self, keyword: str, path: tuple[str, ...], reason: str, exact: bool = False) -> None:
        self.done.append(Relaxation(keyword, _ptr(path), reason, exact))

    def referenced_under(self, path: tuple[str, ...]) -> bool:
        n = len(path)
        return any(t[:n] == path for t in self.refs)

    def remove(self, node: dict[str, Any], path: tuple[str, ...], keyword: str, reason: str) -> None:
        if keyword not in node:
            return
        if self.referenced_under((*path, keyword)):
            raise _NotRelaxable(keyword, _ptr(path), "a $ref points into it, so it cannot be left to validation")
        del node[keyword]
        self.note(keyword, path, reason)

    def check(self, value: Any, sub: Any) -> bool | None:
        """Whether ``value`` is valid against ``sub`` (in this document), None if the validator cannot tell."""
        if self._validity is None:
            from lift_sys.generation.grammar.conformance import subschema_validity

            self._validity = subschema_validity(self.root_original)
        try:
            return bool(self._validity(value, sub))
        except Exception:  # noqa: BLE001 - an unreadable subschema
            return None

    def valid(self, value: Any, sub: Any) -> bool:
        if self._validity is None:
            from lift_sys.generation.grammar.conformance import subschema_validity

            self._validity = subschema_validity(self.root_original)
        try:
            return self._validity(value, sub)
        except Exception:  # noqa: BLE001 - an unreadable sibling: keep the value, validation decides
            return True

    # -- the walk
    def walk(self, node: Any, path: tuple[str, ...]) -> None:
        if not isinstance(node, dict):
            return
        self.relax_node(node, path)
        for key in ("additionalProperties", "items", "contains", "propertyNames", "unevaluatedItems",
                    "unevaluatedProperties", "additionalItems", "not", "if", "then", "else"):
            if isinstance(node.get(key), dict):
                self.walk(node[key], (*path, key))
        for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
            if isinstance(node.get(key), list):
                for i, sub in enumerate(node[key]):
                    self.walk(sub, (*path, key, str(i)))
        for key in ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas"):
            if isinstance(node.get(key), dict):
                for name, sub in node[key].items():
                    self.walk(sub, (*path, key, name))
        for key, value in list(node.items()):  # a subschema under a key no draft defines, reached by a $ref
            if key not in _KNOWN and self.referenced_under((*path, key)):
                self.walk_unknown(value, (*path, key))

    def walk_unknown(self, value: Any, path: tuple[str, ...]) -> None:
        """Inside an unknown key: a referenced subschema is walked as one, the rest is data."""
        if isinstance(value, dict) and path in self.refs:
            self.walk(value, path)
            return
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for name, sub in list(items):
            if self.referenced_under((*path, str(name))):
                self.walk_unknown(sub, (*path, str(name)))

    def relax_node(self, node: dict[str, Any], path: tuple[str, ...]) -> None:
        xgr = self.backend == "xgrammar"
        # What evaluates items / properties in place, read *before* anything is removed: an ``if`` left to
        # validation still made items "evaluated" (JSTS unevaluatedItems#14: reading unevaluatedItems as
        # items after removing the if/then/else rejected the valid ["foo", "bar", "then"]).
        in_place = {k for k in (*_APPLICATORS, "contains") if k in node}
        # Exact rewrites first: decimal counts, enum filtered by its siblings (xgrammar ignores siblings of enum).
        for keyword in ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties",
                        "minContains", "maxContains"):
            value = node.get(keyword)
            if isinstance(value, float) and value.is_integer():
                node[keyword] = int(value)
                self.note(keyword, path, "a count written as a decimal, read as the integer", exact=True)
        if xgr:
            self.xgrammar_enum(node, path)
            for _ in range(4):  # a merged allOf may bring a oneOf, a oneOf beside anyOf becomes an allOf entry
                if "oneOf" in node:
                    self.one_of(node, path)
                if not (isinstance(node.get("allOf"), list) and len(node["allOf"]) > 1):
                    break
                self.xgrammar_allof(node, path)
            for _ in range(4):  # a target that is itself a $ref with keywords beside it
                if "$ref" not in node:
                    break
                self.xgrammar_ref(node, path)
            for applicator in ("anyOf", "oneOf", "allOf"):
                if applicator_siblings(node, applicator):
                    # the keywords beside it are what xgrammar keeps if the applicator goes: a looser grammar
                    self.remove(node, path, applicator, f"xgrammar reads only the {applicator} beside other "
                                "keywords; it is checked by validation")
            if isinstance(node.get("allOf"), list) and node["allOf"] and \
                    any(k in node for k in ("anyOf", "oneOf", "$ref", "not", "if")):
                # Measured (JSTS 2020-12 unevaluatedProperties#31): xgrammar 0.2.8 accepted {"bar": 1} against
                # allOf[{properties: {foo}, additionalProperties: false}] beside an anyOf -- a fail-open.
                self.note("allOf", path, "xgrammar may drop an allOf beside another applicator; checked by validation")
        # Keywords no grammar enforces.
        if node.get("uniqueItems") is False:
            del node["uniqueItems"]
        self.remove(node, path, "not", "negation is checked by validation")
        for keyword in ("if", "then", "else"):
            self.remove(node, path, keyword, "conditional schemas are checked by validation")
        self.remove(node, path, "uniqueItems", "uniqueness is checked by validation")
        for keyword in ("contains", "minContains", "maxContains"):
            self.remove(node, path, keyword, "'contains' is checked by validation")
        for keyword in ("dependentRequired", "dependentSchemas", "dependencies"):
            self.remove(node, path, keyword, "dependencies between properties are checked by validation")
        self.unevaluated(node, path, in_place)
        fmt = node.get("format")
        if "format" in node and not (isinstance(fmt, str) and fmt in self.exact_formats):
            if isinstance(fmt, str) and fmt in self.superset_formats:
                # the grammar keeps steering to a date; the validator rejects the few invalid ones it admits
                node[formats.APPROXIMATE_FORMAT] = node.pop("format")
                self.note("format", path, f"the {self.backend} grammar admits a few invalid {fmt!r} values; "
                          "checked by validation")
            elif isinstance(fmt, str) and fmt in formats.VALIDATED:
                self.remove(node, path, "format", f"format {fmt!r} is checked by validation")
            else:
                self.remove(node, path, "format", f"format {fmt!r} is unknown: an annotation, which no validator "
                            "checks")
        # Backend-specific.
        if "oneOf" in node and "oneOf" in self.extra:
            self.one_of(node, path)
        for keyword in ("propertyNames", "minProperties", "maxProperties", "multipleOf"):
            if keyword in self.extra:
                self.remove(node, path, keyword, f"not enforced by {self.backend}; checked by validation")
        if "patternProperties" in node and "patternProperties" in self.extra:
            self.pattern_properties(node, path)
        if xgr:
            self.xgrammar_untyped(node, path)
        elif "pattern" in node:
            for keyword in ("minLength", "maxLength"):
                why = _LENGTH_BESIDE_PATTERN.get(self.backend, "string length beside a pattern")
                self.remove(node, path, keyword, why + "; checked by validation")

    def unevaluated(self, node: dict[str, Any], path: tuple[str, ...], in_place: set[str]) -> None:
        """``unevaluated*`` with nothing beside it to evaluate in place is ``additionalProperties`` /
        ``items`` (exact); otherwise it is left to validation. ``contains`` evaluates the items it
        matches (2020-12), so it counts for ``unevaluatedItems`` (JSTS unevaluatedItems#21, #23, #24)."""
        props_in_place = bool(in_place - {"contains"})
        if "unevaluatedProperties" in node and not props_in_place and "additionalProperties" not in node \
                and "patternProperties" not in node and not self.referenced_under((*path, "unevaluatedProperties")):
            node["additionalProperties"] = node.pop("unevaluatedProperties")  # no applicator: the same thing
            self.note("unevaluatedProperties", path, "read as additionalProperties (no applicator beside it)", True)
        else:
            self.remove(node, path, "unevaluatedProperties", "checked by validation")
        if "unevaluatedItems" in node and not in_place and "items" not in node \
                and not self.referenced_under((*path, "unevaluatedItems")):
            node["items"] = node.pop("unevaluatedItems")
            self.note("unevaluatedItems", path, "read as items (no applicator beside it)", True)
        else:
            self.remove(node, path, "unevaluatedItems", "checked by validation")

    def one_of(self, node: dict[str, Any], path: tuple[str, ...]) -> None:
        branches = node["oneOf"]
        if self.referenced_under((*path, "oneOf")):
            raise _NotRelaxable("oneOf", _ptr(path), "a $ref points into it, so it cannot be left to validation")
        exact = isinstance(branches, list) and (len(branches) <= 1 or _exclusive(branches))
        del node["oneOf"]
        if "anyOf" in node:
            node.setdefault("allOf", []).append({"anyOf": branches})
        else:
            node["anyOf"] = branches
        self.note("oneOf", path, "branches are mutually exclusive: read as anyOf" if exact else
                  "read as anyOf by the grammar; exclusivity checked by validation", exact)

    def pattern_properties(self, node: dict[str, Any], path: tuple[str, ...]) -> None:
        if self.referenced_under((*path, "patternProperties")):
            raise _NotRelaxable("patternProperties", _ptr(path), "a $ref points into it")
        patterns = [s for s in node["patternProperties"].values()]
        del node["patternProperties"]
        ap = node.get("additionalProperties")
        if ap is False:
            node["additionalProperties"] = patterns[0] if len(patterns) == 1 else {"anyOf": patterns}
        elif isinstance(ap, dict):
            node["additionalProperties"] = {"anyOf": [ap, *patterns]}
        self.note("patternProperties", path, "read as additional properties; the patterns are checked by validation")

    def xgrammar_enum(self, node: dict[str, Any], path: tuple[str, ...]) -> None:
        """Keep only the listed values that meet the keywords beside them; those keywords go (exact).

        xgrammar writes only the values of an ``enum``/``const`` and ignores
        everything beside it (:data:`.lint.ENUM_BLIND`), so the values are
        checked against the rest of the subschema here, by the reference
        validator. If a value cannot be checked, or a reference points into
        what would go, the node is left to the lint's refusal.
        """
        if "enum" not in node and "const" not in node:
            return
        siblings = [k for k in node if k in _STRING_KW + _NUMBER_KW + ENUM_BLIND + (
            "minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties")]
        if "type" in node and not values_have_type(node):
            siblings.append("type")
        if not siblings or any(self.referenced_under((*path, k)) for k in siblings):
            return
        rest = {k: v for k, v in node.items() if k not in ("enum", "const")}
        values = [node["const"]] if "const" in node else node["enum"]
        if not isinstance(values, list):
            return
        verdicts = [self.check(v, rest) for v in values]
        if None in verdicts:
            return  # a sibling the validator cannot read: the lint's refusal stands
        kept = [v for v, ok in zip(values, verdicts) if ok]
        if not kept:
            return  # unsatisfiable: the lint's refusal stands
        if "const" not in node:
            node["enum"] = kept
        for k in siblings:
            del node[k]
        self.note(siblings[0], path, "constraints beside enum/const: the values that meet them are kept", True)

    def xgrammar_allof(self, node: dict[str, Any], path: tuple[str, ...]) -> None:
        subs = node.get("allOf")
        if not (isinstance(subs, list) and len(subs) > 1):
            return
        if self.referenced_under((*path, "allOf")) or not all(isinstance(s, dict) for s in subs):
            raise _NotRelaxable("allOf", _ptr(path), "xgrammar drops an allOf of more than one subschema")
        del node["allOf"]
        merged = False
        for sub in subs:
            for key, value in sub.items():
                if key not in node:
                    node[key] = copy.deepcopy(value)
                elif key == "properties" and isinstance(node[key], dict) and isinstance(value, dict):
                    for name, prop in value.items():
                        node[key].setdefault(name, copy.deepcopy(prop))
                elif key == "required" and isinstance(node[key], list) and isinstance(value, list):
                    node[key] = node[key] + [r for r in value if r not in node[key]]
                elif node[key] != value:
                    merged = True  # a conflicting keyword: the first one kept, the other left to validation
        self.refs = _ref_targets(self.root)
        self.note("allOf", path, "merged into one subschema" + ("; conflicting keywords checked by validation"
                                                                  if merged else "; checked by validation"))

    def xgrammar_ref(self, node: dict[str, Any], path: tuple[str, ...]) -> None:
        """A ``$ref`` with keywords beside it: its target merged in, or the keywords left to validation.

        Measured (xgrammar 0.2.8): the keywords beside a ``$ref`` are dropped
        -- ``{"$ref": "#/$defs/p", "properties": {"name": {"type": "string"}},
        "additionalProperties": false}`` accepted ``{"name": 1}`` and ``{"zzz":
        1}`` (a fail-open the suites had not hit), and wrote ``name`` only after
        the target's properties (MaskBench Github_hard---o32922, a merged
        ``allOf``). A target that is small and not an ancestor is copied in and
        merged as an ``allOf`` is (a looser grammar: conflicts go to
        validation); otherwise the keywords beside it go to validation and the
        grammar is the target's alone, which admits every valid value.
        """
        ref = node.get("$ref")
        beside = [k for k in node if k in REF_BLIND]
        if not isinstance(ref, str) or not beside:
            return
        target_path = ref_tokens(ref)
        target = follow(self.root, target_path) if target_path is not None else MISSING
        if isinstance(target, dict) and target_path is not None and path[:len(target_path)] != target_path \
                and self._inlined + len(json.dumps(target)) <= _MAX_INLINED and not self.referenced_under((*path, "$ref")):
            self._inlined += len(json.dumps(target))
            del node["$ref"]
            node["allOf"] = [*(node.get("allOf") or [])] if isinstance(node.get("allOf"), list) else []
            node["allOf"].append(copy.deepcopy(target))
            if len(node["allOf"]) == 1:
                node["allOf"].append({})
            self.xgrammar_allof(node, path)
            self.done[-1] = Relaxation("$ref", _ptr(path), "xgrammar drops the keywords beside a $ref: its target "
                                       "merged in; checked by validation")
            return
        for keyword in beside:
            self.remove(node, path, keyword, "xgrammar drops the keywords beside a $ref; checked by validation")

    def xgrammar_untyped(self, node: dict[str, Any], path: tuple[str, ...]) -> None:
        for keyword in ("minLength", "maxLength"):  # a caller's schema: never compiled into xgrammar
            self.remove(node, path, keyword, XGRAMMAR_LENGTH_ESCAPES + "; checked by validation")
        kinds = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
        for keyword in _BOUND_KW:
            value = node.get(keyword)
            if "number" in kinds or None in kinds:  # untyped: split by type, a number branch among them
                self.remove(node, path, keyword, XGRAMMAR_NUMBER_BOUND + "; checked by validation")
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and abs(value) >= 2 ** 63:
                self.remove(node, path, keyword, "xgrammar cannot compile a bound beyond 64-bit integers; "
                            "checked by validation")
        if "type" not in node and not splits_by_type(node, top=path == ()):  # a split one has its types
            for keyword in _STRING_KW + _NUMBER_KW + ("minItems", "maxItems"):
                self.remove(node, path, keyword, "xgrammar ignores it without a 'type'; checked by validation")
            if "required" in node and "properties" not in node:
                self.remove(node, path, "required", "xgrammar ignores it without a 'type'; checked by validation")
        required = node.get("required")
        if isinstance(required, list) and required:
            props = node.get("properties")
            if props is None:
                props = node["properties"] = {}
            if isinstance(props, dict):
                ap = node.get("additionalProperties", True)
                patterned = any(r.keyword == "patternProperties" and r.pointer == _ptr(path) for r in self.done)
                for name in required:
                    if name not in props and ap is not False:
                        props[name] = copy.deepcopy(ap) if isinstance(ap, dict) else {}
                        self.note("required", path, f"{name!r} declared in properties (xgrammar ignores it otherwise)",
                                  exact=not patterned)
        if isinstance(node.get("pattern"), str) and _LOOKAROUND.search(node["pattern"]):
            self.remove(node, path, "pattern", "xgrammar ignores lookaround assertions; checked by validation")
        elif isinstance(node.get("pattern"), str) and xgrammar_pattern_gap(node["pattern"]):
            self.remove(node, path, "pattern", xgrammar_pattern_gap(node["pattern"]) + "; checked by validation")
        if "pattern" in node or "format" in node or formats.APPROXIMATE_FORMAT in node:
            for keyword in ("minLength", "maxLength"):
                self.remove(node, path, keyword, "xgrammar ignores string length beside a pattern or format; checked by validation")


def _type_set(branch: Any) -> set[str] | None:
    t = branch.get("type") if isinstance(branch, dict) else None
    types = {t} if isinstance(t, str) else set(t) if isinstance(t, list) else None
    if types and "integer" in types:
        types.add("number")
    if types and "number" in types:
        types.add("integer")
    return types


def _discriminator(branch: Any) -> dict[str, set[str]]:
    """property name -> the values a branch requires it to have (const/enum of a required property)."""
    out: dict[str, set[str]] = {}
    if not isinstance(branch, dict) or not isinstance(branch.get("properties"), dict):
        return out
    required = branch.get("required") if isinstance(branch.get("required"), list) else []
    for name in required:
        prop = branch["properties"].get(name)
        if isinstance(prop, dict) and "const" in prop:
            out[name] = {json.dumps(prop["const"], sort_keys=True)}
        elif isinstance(prop, dict) and isinstance(prop.get("enum"), list):
            out[name] = {json.dumps(v, sort_keys=True) for v in prop["enum"]}
    return out


def _exclusive(branches: list[Any]) -> bool:
    """No instance can match two branches: disjoint types, or a required discriminator with disjoint values."""
    for i, a in enumerate(branches):
        for b in branches[i + 1:]:
            ta, tb = _type_set(a), _type_set(b)
            if ta and tb and not (ta & tb):
                continue
            da, db = _discriminator(a), _discriminator(b)
            if any(k in db and not (v & db[k]) for k, v in da.items()):
                continue
            return False
    return True


def relax_schema(schema: Any, backend: str) -> tuple[Any, list[Relaxation]]:
    """The looser schema ``backend`` can compile, and each relaxation (keyword + pointer).

    ``schema`` is as the guard returns it (2020-12, self-contained). Raises
    :class:`UnsupportedSchemaError` naming keyword and pointer when a part
    cannot be relaxed (a ``$ref`` into it). The result still goes through the
    lint: whatever is not relaxable is refused there, by name.
    """
    if not isinstance(schema, dict):
        return schema, []
    work = copy.deepcopy(schema)
    relaxer = _Relaxer(work, backend)
    relaxer.root_original = schema
    try:
        relaxer.walk(work, ())
    except _NotRelaxable as exc:
        keyword, pointer, reason = exc.args
        raise UnsupportedSchemaError(keyword, pointer, backend, reason) from None
    return work, relaxer.done


def relax_at(schema: Any, keyword: str, pointer: str, backend: str) -> tuple[Any, Relaxation] | None:
    """Drop (or, for oneOf/patternProperties, rewrite) one keyword a backend's compiler refused; None if not allowed."""
    if keyword not in COMPILE_RELAXABLE or not isinstance(schema, dict):
        return None
    path = pointer_tokens(pointer) if pointer != "/" else ()
    work = copy.deepcopy(schema)
    node: Any = follow(work, path)
    if node is MISSING:
        return None
    if not isinstance(node, dict) or keyword not in node:
        return None
    relaxer = _Relaxer(work, backend)
    relaxer.root_original = schema
    try:
        if keyword == "oneOf":
            relaxer.one_of(node, path)
        elif keyword == "patternProperties":
            relaxer.pattern_properties(node, path)
        else:
            relaxer.remove(node, path, keyword, f"{backend} cannot compile it; checked by validation")
    except _NotRelaxable:
        return None
    return work, relaxer.done[-1]
