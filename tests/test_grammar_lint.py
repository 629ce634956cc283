"""Schema lint: unenforceable keywords are refused, naming keyword and pointer."""

from __future__ import annotations

import pytest

from lift_sys.errors import UnsupportedSchemaError
from lift_sys.generation.grammar import GrammarSpec, get_backend
from lift_sys.generation.grammar.lint import lint_schema
from lift_sys.generation.grammar.relax import relax_schema

TAGS = {
    "type": "object",
    "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}},
    "required": ["tags"],
}


def test_unique_items_rejected_for_xgrammar_with_keyword_and_pointer():
    with pytest.raises(UnsupportedSchemaError) as info:
        lint_schema(TAGS, "xgrammar")
    exc = info.value
    assert exc.keyword == "uniqueItems"
    assert exc.pointer == "/properties/tags"
    assert "uniqueItems" in str(exc) and "xgrammar" in str(exc)


@pytest.mark.parametrize("backend", ["llguidance", "xgrammar"])
def test_a_length_beside_a_pattern_is_refused_exact_and_left_to_validation_enforced(backend):
    schema = {"type": "object", "properties": {"q": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5}}}
    with pytest.raises(UnsupportedSchemaError, match="maxLength' at /properties/q"):
        lint_schema(schema, backend)
    relaxed, done = relax_schema(schema, backend)
    assert relaxed["properties"]["q"] == {"type": "string", "pattern": "^[a-z]+$"}
    assert [(r.keyword, r.pointer, r.exact) for r in done] == [("maxLength", "/properties/q", False)]
    lint_schema({"type": "string", "maxLength": 5}, backend, trusted=True)  # a length alone stays (xgrammar: ours only)


@pytest.mark.parametrize(
    "schema, keyword, pointer",
    [
        ({"not": {"type": "string"}}, "not", "/"),
        ({"type": "object", "if": {}, "then": {}}, "if", "/"),
        ({"anyOf": [{"type": "integer"}, {"type": "string", "format": "credit-card"}]}, "format", "/anyOf/1"),
        ({"$defs": {"a/b": {"type": "array", "contains": {"type": "integer"}}}, "$ref": "#/$defs/a~1b"},
         "contains", "/$defs/a~1b"),
    ],
)
def test_never_enforced_keywords(schema, keyword, pointer):
    for backend in ("llguidance", "xgrammar"):
        with pytest.raises(UnsupportedSchemaError) as info:
            lint_schema(schema, backend)
        assert (info.value.keyword, info.value.pointer) == (keyword, pointer)


def test_property_named_like_a_keyword_is_not_a_keyword():
    schema = {"type": "object", "properties": {"not": {"type": "string"}, "uniqueItems": {"type": "boolean"}}}
    lint_schema(schema, "xgrammar")
    lint_schema(schema, "llguidance")


def test_backend_lint_runs_before_compile():
    with pytest.raises(UnsupportedSchemaError, match="uniqueItems"):
        get_backend("llguidance").lint(GrammarSpec.json_schema(TAGS))


@pytest.mark.parametrize("backend", ["llguidance", "xgrammar"])
@pytest.mark.parametrize(
    "schema, keyword, pointer",
    [
        # a $ref into a place that is no keyword: the target is a subschema all the same
        ({"type": "object", "properties": {"x": {"$ref": "#/ddd/npn"}}, "ddd": {"npn": {"not": {"required": ["a"]}}}},
         "not", "/ddd/npn"),
        ({"type": "object", "properties": {"u": {"$ref": "#/shared/url"}}, "shared": {"url": {"type": "string", "format": "colour"}}},
         "format", "/shared/url"),
        # a chain of them, and an escaped token on the way
        ({"$ref": "#/a~1b", "a/b": {"$ref": "#/c/0"}, "c": [{"type": "string", "format": "colour"}]}, "format", "/c/0"),
    ],
)
def test_keywords_reached_only_through_a_ref_are_linted_with_the_targets_pointer(schema, keyword, pointer, backend):
    with pytest.raises(UnsupportedSchemaError) as err:
        lint_schema(schema, backend)
    assert err.value.detail["keyword"] == keyword and err.value.detail["pointer"] == pointer


def test_one_compile_lints_each_schema_once_and_a_refusal_is_raised_fresh_every_time(monkeypatch):
    """The lint memo: the enforced-mode path used to walk a large schema up to four times."""
    from lift_sys.generation.grammar import GrammarCache
    from lift_sys.generation.grammar import lint as lint_module
    from lift_sys.generation.grammar.conformance import byte_vocabulary

    calls: list[str] = []
    real = lint_module.lint_schema
    monkeypatch.setattr(lint_module, "lint_schema", lambda s, b, **kw: (calls.append(b), real(s, b, **kw))[1])
    schema = {"type": "object", "properties": {"n": {"type": "integer", "not": {"const": 3}}}, "required": ["n"]}
    compiled = GrammarCache().get(GrammarSpec.json_schema(schema), "llguidance", byte_vocabulary(), relax=True)
    assert [(r.keyword, r.pointer) for r in compiled.relaxed] == [("not", "/properties/n")]
    assert calls == ["llguidance", "llguidance"]  # the schema as sent, then the looser one: each once

    spec = GrammarSpec.json_schema(TAGS)
    errors = []
    for _ in range(3):
        with pytest.raises(UnsupportedSchemaError) as info:
            lint_module.lint_spec(spec, "xgrammar")
        errors.append(info.value)
    assert {(e.keyword, e.pointer) for e in errors} == {("uniqueItems", "/properties/tags")}
    assert all(len(list(__import__("traceback").walk_tb(e.__traceback__))) < 4 for e in errors)  # no growing chain


def test_the_lint_memo_tells_our_own_schemas_from_a_callers():
    """A key registered as ours after a caller's lint is linted again under the trusted rules."""
    from lift_sys.generation.grammar.lint import TRUSTED_SCHEMAS, lint_spec

    schema = {"type": "object", "properties": {"s": {"type": "string", "pattern": '^[^"]*"?$'}}, "required": ["s"]}
    spec = GrammarSpec.json_schema(schema)
    with pytest.raises(UnsupportedSchemaError, match="pattern"):
        lint_spec(spec, "xgrammar")
    TRUSTED_SCHEMAS.add(spec.key)
    try:
        lint_spec(spec, "xgrammar")  # a narrower grammar is accepted for our own schemas
    finally:
        TRUSTED_SCHEMAS.discard(spec.key)
    with pytest.raises(UnsupportedSchemaError, match="pattern"):
        lint_spec(spec, "xgrammar")


@pytest.mark.parametrize("backend", ["llguidance", "xgrammar"])
def test_two_property_orders_are_two_grammars(backend):
    """The compile cache's key kept sorted keys: a second caller's ``{q, p}`` was served the grammar compiled
    for ``{p, q}`` and its own order rejected (MaskBench Github_easy---o81583 after an earlier schema)."""
    if backend == "xgrammar":
        pytest.importorskip("xgrammar")
    from lift_sys.generation.grammar import GrammarCache
    from lift_sys.generation.grammar.conformance import byte_vocabulary, run_instance

    s = {"type": "string"}
    first = GrammarSpec.json_schema({"type": "object", "properties": {"p": s, "q": s}, "additionalProperties": False})
    second = GrammarSpec.json_schema({"type": "object", "properties": {"q": s, "p": s}, "additionalProperties": False})
    assert first.key != second.key and len(second.key) == 64  # the whole sha256: shared entries must not collide
    cache, vocab = GrammarCache(), byte_vocabulary()
    assert run_instance(cache.get(first, backend, vocab), '{"p":"1","q":"2"}', vocab).accepted
    assert run_instance(cache.get(second, backend, vocab), '{"q":"1","p":"2"}', vocab).accepted
