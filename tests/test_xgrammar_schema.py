"""How a schema is written for xgrammar: untyped subschemas split by type, patterns as whole-string matches.

Grammar level, byte vocabulary, no model. Each case is a gap measured on
xgrammar 0.2.8 (see :mod:`lift_sys.generation.grammar.type_split` and
:mod:`lift_sys.generation.grammar.xgrammar_regex`).
"""

from __future__ import annotations

import itertools
import json
import re

import pytest

from lift_sys.errors import UnsupportedSchemaError
from lift_sys.generation.grammar import GrammarCache, GrammarSpec
from lift_sys.generation.grammar.conformance import byte_vocabulary, run_instance
from lift_sys.generation.grammar.formats import APPROXIMATE_FORMAT, restore_formats
from lift_sys.generation.grammar.schema_guard import sanitize_schema
from lift_sys.generation.grammar.xgrammar_regex import may_need_escape, search_as_match, xgrammar_pattern_gap

from .conftest import requires_xgrammar

VOCAB = byte_vocabulary()
CACHE = GrammarCache(max_entries=32, compile_timeout_s=10.0)


def _accepts(schema, backend="xgrammar", relax=False):
    compiled = CACHE.get(GrammarSpec.json_schema(schema), backend, VOCAB, relax=relax)
    return lambda value: run_instance(compiled, json.dumps(value, separators=(",", ":")), VOCAB).accepted


@requires_xgrammar
@pytest.mark.parametrize("backend", ["xgrammar", "llguidance"])
def test_an_untyped_subschema_constrains_only_its_own_type(backend):
    accepts = _accepts({"properties": {"a": {"type": "integer"}}, "required": ["a"]}, backend)
    assert accepts({"a": 1}) and accepts(12) and accepts([]) and accepts("s") and accepts(None)
    assert not accepts({"a": "x"}) and not accepts({})
    accepts = _accepts({"type": "object", "properties": {"n": {"minLength": 2, "maximum": 5}}}, backend)
    assert accepts({"n": "ab"}) and accepts({"n": 5}) and accepts({"n": [1]})
    assert not accepts({"n": "a"}) and not accepts({"n": 6})  # xgrammar dropped both without a type


@requires_xgrammar
def test_a_reference_into_a_split_subschema_still_finds_its_target():
    schema = {"properties": {"a": {"type": "integer", "maximum": 3}, "b": {"$ref": "#/properties/a"},
                             "c": {"properties": {"d": {"type": "boolean"}}, "additionalProperties": False},
                             "e": {"$ref": "#/properties/c/properties/d"}, "f": {"$ref": "#"}},
              "additionalProperties": False}
    accepts = _accepts(schema)
    assert accepts({"b": 3, "c": {"d": False}, "e": True, "f": {"b": 1}}) and accepts({"f": 7})  # declared order
    assert not accepts({"b": 4}) and not accepts({"e": 1}) and not accepts({"c": {"x": 1}}) and not accepts({"f": {"b": 9}})


@pytest.mark.parametrize("pattern", ["a+", "^a|b$", "^(a|b)$", "a$", "^a", "x|(y|z)", "[a|b]c", "ab|^c", "^$|x",
                                     r"\$|a", "[$^]x", "^[]a]$"])
def test_a_search_is_rewritten_as_the_same_whole_string_match(pattern):
    match = search_as_match(pattern)
    for n in range(5):
        for chars in itertools.product("abcxyz|$^]", repeat=n):
            s = "".join(chars)
            assert bool(re.search(pattern, s)) == bool(re.fullmatch(match, s)), (pattern, match, s)


def test_patterns_xgrammar_cannot_write_are_named():
    assert search_as_match("(?:^a)") is None and "only at the ends" in xgrammar_pattern_gap("(?:^a)")
    assert xgrammar_pattern_gap("^[a-z0-9-]+$") is None and xgrammar_pattern_gap("^(a|b)$|^c$") is None
    for pattern in ("^.*$", "^[^x]+$", r"^\S+$", r"^\w+\s\w+$", '^[a"]$', "^[ -~]+$", r"^a\\b$", "^[\x01-z]$"):
        assert may_need_escape(pattern), pattern
    assert "anchored" in xgrammar_pattern_gap("a+")  # an unanchored end admits any character, a quote too


@requires_xgrammar
def test_a_pattern_is_exact_where_xgrammar_can_write_it_and_validated_where_not():
    accepts = _accepts({"type": "string", "pattern": "^a$|^bc$"})
    assert accepts("a") and accepts("bc") and not accepts("abc") and not accepts("bcx")
    with pytest.raises(UnsupportedSchemaError) as refused:
        _accepts({"type": "string", "pattern": "^https?://.+$"})
    assert refused.value.keyword == "pattern" and "escape" in refused.value.message
    compiled = CACHE.get(GrammarSpec.json_schema({"type": "string", "pattern": "^https?://.+$"}), "xgrammar", VOCAB,
                         relax=True)
    assert compiled.validation_needed and run_instance(compiled, '"http://a\\"b"', VOCAB).accepted


def test_the_approximate_format_marker_is_ours_alone():
    # a caller's marker is an annotation: the guard drops it, so it never becomes a format
    assert APPROXIMATE_FORMAT not in json.dumps(sanitize_schema({"type": "string", APPROXIMATE_FORMAT: "date"}))
    # only subschemas are rewritten: a property so named, or a const holding it, stay as they are
    schema = {"properties": {APPROXIMATE_FORMAT: {"type": "string", APPROXIMATE_FORMAT: "date"}},
              "const": {APPROXIMATE_FORMAT: 1}}
    assert restore_formats(schema) == {"properties": {APPROXIMATE_FORMAT: {"type": "string", "format": "date"}},
                                       "const": {APPROXIMATE_FORMAT: 1}}


@requires_xgrammar
def test_a_long_string_bound_is_left_to_validation_not_compiled():
    """maxLength 255 cost xgrammar ~7 s to compile (32767 beside minLength 50 overran the 10 s box)."""
    schema = {"type": "object", "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 255}},
              "required": ["name"], "additionalProperties": False}
    with pytest.raises(UnsupportedSchemaError) as refused:
        _accepts(schema)
    assert refused.value.keyword == "maxLength" and refused.value.pointer == "/properties/name"
    compiled = CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB, relax=True)
    assert compiled.validation_needed and [r.keyword for r in compiled.relaxed if not r.exact] == ["maxLength"]
    assert not run_instance(compiled, '{"name":""}', VOCAB).accepted  # the small bound stays in the grammar
    assert _accepts({"type": "string", "maxLength": 16})("x" * 16) and not _accepts({"type": "string", "maxLength": 16})("x" * 17)


@requires_xgrammar
def test_a_subschema_of_unknown_keywords_accepts_any_value():
    accepts = _accepts({"type": "array", "items": {"bar": "string"}})
    assert accepts([1, "a", {"b": [None]}]) and not accepts({"a": 1})


@requires_xgrammar
@pytest.mark.parametrize("schema, good, bad", [
    # MaskBench Github_medium---o30410: xgrammar 0.2.8 wrote the enum and ignored the type beside it
    ({"type": "object", "properties": {"b": {"enum": ["M", {"k": 1}], "type": "object"}}},
     [{"b": {"k": 1}}, {}], [{"b": "M"}]),
    ({"enum": [1, 2, 3, 4], "not": {"const": 3}}, [1, 2, 4], [3]),
    ({"enum": [[1, 1], [1, 2]], "uniqueItems": True}, [[1, 2]], [[1, 1]]),
    ({"enum": [{"a": 1}, {"a": 1, "z": 2}], "additionalProperties": False, "properties": {"a": {}}}, [{"a": 1}],
     [{"a": 1, "z": 2}]),
    ({"$defs": {"small": {"maximum": 2}}, "enum": [1, 2, 3], "$ref": "#/$defs/small"}, [1, 2], [3]),
])
def test_constraints_beside_an_enum_keep_only_the_values_that_meet_them(schema, good, bad):
    """Refused as written (xgrammar would ignore them); in enforced mode an exact rewrite, nothing left to validation."""
    with pytest.raises(UnsupportedSchemaError):
        CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB)
    compiled = CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB, relax=True)
    assert compiled.relaxed and all(r.exact for r in compiled.relaxed)
    accepts = _accepts(schema, relax=True)
    assert all(accepts(v) for v in good) and not any(accepts(v) for v in bad)


@requires_xgrammar
def test_an_enum_of_the_declared_type_is_compiled_as_written():
    """Our own IR schema writes ``{"enum": [...], "type": "string"}``: nothing to refuse or rewrite there."""
    compiled = CACHE.get(GrammarSpec.json_schema({"enum": ["a", "b"], "type": "string"}), "xgrammar", VOCAB)
    assert compiled.relaxed == ()
    with pytest.raises(UnsupportedSchemaError, match="'type'"):
        CACHE.get(GrammarSpec.json_schema({"enum": ["a", 1], "type": "string"}), "xgrammar", VOCAB)
    assert _accepts({"enum": [1, 2.0], "type": "integer"})(2)
