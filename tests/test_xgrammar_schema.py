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
    accepts = _accepts({"type": "object", "properties": {"n": {"minItems": 2, "required": ["x"],
                                                                 "properties": {"x": {}}}}}, backend)
    assert accepts({"n": [1, 2]}) and accepts({"n": {"x": 1}}) and accepts({"n": "s"}) and accepts({"n": 5})
    assert not accepts({"n": [1]}) and not accepts({"n": {}})  # xgrammar dropped both without a type
    # a length or a number bound: exact on llguidance; on xgrammar left to validation (see the next tests)
    accepts = _accepts({"type": "object", "properties": {"n": {"minLength": 2, "maximum": 5}}}, backend,
                       relax=backend == "xgrammar")
    assert accepts({"n": "ab"}) and accepts({"n": 5}) and accepts({"n": [1]})
    if backend == "llguidance":
        assert not accepts({"n": "a"}) and not accepts({"n": 6})


@requires_xgrammar
@pytest.mark.parametrize("schema, valid", [
    # MaskBench, full run (byte vocabulary): valid values xgrammar 0.2.8's exact grammars rejected
    ({"type": "string", "minLength": 1}, ['<iframe src="{url}">', "Usage:\n%{usage}", "caf\u00e9"]),
    ({"type": "string", "maxLength": 40}, ['say "hi"']),
    ({"type": "number", "minimum": 0, "maximum": 1}, [0.0160425, 1e-07]),
    ({"type": ["number", "null"], "exclusiveMinimum": 0}, [12345.1234567]),
    ({"minimum": 0}, [0.0160425]),  # untyped: split by type, a number branch among them
])
def test_xgrammar_bounds_that_lose_valid_values_are_left_to_validation(schema, valid):
    with pytest.raises(UnsupportedSchemaError, match="escape|6 decimals"):
        CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB)
    compiled = CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB, relax=True)
    assert compiled.relaxed and not any(r.exact for r in compiled.relaxed)
    for value in valid:
        assert run_instance(compiled, json.dumps(value, separators=(",", ":")), VOCAB).accepted, value
    for kind in ("integer", "string"):  # an integer's bound and a plain string stay exact
        exact = CACHE.get(GrammarSpec.json_schema({"type": kind, **({"minimum": 0} if kind == "integer" else {})}),
                          "xgrammar", VOCAB)
        assert exact.relaxed == ()


@requires_xgrammar
def test_an_integer_bound_beyond_64_bits_is_named_and_left_to_validation():
    """Snowplow's ``"maximum": 9223372036854776000``: xgrammar's own error was "Integer exceeds maximum limit"."""
    schema = {"type": "integer", "minimum": 0, "maximum": 9223372036854776000}
    with pytest.raises(UnsupportedSchemaError, match="maximum' at /.*64-bit"):
        CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB)
    compiled = CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB, relax=True)
    assert [(r.keyword, r.exact) for r in compiled.relaxed] == [("maximum", False)]
    assert run_instance(compiled, "12", VOCAB).accepted and not run_instance(compiled, "-1", VOCAB).accepted


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
def test_a_string_length_bound_of_a_callers_schema_is_left_to_validation():
    """Two reasons, both measured on xgrammar 0.2.8: no escape is written inside a length-bounded string
    (valid strings lost), and compile time grows with the bound (maxLength 255 ~7 s; 32767 beside
    minLength 50 overran the 10 s box)."""
    from lift_sys.generation.grammar.lint import TRUSTED_SCHEMAS

    schema = {"type": "object", "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 255}},
              "required": ["name"], "additionalProperties": False}
    with pytest.raises(UnsupportedSchemaError) as refused:
        _accepts(schema)
    assert refused.value.keyword == "minLength" and refused.value.pointer == "/properties/name"
    compiled = CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB, relax=True)
    assert compiled.validation_needed and [r.keyword for r in compiled.relaxed if not r.exact] == ["minLength", "maxLength"]
    assert run_instance(compiled, '{"name":"a\\"b"}', VOCAB).accepted
    own = GrammarSpec.json_schema({"type": "string", "maxLength": 16})
    TRUSTED_SCHEMAS.add(own.key)  # our own schemas accept the narrower grammar and keep a small bound
    try:
        compiled = CACHE.get(own, "xgrammar", VOCAB)
    finally:
        TRUSTED_SCHEMAS.discard(own.key)
    assert run_instance(compiled, json.dumps("x" * 16), VOCAB).accepted
    assert not run_instance(compiled, json.dumps("x" * 17), VOCAB).accepted


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
    ({"$defs": {"small": {"type": "integer", "maximum": 2}}, "enum": [1, 2, 3], "$ref": "#/$defs/small"}, [1, 2], [3]),
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


@requires_xgrammar
def test_keywords_beside_a_ref_are_never_dropped_silently():
    """xgrammar 0.2.8 drops them: ``{"name": 1}`` and ``{"zzz": 1}`` were accepted below (a fail-open)."""
    schema = {"type": "object", "$ref": "#/$defs/p", "properties": {"name": {"type": "string"}},
              "additionalProperties": False,
              "$defs": {"p": {"type": "object", "properties": {"autostart": {"type": "boolean"}}}}}
    with pytest.raises(UnsupportedSchemaError, match="'\\$ref' at /.*beside a \\$ref"):
        CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB)
    compiled = CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB, relax=True)
    assert [r.keyword for r in compiled.relaxed] == ["$ref"] and compiled.validation_needed
    accepts = lambda text: run_instance(compiled, text, VOCAB).accepted  # noqa: E731
    assert accepts('{"name":"x","autostart":true}')  # the target merged in, in the written order
    assert not accepts('{"name":1}') and not accepts('{"autostart":"x"}')
    # a reference to an ancestor is not copied in: the keywords beside it go to validation, the target stays
    loop = {"type": "object", "properties": {"child": {"$ref": "#", "required": ["n"]}, "n": {"type": "integer"}}}
    compiled = CACHE.get(GrammarSpec.json_schema(loop), "xgrammar", VOCAB, relax=True)
    assert [(r.keyword, r.pointer) for r in compiled.relaxed] == [("required", "/properties/child")]
    assert run_instance(compiled, '{"child":{"child":{}},"n":1}', VOCAB).accepted


@requires_xgrammar
def test_a_subschema_under_an_unknown_key_reached_by_a_ref_is_spelled_out():
    """MaskBench Github_hard---o69761: ``#/ContextValue``'s ``{"type": "object"}`` was written with xgrammar's
    own any-value, whose separators are ``", "``: ``{"value":10,"unit":"m"}`` rejected at ``"unit"``."""
    schema = {"type": "object", "properties": {"v": {"$ref": "#/Shared/val"}}, "Shared": {"val": {"type": "object"}}}
    accepts = _accepts(schema)
    assert accepts({"v": {"value": 10, "unit": "m"}}) and not accepts({"v": 1})


@requires_xgrammar
def test_equal_subschemas_keep_each_their_own_property_order():
    """xgrammar 0.2.8 reuses one rule for subschemas equal as sets, in the first one's key order
    (MaskBench Github_hard---o7313: ``destination`` written in ``definitionStatus``'s order)."""
    s = {"type": "string"}
    schema = {"type": "object", "properties": {"x": {"type": "object", "properties": {"a": s, "b": s}},
                                               "y": {"type": "object", "properties": {"b": s, "a": s}}}}
    compiled = CACHE.get(GrammarSpec.json_schema(schema), "xgrammar", VOCAB)
    assert run_instance(compiled, '{"y":{"b":"1","a":"2"}}', VOCAB).accepted
    assert run_instance(compiled, '{"x":{"a":"1","b":"2"}}', VOCAB).accepted
