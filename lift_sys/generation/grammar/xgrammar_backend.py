"""xgrammar backend: the engine SGLang uses by default (extra: ``lift-sys[xgrammar]``).

Imported lazily: xgrammar pulls in torch and transformers at import. The
tokenizer info is built from raw token bytes (``VocabType.RAW``), so no HF
tokenizer is needed even here.

Fast-forward is off for this backend: xgrammar only offers a forced
*string*, and re-tokenizing that string can pick token boundaries the model
would never produce (the reason SGLang retired jump-forward decoding).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np

from lift_sys.errors import GrammarCompileError
from lift_sys.generation.grammar.base import CompiledGrammar, GrammarSpec, Vocabulary, clean_backend_message, new_bitmask
from lift_sys.generation.grammar.formats import restore_formats
from lift_sys.generation.grammar.lint import lint_spec
from lift_sys.generation.grammar.schema_guard import ref_tokens
from lift_sys.generation.grammar.type_split import TYPE_KEYWORDS, retarget, split_by_type, splits_by_type
from lift_sys.generation.grammar.xgrammar_regex import search_as_match


_ANY = "x-lift-any-json"
_ANY_REF = {"$ref": f"#/$defs/{_ANY}"}
_ANY_DEF = {"anyOf": [
    {"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "null"},
    {"type": "array", "items": _ANY_REF}, {"type": "object", "additionalProperties": _ANY_REF},
]}
_VALUE_KEYS = ("items", "additionalItems", "additionalProperties", "unevaluatedItems", "unevaluatedProperties")
_LIST_KEYS = ("prefixItems", "anyOf", "oneOf", "allOf")
_MAP_KEYS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
# Keywords that constrain a value; a subschema with none of them accepts any value.
_CONSTRAINING = frozenset({"type", "enum", "const", "$ref", "$dynamicRef", "$recursiveRef", "anyOf", "oneOf", "allOf",
                           "not", "if", "then", "else", *TYPE_KEYWORDS["object"], *TYPE_KEYWORDS["array"],
                           *TYPE_KEYWORDS["string"], *TYPE_KEYWORDS["number"]})


ORDER_MARK = "x-lift-order"


def keep_property_orders(schema: Any) -> Any:
    """``schema`` with each object subschema's property order written into it as an unknown keyword.

    Measured (xgrammar 0.2.8): within one schema it reuses one rule for
    object subschemas that are equal as *sets*, in the order of the first one
    it saw. So ``{"properties": {b, a}}`` was written ``a, b`` beside a
    ``{"properties": {a, b}}`` (MaskBench Github_hard---o7313, 8 more in the
    full run): valid instances rejected in the order their schema gives. An
    unknown keyword holding the order keeps them apart (``title`` and
    ``description`` do not); it means nothing to a validator. Exact: no
    language changes.
    """
    if isinstance(schema, list):
        return [keep_property_orders(v) for v in schema]
    if not isinstance(schema, dict):
        return schema
    node: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _MAP_KEYS and isinstance(value, dict):  # names, then subschemas
            node[key] = {name: keep_property_orders(sub) for name, sub in value.items()}
        else:
            node[key] = value if key in _DATA_KEYS else keep_property_orders(value)
    props = node.get("properties")
    if isinstance(props, dict) and len(props) > 1:
        node[ORDER_MARK] = json.dumps(list(props))
    return node


def spell_out_any(schema: Any) -> Any:
    """The schema as xgrammar reads it right: "any value" spelled out, untyped subschemas split by type.

    Measured (xgrammar 0.2.8, ``separators=(",", ":")``): its built-in any-value
    writes ``[1, 2]`` -- the separators are not applied inside it -- and with
    ``strict_mode`` an absent ``additionalProperties``/``items`` means *none*, so
    ``{"foo": 1}`` was rejected by ``{"type": "object"}``: 126 valid instances of
    the official suite (2020-12) rejected. ``{}``/``true``, and an absent
    ``items``, ``additionalItems`` or ``additionalProperties`` beside an array or
    object schema, all mean "any value": written out as one compact recursive
    ``$def``, they say the same thing in the form every other backend produces.
    An untyped subschema with type-specific keywords becomes one branch per
    type (:mod:`.type_split`); a branch with keywords lives in the root's
    ``$defs`` (xgrammar resolves no ``$ref`` through an array index, so a
    reference into it could not follow an ``anyOf/0``). ``additionalItems``
    without a tuple ``items`` -- which constrains nothing -- goes, and a
    pattern is written as the whole-string match xgrammar reads
    (:mod:`.xgrammar_regex`). Exact: no language changes.
    """
    taken = set(schema.get("$defs") or {}) if isinstance(schema, dict) else set()
    prefix = "x-lift-typed"
    while any(name.startswith(prefix) for name in taken):
        prefix += "-"
    speller = _Speller(prefix, _ref_targets(schema))
    root = speller.spell(schema, (), (), top=True)
    if isinstance(root, dict):
        root = dict(root)
        root["$defs"] = {**(root.get("$defs") or {}), **speller.defs, _ANY: _ANY_DEF}
    return retarget(root, speller.moves)


def _types(node: dict) -> set[str]:
    t = node.get("type")
    return {t} if isinstance(t, str) else set(t) if isinstance(t, list) else set()


Path = tuple[str, ...]
_SPELLED = frozenset({*_VALUE_KEYS, *_LIST_KEYS, *_MAP_KEYS})
_DATA_KEYS = frozenset({"const", "enum", "default", "examples"})


def _ref_targets(schema: Any) -> frozenset[Path]:
    """The paths every same-document ``$ref`` in ``schema`` points at."""
    out: set[Path] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            target = ref_tokens(node["$ref"]) if isinstance(node.get("$ref"), str) else None
            if target is not None:
                out.add(tuple(target))
            stack.extend(v for k, v in node.items() if k not in _DATA_KEYS and isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend(v for v in node if isinstance(v, (dict, list)))
    return frozenset(out)


class _Speller:
    """One pass of :func:`spell_out_any`: the moved paths (old -> new) and the hoisted branches."""

    def __init__(self, prefix: str, targets: frozenset[Path] = frozenset()) -> None:
        self.prefix = prefix
        self.moves: dict[Path, Path] = {}
        self.defs: dict[str, Any] = {}
        self.targets = targets  # every $ref target: one under a key no draft defines is spelled out too
        self.leads = frozenset(t[:i] for t in targets for i in range(1, len(t) + 1))

    def spell(self, node: Any, old: Path, new: Path, top: bool = False) -> Any:
        """``node`` (at ``old`` in the caller's schema, ``new`` in the result) spelled out."""
        if node is True or (isinstance(node, dict) and not any(k in _CONSTRAINING for k in node)):
            # {} or only annotations/unknown keywords: any value. xgrammar's own any-value for an object
            # of unknown keywords took 20 s to compile with a byte vocabulary (MaskBench Github_easy---o58636)
            # (at the root, its definitions go too: nothing that constrains can reach them)
            return dict(_ANY_DEF) if top else _ANY_REF
        if not isinstance(node, dict):
            return node
        if splits_by_type(node, top):
            beside, branches = split_by_type(node)
            out = self.children(beside, old, new)
            out["anyOf"] = []
            for branch, keys in branches:
                if not keys:  # the other types, unconstrained: spelled out like any typed schema
                    out["anyOf"].append(self.spell(branch, old, (*new, "anyOf", str(len(out["anyOf"])))))
                    continue
                name = f"{self.prefix}-{len(self.defs)}"
                self.defs[name] = None  # reserve the name before nested splits take the next ones
                at = ("$defs", name)
                for key in keys:
                    self.moves[(*old, key)] = (*at, key)
                self.defs[name] = self.spell(branch, old, at)
                out["anyOf"].append({"$ref": f"#/$defs/{name}"})
            return out
        node = self.children(dict(node), old, new)
        if isinstance(node.get("pattern"), str):  # xgrammar matches the whole string; JSON Schema searches
            node["pattern"] = search_as_match(node["pattern"]) or node["pattern"]
        if "additionalItems" in node and not isinstance(node.get("items"), list):
            del node["additionalItems"]  # it constrains only what a tuple ``items`` leaves over
        types = _types(node)
        if "array" in types or (not types and ("prefixItems" in node or "items" in node)):
            if "items" not in node:
                node["items"] = _ANY_REF
            elif isinstance(node["items"], list) and "additionalItems" not in node:
                node["additionalItems"] = _ANY_REF
        if "object" in types or (not types and "properties" in node):
            if not any(k in node for k in ("additionalProperties", "patternProperties", "unevaluatedProperties")):
                node["additionalProperties"] = _ANY_REF
        return node

    def children(self, node: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
        """``node`` with every subschema under it spelled out (``old``/``new``: where ``node``'s keywords are)."""
        for key in _VALUE_KEYS:
            if key in node and node[key] is not False:
                node[key] = self.spell(node[key], (*old, key), (*new, key))
        for key in _LIST_KEYS:
            if isinstance(node.get(key), list):
                node[key] = [self.spell(x, (*old, key, str(i)), (*new, key, str(i))) for i, x in enumerate(node[key])]
        if isinstance(node.get("items"), list):  # draft 7 tuple form
            node["items"] = [self.spell(x, (*old, "items", str(i)), (*new, "items", str(i)))
                             for i, x in enumerate(node["items"])]
        for key in _MAP_KEYS:
            if isinstance(node.get(key), dict):
                node[key] = {k: self.spell(v, (*old, key, k), (*new, key, k)) for k, v in node[key].items()}
        for key in node:
            if key not in _SPELLED and key not in _DATA_KEYS and (*old, key) in self.leads:
                node[key] = self.unknown(node[key], (*old, key), (*new, key))
        return node

    def unknown(self, value: Any, old: Path, new: Path) -> Any:
        """Under a key no draft defines: a ``$ref`` target is a subschema (MaskBench Github_hard---o69761's
        ``#/ContextValue``, whose ``{"type": "object"}`` xgrammar wrote with its own ``", "``), the rest data."""
        if old in self.targets:
            return self.spell(value, old, new)
        if isinstance(value, dict):
            return {k: self.unknown(v, (*old, k), (*new, k)) if (*old, k) in self.leads else v
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.unknown(v, (*old, str(i)), (*new, str(i))) if (*old, str(i)) in self.leads else v
                    for i, v in enumerate(value)]
        return value


class XGrammarMatcher:
    def __init__(self, matcher: Any) -> None:
        self._m = matcher
        self._error: str | None = None

    def fill_bitmask(self, bitmask: np.ndarray) -> None:
        # numpy speaks DLPack; xgrammar fills a 2-D (batch, words) view in place.
        self._m.fill_next_token_bitmask(bitmask.reshape(1, -1), 0)

    def accept(self, token_id: int) -> bool:
        try:
            ok = bool(self._m.accept_token(token_id))
        except Exception as exc:  # noqa: BLE001 - a C++ check; never its source location
            ok = False
            self._error = clean_backend_message(exc)
        if not ok and self._error is None:
            self._error = f"token {token_id} rejected by the grammar"
        return ok

    def forced_tokens(self) -> list[int]:
        return []

    def is_finished(self) -> bool:
        return bool(self._m.is_terminated())

    def error(self) -> str | None:
        return self._error


class XGrammarBackend:
    name = "xgrammar"

    def __init__(self) -> None:
        try:
            import xgrammar  # noqa: F401
        except ImportError as exc:
            raise GrammarCompileError(
                "the xgrammar backend is not installed: pip install 'lift-sys[xgrammar]' "
                f"({exc.__class__.__name__}: {exc})"
            ) from exc
        self._compilers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _compiler(self, vocab: Vocabulary) -> Any:
        import xgrammar as xgr

        with self._lock:
            comp = self._compilers.get(vocab.fingerprint)
            if comp is None:
                # Control tokens become empty strings: xgrammar then never
                # admits them inside JSON text; EOS is passed as the stop token.
                encoded = [b"" if t.startswith(b"\xff") else bytes(t) for t in vocab.tokens]
                info = xgr.TokenizerInfo(
                    encoded,
                    xgr.VocabType.RAW,
                    vocab_size=vocab.n_vocab,
                    stop_token_ids=list(vocab.eos_token_ids),
                    add_prefix_space=False,
                )
                comp = xgr.GrammarCompiler(info, max_threads=2, cache_enabled=False)
                self._compilers[vocab.fingerprint] = comp
            return comp

    def lint(self, spec: GrammarSpec) -> None:
        lint_spec(spec, self.name)

    def wire_schema(self, schema: Any) -> Any:
        return keep_property_orders(spell_out_any(restore_formats(schema)))

    def compile(self, spec: GrammarSpec, vocab: Vocabulary) -> CompiledGrammar:
        import xgrammar as xgr

        self.lint(spec)
        compiler = self._compiler(vocab)
        t0 = time.perf_counter()
        try:
            if spec.kind == "json_schema":
                compiled = compiler.compile_json_schema(
                    json.dumps(self.wire_schema(spec.source)), any_whitespace=False, separators=(",", ":"),
                    strict_mode=False
                )
            elif spec.kind == "regex":
                compiled = compiler.compile_regex(spec.source)
            else:
                raise GrammarCompileError("xgrammar takes EBNF, not Lark; use the llguidance backend for lark")
            # The first mask, inside the compile time box: a grammar whose start
            # admits no token at all (a reference loop, an empty language) is a
            # compile error, not a dead end in the middle of decoding.
            probe = xgr.GrammarMatcher(compiled)
            first = new_bitmask(vocab.n_vocab)
            probe.fill_next_token_bitmask(first.reshape(1, -1), 0)
        except GrammarCompileError:
            raise
        except Exception as exc:  # noqa: BLE001 - RuntimeError/ValueError with the reason (and C++ internals, cleaned)
            raise GrammarCompileError(f"xgrammar could not compile the grammar: {clean_backend_message(exc)}") from None
        if not first.any():
            raise GrammarCompileError("xgrammar could not compile the grammar: it admits no output at all "
                                      "(a reference loop, or a language with no string in it)")
        compile_ms = (time.perf_counter() - t0) * 1000

        def factory() -> XGrammarMatcher:
            return XGrammarMatcher(xgr.GrammarMatcher(compiled))

        return CompiledGrammar(self.name, spec.key, vocab.fingerprint, compile_ms, factory)
