"""Hostile JSON Schemas and grammars, below HTTP: the schema guard, both lints, both backends, the validator.

Each attack class, not just the reported instance:

* retrieval -- ``$ref``/``$schema``/``$id``/``$dynamicRef``... pointing off the
  document (``http://`` at a live listener, relative paths, ``file:``,
  anchors, refs hidden in unknown keywords or aimed at data): refused naming
  keyword and pointer, and the listener is never connected to -- not by the
  guard, not by either backend, not by either validator even when the guard
  is bypassed;
* references that loop without consuming input, point nowhere, or fan out
  exponentially; schemas that are not JSON Schemas;
* grammars a backend cannot compile or can only compile slowly: a clean
  one-line 400 (no parser state dump, no C++ source location), within the
  compile time box, for both backends.

Legit recursion (through properties/items, as the IR's JsonValue) must keep
compiling.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from lift_sys.errors import (
    GrammarCompileError,
    GrammarCompileTimeout,
    InvalidRequest,
    OutputValidationError,
    Overloaded,
    SchemaRefused,
    UnsupportedSchemaError,
)
from lift_sys.generation.grammar import GrammarCache, GrammarSpec, get_backend
from lift_sys.generation.grammar.lint import TRUSTED_SCHEMAS, lint_schema
from lift_sys.generation.grammar.schema_guard import MAX_INPLACE_EXPANSION, check_schema, sanitize_schema
from lift_sys.ir.models import ir_generation_schema
from lift_sys.ir.validate import validate_json

from ..conftest import requires_xgrammar
from .netcanary import Canary

BACKENDS = ("llguidance", "xgrammar")

# Markers of a backend's internals that must never reach a caller.
INTERNALS = ("<state>", "<non-verbose", ".cc:", "Parser: {", "lexer_cost", "Traceback")


@pytest.fixture(scope="module")
def canary():
    c = Canary()
    yield c
    c.close()


def off_document(url: str) -> list[tuple[dict, str, str]]:
    """(schema, keyword refused, JSON pointer) for every way a schema can point outside itself."""
    return [
        ({"$ref": url}, "$ref", "/"),
        ({"type": "object", "properties": {"a": {"$ref": url + "#/$defs/x"}}}, "$ref", "/properties/a"),
        ({"$schema": url, "type": "string"}, "$schema", "/"),
        ({"$schema": "http://json-schema.org/draft-03/schema#", "type": "string"}, "$schema", "/"),
        ({"$id": url, "$ref": "other.json"}, "$ref", "/"),
        # beneath a nested base URI, '#/...' would mean that subschema's root: refused, not reinterpreted
        ({"$defs": {"x": {}}, "properties": {"a": {"$id": url, "items": {"$ref": "#/$defs/x"}}}}, "$id", "/properties/a"),
        ({"$schema": "http://json-schema.org/draft-04/schema#", "definitions": {"x": {}},
          "properties": {"a": {"id": url, "items": {"$ref": "#/definitions/x"}}}}, "id", "/properties/a"),
        ({"$ref": "other.json"}, "$ref", "/"),
        ({"$ref": "file:///etc/passwd"}, "$ref", "/"),
        ({"$ref": "//127.0.0.1/x"}, "$ref", "/"),
        ({"items": {"$dynamicRef": url}}, "$dynamicRef", "/items"),
        ({"anyOf": [{"$recursiveRef": "#"}]}, "$recursiveRef", "/anyOf/0"),
        ({"$vocabulary": {url: True}}, "$vocabulary", "/"),
        ({"properties": {"a": {"$schema": "https://json-schema.org/draft/2020-12/schema"}}}, "$schema", "/properties/a"),
        ({"$defs": {"a": {"$anchor": "a", "type": "string"}}, "$ref": "#a"}, "$ref", "/"),
        ({"type": "object", "x-vendor": {"$ref": url}}, "$ref", "/x-vendor"),  # unknown keyword: still checked
        ({"enum": [{"$ref": url}], "$ref": "#/enum/0"}, "$ref", "/"),  # a pointer into data is not a subschema
        ({"$ref": 7}, "$ref", "/"),
    ]


def test_off_document_references_are_refused_by_every_lint_and_never_fetched(canary):
    for schema, keyword, pointer in off_document(canary.url()):
        for check in (check_schema, lambda s: lint_schema(s, "llguidance"), lambda s: lint_schema(s, "xgrammar")):
            with pytest.raises(SchemaRefused) as info:
                check(schema)
            err = info.value
            assert (err.keyword, err.pointer) == (keyword, pointer), (schema, err.message)
            assert err.kind == "invalid_schema" and keyword in err.message and pointer in err.message
    assert canary.connections == 0


def test_an_inert_base_uri_is_removed_before_any_library_sees_it(canary):
    """A root ``$id`` (draft-04: ``id``), or one with no ``$ref`` beneath it, changes nothing: dropped, never fetched."""
    url = canary.url()
    for schema in ({"$id": url, "type": "string"},
                   {"$id": url, "$defs": {"s": {"type": "string"}}, "$ref": "#/$defs/s"},
                   {"properties": {"a": {"$id": url, "type": "string"}}},
                   {"$schema": "http://json-schema.org/draft-04/schema#", "id": url,
                    "properties": {"a": {"id": "/properties/a", "type": "string"}}}):
        clean = sanitize_schema(schema)
        assert url not in repr(clean) and "/properties/a" not in repr(clean.get("properties"))
        for backend in BACKENDS:
            if backend == "xgrammar" and not _has_xgrammar():
                continue
            lint_schema(clean, backend)
        validate_json("x" if clean.get("type") == "string" or "$ref" in clean else {"a": "x"}, clean)
    assert canary.connections == 0


@pytest.mark.parametrize("schema, upgraded", [
    # draft-04 boolean exclusive bounds
    ({"$schema": "http://json-schema.org/draft-04/schema#", "type": "number", "maximum": 3, "exclusiveMaximum": True},
     {"type": "number", "exclusiveMaximum": 3}),
    ({"$schema": "http://json-schema.org/draft-04/schema", "type": "number", "minimum": 3, "exclusiveMinimum": False},
     {"type": "number", "minimum": 3}),
    # tuple items (draft <= 2019-09)
    ({"$schema": "http://json-schema.org/draft-07/schema#", "items": [{"type": "string"}], "additionalItems": False},
     {"prefixItems": [{"type": "string"}], "items": False}),
    ({"$schema": "https://json-schema.org/draft/2019-09/schema", "items": {"type": "string"}, "additionalItems": False},
     {"items": {"type": "string"}}),
    # dependencies (draft <= 07), split by kind
    ({"$schema": "http://json-schema.org/draft-06/schema#", "dependencies": {"a": ["b"], "c": {"required": ["d"]}}},
     {"dependentRequired": {"a": ["b"]}, "dependentSchemas": {"c": {"required": ["d"]}}}),
    # nested, and data left alone
    ({"$schema": "http://json-schema.org/draft-04/schema#", "properties": {"n": {"maximum": 1, "exclusiveMaximum": True}},
      "enum": [{"exclusiveMaximum": True}]},
     {"properties": {"n": {"exclusiveMaximum": 1}}, "enum": [{"exclusiveMaximum": True}]}),
])
def test_older_drafts_are_read_as_they_meant_not_as_2020_12(schema, upgraded):
    assert sanitize_schema(schema) == upgraded


def _has_xgrammar() -> bool:
    import importlib.util

    return importlib.util.find_spec("xgrammar") is not None


def test_validators_never_retrieve_even_without_the_guard(canary):
    """validate_json alone (jsonschema-rs, and the python-jsonschema fallback) never opens a connection."""
    url = canary.url()
    fallback = {"type": "string", "pattern": r"^(?P<c>a)(?P=c)$"}  # jsonschema-rs refuses this dialect
    for schema in ({"$ref": url}, {"$schema": url, "type": "string"}, {"$id": url, "$ref": "next.json"},
                   {"allOf": [fallback, {"$ref": url}]}, {"allOf": [fallback, {"$id": url, "$ref": "n.json"}]}):
        try:
            validate_json("aa", schema)
        except (InvalidRequest, OutputValidationError):
            pass  # refusing or failing is fine; fetching is not
    assert canary.connections == 0


def test_a_callers_regex_never_runs_in_pythons_backtracking_re():
    """Explaining a failed output must not run the caller's pattern through ``re`` (exponential, holds the GIL).

    ``^([a-z]+|[[:digit:]])+$`` on 40 letters and a digit: ~0.2 s at 22 letters in ``re``, x4 per 2
    more. Run in a child process so a regression is a failed test, not a frozen test run.
    """
    code = (
        "from lift_sys.ir.validate import validate_json\n"
        "from lift_sys.errors import OutputValidationError\n"
        "try:\n"
        "    validate_json('a' * 40 + '5', {'type': 'string', 'pattern': '^([a-z]+|[[:digit:]])+$'}, trusted=False)\n"
        "except OutputValidationError as e:\n"
        "    print(e.detail['validator'])\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise AssertionError("explaining the failure ran the pattern in Python's re") from None
    assert done.returncode == 0 and done.stdout.strip() == "pattern", done.stderr


def test_a_schema_jsonschema_rs_cannot_read_is_refused_before_generation():
    from lift_sys.ir.validate import prepare_validator

    with pytest.raises(InvalidRequest, match="output validator cannot read"):
        prepare_validator({"type": "string", "pattern": "^(?P<c>a)(?P=c)$"}, schema_key="test-backref")
    prepare_validator({"type": "string", "pattern": "^[a-z]+$"}, schema_key="test-plain")


def test_known_dialects_are_accepted_without_fetching_and_read_as_2020_12(canary):
    for uri in ("http://json-schema.org/draft-07/schema#", "https://json-schema.org/draft/2020-12/schema",
                "https://json-schema.org/draft/2019-09/schema#", "http://json-schema.org/draft-06/schema"):
        schema = {"$schema": uri, "type": "string"}
        assert sanitize_schema(schema) == {"type": "string"}  # no library ever sees the URI
        lint_schema(schema, "llguidance")
        lint_schema(schema, "xgrammar")
    assert canary.connections == 0


@pytest.mark.parametrize("schema, pointer, cycle", [
    ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "/$defs/a", "/$defs/a -> /$defs/a"),
    ({"$ref": "#"}, "/", "# -> #"),
    ({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}}, "/$defs/b", "/$defs/a -> /$defs/b -> /$defs/a"),
    ({"$defs": {"a": {"allOf": [{"$ref": "#/$defs/b"}]}, "b": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/a"}]}},
      "$ref": "#/$defs/a"}, "/$defs/b/anyOf/1", "-> /$defs/a"),
    ({"oneOf": [{"type": "string"}, {"$ref": "#/oneOf/1"}]}, "/oneOf/1", "/oneOf/1 -> /oneOf/1"),
    ({"definitions": {"x": {"not": {"$ref": "#/definitions/x"}}}}, "/definitions/x/not", "-> /definitions/x"),
    ({"anyOf": [{"$ref": "#"}]}, "/anyOf/0", "# -> /anyOf/0 -> #"),
])
def test_reference_cycles_without_progress_are_refused(schema, pointer, cycle):
    with pytest.raises(SchemaRefused) as info:
        check_schema(schema)
    assert info.value.pointer == pointer
    assert "cycle" in info.value.message and cycle in info.value.message


@pytest.mark.parametrize("ref", ["#/$defs/nope", "#/properties/a/items", "#/$defs/a/0", "#/$defs/a/", "#/definitions"])
def test_unresolvable_references_are_refused(ref):
    schema = {"$defs": {"a": {"type": "string"}}, "properties": {"a": {"type": "string"}, "b": {"$ref": ref}}}
    with pytest.raises(SchemaRefused) as info:
        check_schema(schema)
    assert (info.value.keyword, info.value.pointer) == ("$ref", "/properties/b")
    assert "does not resolve" in info.value.message and ref in info.value.message


def _fan(keyword: str, levels: int, fan: int) -> dict:
    defs = {f"d{i}": {keyword: [{"$ref": f"#/$defs/d{i + 1}"}] * fan} for i in range(levels)}
    defs[f"d{levels}"] = {"type": "integer"}
    return {"$defs": defs, "$ref": "#/$defs/d0"}


@pytest.mark.parametrize("keyword", ["allOf", "anyOf"])
def test_exponential_reference_fans_are_refused_and_small_ones_pass(keyword):
    """4 refs x 30 levels = 4^30 subschemas per validated value: validation would never end."""
    with pytest.raises(SchemaRefused) as info:
        check_schema(_fan(keyword, 30, 4))
    assert str(MAX_INPLACE_EXPANSION) in info.value.message and info.value.pointer.startswith("/$defs/d")
    check_schema(_fan(keyword, 3, 4))


@pytest.mark.parametrize("schema, pointer", [
    ({"type": "strin"}, "/type"),
    ({"type": "array", "items": [{"type": "string"}]}, "/items"),
    ({"type": "string", "pattern": 5}, "/pattern"),
    ({"type": "object", "required": "a"}, "/required"),
    ({"properties": {"a": {"minLength": -1}}}, "/properties/a/minLength"),
])
def test_what_is_not_a_json_schema_is_refused_with_its_pointer(schema, pointer):
    with pytest.raises(SchemaRefused) as info:
        check_schema(schema)
    assert info.value.pointer == pointer and "not a valid JSON Schema" in info.value.message


JSON_TREE = {  # recursion through structure, like the IR's JsonValue
    "$defs": {"v": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"},
                              {"type": "array", "items": {"$ref": "#/$defs/v"}},
                              {"type": "object", "additionalProperties": {"$ref": "#/$defs/v"}}]}},
    "$ref": "#/$defs/v",
}
LINKED = {"type": "object", "properties": {"v": {"type": "integer"}, "next": {"$ref": "#"}}, "required": ["v"]}


@pytest.mark.parametrize("schema", [JSON_TREE, LINKED, ir_generation_schema(), {"$defs": {"a b": {"type": "string"}}, "$ref": "#/$defs/a%20b"},
                                    {"properties": {"$ref": {"type": "string"}}}, {"const": {"$ref": "http://x"}}])
def test_legit_schemas_pass_the_guard_and_both_lints(schema):
    check_schema(schema)
    for backend in BACKENDS:
        # the IR schema is ours: xgrammar may serve its predicate pattern narrower (no escapes), never looser
        lint_schema(schema, backend, trusted=schema == ir_generation_schema())


# ---------------------------------------------------------------- backends (the real tokenizer)


def _clean(message: str) -> None:
    assert "\n" not in message and len(message) < 400, message
    assert not any(marker in message for marker in INTERNALS), message


BAD_GRAMMARS = [
    ("regex", "("),
    ("regex", "a[]b"),
    ("regex", "[^\\s\\S]"),  # the empty language: no output exists
    ("json_schema", {"type": "integer", "minimum": -1e30}),
    ("json_schema", {"type": "string", "pattern": "^(?P<c>a)(?P=c)$"}),
]


@pytest.mark.model
@pytest.mark.parametrize("backend", [pytest.param("llguidance"), pytest.param("xgrammar", marks=requires_xgrammar)])
def test_compile_failures_are_clean_400s(engine, backend):
    vocab = engine.vocabulary()
    for kind, source in BAD_GRAMMARS:
        with pytest.raises((GrammarCompileError, UnsupportedSchemaError)) as info:  # xgrammar: the lint names it
            get_backend(backend).compile(GrammarSpec(kind, source), vocab)
        assert isinstance(info.value, InvalidRequest)  # -> 400
        _clean(info.value.message)


# Grammars that take each backend over a second to compile (llguidance builds its lexer for the
# first mask; xgrammar expands a long string bound), far beyond the 0.1 s box of these tests.
SLOW_TO_COMPILE = {
    "llguidance": [GrammarSpec("regex", "(a{1000}){1000}"), GrammarSpec("regex", "(b{1000}){1000}")],
    # (xgrammar: ~0.5 s each; a caller's bounds are left to validation, so these stand for our own schemas)
    "xgrammar": [GrammarSpec.json_schema({"type": "string", "maxLength": 16}),
                 GrammarSpec.json_schema({"type": "string", "minLength": 15, "maxLength": 16})],
}


@pytest.mark.model
@pytest.mark.parametrize("backend", [pytest.param("llguidance"), pytest.param("xgrammar", marks=requires_xgrammar)])
def test_compile_time_box_is_honoured_and_an_overrun_is_neither_retried_nor_queued_behind(engine, backend,
                                                                                       monkeypatch):
    vocab = engine.vocabulary()
    monkeypatch.setattr("lift_sys.generation.grammar.lint.TRUSTED_SCHEMAS",
                        TRUSTED_SCHEMAS | {spec.key for spec in SLOW_TO_COMPILE["xgrammar"]})
    get_backend(backend).compile(GrammarSpec("regex", "a"), vocab)  # tokenizer set-up is not the grammar's cost
    cache = GrammarCache(compile_timeout_s=0.1)
    first, second = SLOW_TO_COMPILE[backend]
    with pytest.raises(GrammarCompileTimeout) as info:
        cache.get(first, backend, vocab)
    assert info.value.detail == {"timeout_s": 0.1, "backend": backend} and "0.1 s" in info.value.message
    misses = cache.stats.misses
    with pytest.raises(GrammarCompileTimeout, match="overran before"):
        cache.get(first, backend, vocab)
    assert cache.stats.misses == misses  # refused at once: no second thread on the same grammar
    with pytest.raises(GrammarCompileTimeout):
        cache.get(second, backend, vocab)
    # Both compile threads are now held by overruns: a new grammar is "busy" (429), not a false timeout.
    with pytest.raises(Overloaded, match="busy"):
        cache.get(GrammarSpec("regex", "[0-9]{3}"), backend, vocab)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            cache.get(GrammarSpec("regex", "[0-9]{3}"), backend, vocab)
            break
        except Overloaded:
            time.sleep(0.2)
    else:
        raise AssertionError("the overrunning compiles never released their threads")


@pytest.mark.model
@pytest.mark.parametrize("backend", [pytest.param("llguidance"), pytest.param("xgrammar", marks=requires_xgrammar)])
def test_recursive_schemas_still_compile(engine, backend):
    for schema in (JSON_TREE, LINKED):
        get_backend(backend).compile(GrammarSpec.json_schema(schema), engine.vocabulary()).matcher()


def test_xgrammar_refuses_more_optional_properties_than_it_compiles_in_bounded_time():
    """xgrammar 0.2.8 compiles optional properties super-linearly (3000 in one object: 64 s, uninterruptible)."""
    many = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(3000)}}
    with pytest.raises(UnsupportedSchemaError) as info:
        lint_schema(many, "xgrammar")
    assert (info.value.keyword, info.value.pointer) == ("properties", "/") and "512 per object" in info.value.message
    spread = {"type": "object", "required": [f"o{j}" for j in range(8)],
              "properties": {f"o{j}": {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(256)}}
                             for j in range(8)}}
    with pytest.raises(UnsupportedSchemaError, match="1024 per schema") as info:
        lint_schema(spread, "xgrammar")
    assert info.value.pointer == "/properties/o4"
    lint_schema({**many, "required": list(many["properties"])}, "xgrammar")  # all required: cheap
    lint_schema(many, "llguidance")
    lint_schema(spread, "llguidance")


@pytest.mark.parametrize("schema, invalid, valid", [
    ({"properties": {"a": {"minItems": 2}}}, '{"a":[1]}', '{"a":[1,2]}'),  # no type: xgrammar ignored it
    ({"items": {"required": ["k"], "properties": {"k": {}}}}, "[{}]", '[{"k":1}]'),
    ({"minItems": 1}, "[]", "[1]"),
])
@requires_xgrammar
def test_keywords_xgrammar_dropped_without_a_type_are_enforced_split_by_type(schema, invalid, valid):
    """Found by the JSON-Schema-Test-Suite: each accepted an invalid instance; refused, now split by type."""
    from lift_sys.generation.grammar.conformance import byte_vocabulary, run_instance

    vocab = byte_vocabulary()
    compiled = GrammarCache().get(GrammarSpec.json_schema(schema), "xgrammar", vocab)
    assert not run_instance(compiled, invalid, vocab).accepted and run_instance(compiled, valid, vocab).accepted
    assert run_instance(compiled, '"any string"', vocab).accepted  # the other types stay unconstrained


@pytest.mark.parametrize("schema, keyword, pointer", [
    ({"type": "object", "required": ["a"]}, "required", "/"),  # not in properties: xgrammar ignored it
    ({"anyOf": [{"enum": [1, "a"], "minLength": 3}]}, "minLength", "/anyOf/0"),  # next to enum: ignored
])
@requires_xgrammar
def test_keywords_xgrammar_silently_drops_are_refused_by_name(schema, keyword, pointer):
    """Found by the JSON-Schema-Test-Suite at grammar level: each accepted an invalid instance before."""
    with pytest.raises(UnsupportedSchemaError) as info:
        lint_schema(schema, "xgrammar")
    assert (info.value.keyword, info.value.pointer) == (keyword, pointer)


@pytest.mark.parametrize("backend, schema, keyword, pointer", [
    ("llguidance", {"properties": {"a": {"oneOf": [{"type": "integer"}, {"type": "number"}]}}}, "oneOf", "/properties/a"),
    ("llguidance", {"properties": {"a": {"type": "string", "maxLength": 2.0}}}, "maxLength", "/properties/a"),
    ("llguidance", {"type": "object", "properties": {"a": {"enum": []}}, "required": ["a"]}, "required", "/"),
    ("llguidance", {"type": "object", "properties": {"a": {"allOf": [{"type": "string"}, False]}},
                    "required": ["a"]}, "required", "/"),
    ("xgrammar", {"properties": {"a": {"anyOf": [{"type": "string"}, False]}}}, "anyOf", "/properties/a"),
    ("xgrammar", {"$defs": {"t~f": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/t~0f"}}}, "$ref",
     "/properties/a"),
])
def test_compile_refusals_name_keyword_and_pointer(backend, schema, keyword, pointer):
    """Whatever refuses a schema -- lint or the backend's compiler -- the 400 says which keyword and where."""
    if backend == "xgrammar" and not _has_xgrammar():
        pytest.skip("xgrammar extra not installed")
    from lift_sys.generation.grammar.conformance import byte_vocabulary

    cache = GrammarCache(max_entries=4, compile_timeout_s=10.0)
    with pytest.raises(UnsupportedSchemaError) as info:
        cache.get(GrammarSpec.json_schema(sanitize_schema(schema)), backend, byte_vocabulary())
    err = info.value
    assert (err.keyword, err.pointer) == (keyword, pointer), err.message
    assert not any(marker in err.message for marker in INTERNALS)
