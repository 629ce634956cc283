"""Enforced mode: a looser grammar for what a backend cannot express, every output validated, resampled, or a 422.

Grammar level (no model, byte vocabulary): each relaxation names keyword and
pointer, the looser grammar still accepts every valid instance (only the
validator may reject), and what cannot be relaxed is still refused by name.
Service level (scripted engine): resampling, streaming only validated text,
the 422 after the last sample. Server level (the embedded model, real
uvicorn): a schema with ``uniqueItems`` / ``not`` / an overlapping ``oneOf``
is served and its 200 validates against the full schema; an unsatisfiable
one is a 422 naming the keyword; a refused one still names keyword + pointer.
"""

from __future__ import annotations

import json

import httpx
import jsonschema
import pytest

from lift_sys.errors import SchemaNotEnforced, SchemaRefused, UnsupportedSchemaError
from lift_sys.generation.engines.fake import FakeEngine
from lift_sys.generation.grammar import GrammarCache, GrammarSpec
from lift_sys.generation.grammar.conformance import byte_vocabulary, run_instance, serialize, subschema_validity
from lift_sys.generation.grammar.lint import XGRAMMAR_MAX_OPTIONAL_PROPERTIES
from lift_sys.generation.grammar.relax import relax_schema
from lift_sys.generation.options import GenerateOptions
from lift_sys.service.core import ENFORCE_SAMPLES, InferenceService, guard_spec

from .conftest import requires_xgrammar

VOCAB = byte_vocabulary()
BACKENDS = ["llguidance", pytest.param("xgrammar", marks=requires_xgrammar)]

UNIQUE = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 3, "maxItems": 3,
          "uniqueItems": True}
NOT_EMPTY = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}, "required": ["name"],
             "additionalProperties": False, "not": {"properties": {"name": {"const": ""}}}}
NEVER = {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["a"],
         "additionalProperties": False, "not": {"required": ["a"]}}  # no instance: every looser output fails

# (schema, keyword, pointer, a valid instance, an invalid instance the looser grammar lets through)
CASES = [
    (UNIQUE, "uniqueItems", "/", [1, 2, 3], [1, 1, 2]),
    (NOT_EMPTY, "not", "/", {"name": "Ada"}, {"name": ""}),
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
      "if": {"required": ["a"]}, "then": {"required": ["b"]}}, "if", "/", {"a": 1, "b": 2}, {"a": 1}),
    ({"type": "object", "properties": {"v": {"oneOf": [{"type": "number", "maximum": 10}, {"type": "integer"}]}}},
     "oneOf", "/properties/v", {"v": 2.5}, {"v": 3}),
    ({"type": "array", "items": {"type": "integer"}, "contains": {"const": 7}}, "contains", "/", [1, 7], [1, 2]),
    ({"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
      "dependentRequired": {"a": ["b"]}}, "dependentRequired", "/", {"a": "x", "b": "y"}, {"a": "x"}),
    ({"type": "object", "properties": {"d": {"type": "string", "format": "color-hex"}}}, "format", "/properties/d",
     {"d": "#fff"}, None),
    ({"type": "object", "properties": {"a": {"type": "integer"}}, "maxProperties": 1}, "maxProperties", "/",
     {"a": 1}, None),
]


def _compile(schema, backend, relax=True):
    spec = guard_spec(GrammarSpec.json_schema(schema))
    return spec, GrammarCache(max_entries=8, compile_timeout_s=10.0).get(spec, backend, VOCAB, relax=relax)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("schema, keyword, pointer, valid, invalid", CASES, ids=[c[1] for c in CASES])
def test_looser_grammar_names_what_it_leaves_out_and_accepts_every_valid_instance(backend, schema, keyword, pointer,
                                                                                   valid, invalid):
    with pytest.raises(UnsupportedSchemaError):  # without enforced mode: refused, as before
        _compile(schema, backend, relax=False)
    spec, compiled = _compile(schema, backend)
    assert compiled.validation_needed
    assert any(r.keyword == keyword and (r.pointer or "/") == pointer for r in compiled.relaxed), compiled.relaxed
    validity = subschema_validity(spec.source)
    checker = jsonschema.Draft202012Validator(spec.source, format_checker=jsonschema.FormatChecker())
    assert checker.is_valid(valid)
    assert run_instance(compiled, serialize(valid, spec.source, validity), VOCAB).accepted  # never fail-closed
    if invalid is not None:  # the grammar lets it through; only the validator rejects it
        assert not checker.is_valid(invalid)
        assert run_instance(compiled, serialize(invalid, spec.source, validity), VOCAB).accepted


@pytest.mark.parametrize("backend", BACKENDS)
def test_exact_rewrites_need_no_validation(backend):
    tagged = {"oneOf": [{"type": "object", "properties": {"k": {"const": "a"}, "x": {"type": "integer"}},
                         "required": ["k"]},
                        {"type": "object", "properties": {"k": {"const": "b"}, "y": {"type": "string"}},
                         "required": ["k"]}]}
    _, compiled = _compile(tagged, backend)
    assert [(r.keyword, r.exact) for r in compiled.relaxed] == [("oneOf", True)]
    assert not compiled.validation_needed
    _, compiled = _compile({"type": "array", "maxItems": 3.0}, backend)
    assert [(r.keyword, r.exact) for r in compiled.relaxed] == [("maxItems", True)]


@requires_xgrammar
def test_xgrammar_silent_drops_become_validated_or_exact():
    # constraints beside enum: the enum filtered by them (exact); a lookaround pattern: left to validation
    _, compiled = _compile({"enum": [1, "a", "abcd"], "minLength": 3}, "xgrammar")
    assert compiled.spec.source == {"enum": [1, "abcd"]} and not compiled.validation_needed
    for text, ok in (("1", True), ('"abcd"', True), ('"a"', False)):
        assert run_instance(compiled, text, VOCAB).accepted is ok
    _, compiled = _compile({"type": "string", "pattern": "^(?!foo)[a-z]+$"}, "xgrammar")
    assert [(r.keyword, r.exact) for r in compiled.relaxed] == [("pattern", False)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_what_cannot_be_relaxed_is_still_refused_by_name(backend):
    into_not = {"$defs": {"x": {"not": {"type": "null"}}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/x/not"}}}
    with pytest.raises(UnsupportedSchemaError) as info:
        _compile(into_not, backend)
    assert (info.value.keyword, info.value.pointer) == ("not", "/$defs/x") and "$ref" in info.value.message
    with pytest.raises(SchemaRefused) as refused:  # the guard: never relaxed
        _compile({"type": "object", "not": {"$ref": "http://example.com/s.json"}}, backend)
    assert refused.value.keyword == "$ref" and refused.value.pointer == "/not"
    with pytest.raises(UnsupportedSchemaError) as info:  # an unsatisfiable schema: the compiler's refusal stands
        _compile({"type": "object", "properties": {"a": {"enum": []}}, "required": ["a"], "uniqueItems": True}, backend)
    assert info.value.keyword in ("required", "enum")


@requires_xgrammar
def test_xgrammar_compile_time_bound_is_never_relaxed():
    n = XGRAMMAR_MAX_OPTIONAL_PROPERTIES + 1
    schema = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(n)}, "not": {}}
    with pytest.raises(UnsupportedSchemaError) as info:
        _compile(schema, "xgrammar")
    assert info.value.keyword == "properties" and info.value.pointer == "/"


def test_a_pattern_the_compiler_cannot_read_is_left_to_validation_at_its_own_pointer():
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^[a-z]+$"},
                                               "b": {"type": "string", "pattern": "^(?!x)[a-z]+$"}},
              "required": ["a", "b"]}
    with pytest.raises(UnsupportedSchemaError) as info:  # llguidance: no look-around
        _compile(schema, "llguidance", relax=False)
    assert (info.value.keyword, info.value.pointer) == ("pattern", "/properties/b")
    spec, compiled = _compile(schema, "llguidance")
    assert [(r.keyword, r.pointer) for r in compiled.relaxed] == [("pattern", "/properties/b")]
    assert run_instance(compiled, '{"a":"ab","b":"xy"}', VOCAB).accepted  # only the validator rejects it
    assert not run_instance(compiled, '{"a":"AB","b":"yy"}', VOCAB).accepted  # /properties/a still in the grammar


def test_relax_schema_keeps_the_input_untouched():
    schema = json.loads(json.dumps(NOT_EMPTY))
    looser, done = relax_schema(schema, "llguidance")
    assert schema == NOT_EMPTY and "not" not in looser and [r.keyword for r in done] == ["not"]


# ---------------------------------------------------------------- service (scripted engine: the remote path)


def test_resamples_until_valid_and_streams_only_the_valid_output():
    seen: list[GenerateOptions] = []
    outputs = iter(["[1,1,2]", "[4,4,4]", "[1,2,3]"])

    def responder(messages, params, constraint):
        seen.append(params)
        assert "uniqueItems" not in constraint.spec.source  # the looser schema is what an engine gets
        return next(outputs)

    service = InferenceService(FakeEngine(responder))
    streamed: list[str] = []
    result = service.generate("three digits", UNIQUE, GenerateOptions(temperature=0.0, seed=5),
                              on_text=streamed.append)
    assert result.json == [1, 2, 3] and result.samples == 3 and result.enforcement == "grammar+validation"
    assert streamed == ["[1,2,3]"]  # never the rejected samples
    assert [p.seed for p in seen] == [5, 5 + 7919, 5 + 2 * 7919] and seen[1].temperature >= 0.7
    assert result.enforcement_info()["validated_keywords"][0]["keyword"] == "uniqueItems"


def test_the_last_invalid_sample_is_a_422_naming_the_keyword():
    service = InferenceService(FakeEngine(['{"a":1}']))
    with pytest.raises(SchemaNotEnforced) as info:
        service.generate("x", NEVER, GenerateOptions(max_tokens=20))
    err = info.value
    assert "'not'" in err.message and err.detail["samples"] == ENFORCE_SAMPLES
    assert err.detail["text"] == '{"a":1}' and err.detail["validated_keywords"][0]["keyword"] == "not"
    assert err.to_dict()["type"] == "schema_not_enforced"


def test_an_exact_schema_is_sampled_once():
    service = InferenceService(FakeEngine(['{"a":1}']))
    result = service.generate("x", {"type": "object", "properties": {"a": {"type": "integer"}}}, GenerateOptions())
    assert result.enforcement == "grammar" and result.samples == 1 and result.enforcement_info()["validated_keywords"] == []


# ---------------------------------------------------------------- server, real model


@pytest.fixture(scope="module")
def url(service):
    from lift_sys.server.app import asgi
    from lift_sys.settings import Settings

    from .serving import running

    with running(asgi(service, Settings())) as u:
        yield u


@pytest.mark.model
def test_unique_items_and_not_are_served_and_every_200_validates(url):
    for prompt, schema, keyword in (
        ("Three different digits as a JSON array, for example [1, 2, 3].", UNIQUE, "uniqueItems"),
        ("A JSON object with the name of a famous scientist.", NOT_EMPTY, "not"),
    ):
        r = httpx.post(url + "/v1/generate", timeout=300, json={
            "prompt": prompt, "json_schema": schema, "max_tokens": 40, "temperature": 0})
        assert r.status_code == 200, r.text
        body = r.json()
        jsonschema.validate(body["json"], schema)  # the full schema, by the reference validator
        assert json.loads(body["text"]) == body["json"]
        enforcement = body["enforcement"]
        assert enforcement["mode"] == "grammar+validation" and 1 <= enforcement["samples"] <= ENFORCE_SAMPLES
        assert {"keyword": keyword, "pointer": "/"} in [{k: v[k] for k in ("keyword", "pointer")}
                                                       for v in enforcement["validated_keywords"]]
        assert r.headers["x-lift-enforcement"].startswith("grammar+validation; samples=")
    r = httpx.post(url + "/v1/generate", timeout=300, json={
        "prompt": "One digit.", "json_schema": {"type": "integer", "minimum": 0, "maximum": 9}, "max_tokens": 4})
    assert r.status_code == 200 and r.json()["enforcement"] == {"mode": "grammar", "samples": 1,
                                                                "validated_keywords": []}
    assert r.headers["x-lift-enforcement"] == "grammar"


@pytest.mark.model
def test_chat_completions_say_how_the_schema_was_enforced(url):
    schema = {"type": "object", "properties": {"n": {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 99},
                                                               {"type": "number", "minimum": 100}]}},
              "required": ["n"], "additionalProperties": False}
    body = {"model": "x", "messages": [{"role": "user", "content": "A JSON object with a small integer n."}],
            "temperature": 0, "max_tokens": 30,
            "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}}
    r = httpx.post(url + "/v1/chat/completions", timeout=300, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    jsonschema.validate(json.loads(out["choices"][0]["message"]["content"]), schema)
    assert out["object"] == "chat.completion" and out["enforcement"]["mode"] == "grammar+validation"
    assert r.headers["x-lift-enforcement"].startswith("grammar+validation")
    # streamed: the text arrives once validated; the finishing chunk says how
    with httpx.stream("POST", url + "/v1/chat/completions", timeout=300, json={**body, "stream": True}) as s:
        assert s.status_code == 200
        chunks = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: {")]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c.get("choices"))
    jsonschema.validate(json.loads(text), schema)
    assert chunks[-1]["enforcement"]["mode"] == "grammar+validation"


@pytest.mark.model
def test_a_schema_the_looser_grammar_cannot_satisfy_is_a_422_naming_the_keyword(url):
    r = httpx.post(url + "/v1/generate", timeout=300, json={"prompt": "x", "json_schema": NEVER, "max_tokens": 16})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["type"] == "schema_not_enforced" and "'not'" in err["message"]
    assert err["detail"]["samples"] == ENFORCE_SAMPLES and err["detail"]["validated_keywords"][0]["pointer"] == "/"
    assert json.loads(err["detail"]["text"])["a"] in range(10)  # the last output, which failed the full schema


@pytest.mark.model
def test_a_refused_schema_still_names_keyword_and_pointer(url):
    schema = {"$defs": {"x": {"not": {"type": "null"}}}, "type": "object", "properties": {"a": {"$ref": "#/$defs/x/not"}}}
    r = httpx.post(url + "/v1/generate", timeout=60, json={"prompt": "x", "json_schema": schema})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "unsupported_schema" and err["detail"]["keyword"] == "not"
    assert err["detail"]["pointer"] == "/$defs/x"


# ---------------------------------------------------------------- a looser grammar must stay a superset

def _enforced(schema: dict, backend: str):
    return GrammarCache(max_entries=4, compile_timeout_s=10.0).get(GrammarSpec.json_schema(schema), backend, VOCAB,
                                                                    relax=True)


@pytest.mark.parametrize("backend", ["llguidance", pytest.param("xgrammar", marks=requires_xgrammar)])
def test_unevaluated_items_beside_a_removed_conditional_is_not_read_as_items(backend):
    """JSTS unevaluatedItems#14: the if/then/else goes to validation, so unevaluatedItems must go too
    (read as ``items: false`` after the ``if`` was removed, it rejected the valid ["foo", "bar", "then"])."""
    schema = {"prefixItems": [{"const": "foo"}], "if": {"prefixItems": [True, {"const": "bar"}]},
              "then": {"prefixItems": [True, True, {"const": "then"}]}, "unevaluatedItems": False}
    compiled = _enforced(schema, backend)
    assert compiled.validation_needed
    assert run_instance(compiled, '["foo","bar","then"]', VOCAB).accepted


@requires_xgrammar
def test_xgrammar_any_value_is_compact_and_objects_keep_the_properties_their_schema_allows():
    for schema, text in [({"type": "object"}, '{"foo":1,"bar":[1,2]}'), ({}, '[1,{"a":null}]'),
                         ({"type": "object", "properties": {"a": {"type": "integer"}}}, '{"a":1,"b":"x"}')]:
        compiled = _enforced(schema, "xgrammar")
        assert run_instance(compiled, text, VOCAB).accepted, (schema, text)
        assert not run_instance(compiled, text.replace(",", ", "), VOCAB).accepted  # one spelling: compact


@requires_xgrammar
def test_xgrammar_keywords_beside_an_applicator_are_enforced_by_validation():
    """xgrammar reads only the anyOf and drops its siblings: {"a": "x"} got through the grammar below."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}},
              "anyOf": [{"properties": {"a": {"type": "string"}}}]}
    compiled = _enforced(schema, "xgrammar")
    assert compiled.validation_needed
    assert any(r.keyword == "anyOf" for r in compiled.relaxed)
    assert not run_instance(compiled, '{"a":"x"}', VOCAB).accepted  # the grammar keeps the properties


@requires_xgrammar
def test_xgrammar_refuses_property_names_it_would_mis_write():
    with pytest.raises(UnsupportedSchemaError) as info:
        _enforced({"type": "object", "properties": {'foo"bar': {"type": "number"}}}, "xgrammar")
    assert info.value.keyword == "properties" and info.value.pointer == "/"


@pytest.mark.parametrize(
    "schema, keyword, pointer",
    [
        # a look-around regex as a patternProperties key (MaskBench: JsonSchemaStore browser.i18n, vars)
        ({"type": "object", "patternProperties": {"^(?!@@)[a-z_]+$": {"type": "string"}}},
         "patternProperties", "/patternProperties/^(?!@@)[a-z_]+$"),
        # ... quoted by llguidance after rewriting \w: found by the longest shared start
        ({"type": "object", "patternProperties": {"^(?!@@)[\\w@]+$": {"type": "string"}}},
         "patternProperties", "/patternProperties/^(?!@@)[\\w@]+$"),
        ({"type": "object", "properties": {"m": {"type": "object", "patternProperties": {
            "^(?!(" + "|".join(f"word{i}" for i in range(40)) + "))[a-z]+$": {"type": "integer"}}}}},
         "patternProperties", None),
        # a recursive $ref merged with a sibling subschema (MaskBench: Github_easy o17683 and two more)
        ({"type": "object", "properties": {"node": {"$ref": "#/definitions/Node"}}, "definitions": {
            "Extra": {"type": "object"},
            "Node": {"type": "object", "properties": {"kids": {"allOf": [{"$ref": "#/definitions/Node"},
                                                                          {"$ref": "#/definitions/Extra"}]}}}}},
         "$ref", "/definitions/Node/properties/kids/allOf/0"),
    ],
)
def test_llguidance_compile_errors_are_refused_by_keyword_and_pointer(schema, keyword, pointer):
    """The last unnamed refusals of the full MaskBench run: each must name keyword and pointer."""
    with pytest.raises(UnsupportedSchemaError) as err:
        GrammarCache(max_entries=4, compile_timeout_s=10.0).get(GrammarSpec.json_schema(schema), "llguidance", VOCAB,
                                                                relax=True)
    assert err.value.detail["keyword"] == keyword
    if pointer is not None:
        assert err.value.detail["pointer"] == pointer
    else:
        assert err.value.detail["pointer"].startswith("/properties/m/patternProperties/^(?!(word0|")


def test_overlapping_pattern_properties_stay_enforced_by_validation_not_refused():
    """llguidance: "patternProperty regexes /.*/ and /^id$/ are not disjoint" names the object, not one key:
    enforced mode leaves patternProperties to validation (claiming the key turned 23 MaskBench schemas into refusals)."""
    schema = {"type": "object", "patternProperties": {".*": {"type": "string"}, "^id$": {"type": "string", "maxLength": 3}}}
    compiled = _enforced(schema, "llguidance")
    assert compiled.validation_needed
    assert run_instance(compiled, '{"id":"abc"}', VOCAB).accepted


# -- the bench's canonical serialization is the one the grammar writes (MaskBench: 44 "valid rejected" were 38
#    serialization mismatches and 6 real llguidance rejections, see test_grammar_lint and test_ir_real_model)

CANONICAL_CASES = [
    # properties merge in the order their keywords are written: anyOf branch, own properties, allOf entry
    ({"anyOf": [{"properties": {"c": {"type": "string"}}}], "properties": {"n": {"type": "string"}},
      "allOf": [{"properties": {"b": {"type": "string"}}}]},
     {"b": "x", "n": "x", "c": "x"}, '{"c":"x","n":"x","b":"x"}'),
    # own properties written first stay first (JSTS allOf "with base schema")
    ({"properties": {"bar": {"type": "integer"}}, "required": ["bar"],
      "allOf": [{"properties": {"foo": {"type": "string"}}, "required": ["foo"]}]},
     {"foo": "q", "bar": 2}, '{"bar":2,"foo":"q"}'),
    # a $ref written first: its target's properties first
    ({"$defs": {"X": {"properties": {"u": {"type": "string"}}}}, "$ref": "#/$defs/X",
      "properties": {"n": {"type": "string"}}}, {"n": "a", "u": "b"}, '{"u":"b","n":"a"}'),
    # required keys no `properties` declares come next, in `required` order, before the rest
    ({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["xz", "xb"]},
     {"xq": "2", "xb": "3", "a": "1", "xz": "4"}, '{"a":"1","xz":"4","xb":"3","xq":"2"}'),
    # a bounded number has no exponent; an integral float in an enum is written as an integer
    ({"type": "object", "properties": {"e": {"type": "number", "minimum": 0}, "k": {"enum": [{"a": 0.0}]}}},
     {"e": 1e-06, "k": {"a": 0.0}}, '{"e":0.000001,"k":{"a":0}}'),
]


@pytest.mark.parametrize("schema, value, text", CANONICAL_CASES)
def test_the_canonical_serialization_is_what_llguidance_accepts(schema, value, text):
    assert jsonschema.Draft202012Validator(schema).is_valid(value)
    assert serialize(value, schema, subschema_validity(schema)) == text
    compiled = GrammarCache(max_entries=4).get(GrammarSpec.json_schema(schema), "llguidance", VOCAB, relax=True)
    assert run_instance(compiled, text, VOCAB).accepted
    assert run_instance(compiled, text, VOCAB, masked=True).accepted


def test_a_refusal_after_a_mask_rebuilds_the_shared_lexer_for_the_next_matcher():
    """A token the mask allowed but the parser refuses is the lexer's failure (llguidance grows one lexer shared
    by every copy and never shrinks it): the next request's matcher must not inherit it."""
    compiled = GrammarCache(max_entries=4).get(GrammarSpec.json_schema({"type": "integer"}), "llguidance", VOCAB)
    first = compiled.matcher()
    lexer = first._lexer
    before = lexer.probe
    assert compiled.matcher()._lexer.probe is before  # copies share one pristine matcher
    from lift_sys.generation.grammar.base import new_bitmask

    first.fill_bitmask(new_bitmask(VOCAB.n_vocab))
    assert not first.accept(VOCAB.tokenize(b"x")[0])  # refused after a mask: marks the lexer spent
    again = compiled.matcher()
    assert lexer.probe is not before and again.accept(VOCAB.tokenize(b"7")[0])
    assert not compiled.matcher().accept(VOCAB.tokenize(b"x")[0]) and lexer.probe is not before
    fresh = compiled.fresh_matcher()
    assert fresh.accept(VOCAB.tokenize(b"1")[0])


def _raw_llguidance_decodes(vocab, schema, text) -> bool:
    """Whether llguidance itself, given ``schema`` as written, decodes ``text`` as the engine does (a mask first)."""
    import llguidance
    import numpy as np

    from lift_sys.generation.grammar.base import new_bitmask
    from lift_sys.generation.grammar.llguidance_backend import COMPACT, LLGuidanceBackend, _limits

    raw = llguidance.LLMatcher(LLGuidanceBackend()._tokenizer(vocab),
                               llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=COMPACT),
                               log_level=0, limits=_limits())
    mask = new_bitmask(vocab.n_vocab)
    words = mask.view(np.uint32)
    for token in vocab.tokenize(text.encode()):
        raw.unsafe_compute_mask_ptr(mask.ctypes.data, mask.nbytes)
        if not (int(words[token >> 5]) >> (token & 31)) & 1 or not raw.consume_token(token):
            return False
    return True


def test_a_length_beside_a_pattern_is_validated_because_llguidance_rejects_valid_strings_there(engine):
    """The reason for relaxing it, decoded as the engine does (a mask before every token) with the model's
    tokens (byte tokens do not show it): llguidance 1.9.1 intersects MaskBench's word-count pattern with
    maxLength 5000 and fails at the 2nd word, "too many expressions constructed"."""
    import llguidance

    vocab = engine.vocabulary()
    schema = {"type": "object", "properties": {"q": {"type": "string", "pattern": "^$|(^(?:\\S+\\s+){0,99}\\S+$)",
                                                     "minLength": 1, "maxLength": 5000}}}
    text = '{"q":"What is the meaning of life?"}'
    assert jsonschema.Draft202012Validator(schema).is_valid(json.loads(text))
    if _raw_llguidance_decodes(vocab, schema, text):
        pytest.skip(f"llguidance {llguidance.__version__} decodes it now: the relaxation can go")
    compiled = GrammarCache(max_entries=4).get(GrammarSpec.json_schema(schema), "llguidance", vocab, relax=True)
    assert sorted((r.keyword, r.pointer) for r in compiled.relaxed) == [("maxLength", "/properties/q"),
                                                                        ("minLength", "/properties/q")]
    assert run_instance(compiled, text, vocab, masked=True).accepted


def test_a_long_unanchored_key_pattern_is_trimmed_because_llguidance_fills_its_lexer_on_it(engine):
    """MaskBench Github_trivial---o78117, decoded as the engine does with the model's tokens: the key
    pattern ``[A-Za-z0-9-_.:]{1,255}`` (a search) filled llguidance 1.9.1's lexer at the first key; the
    same search as ``[A-Za-z0-9-_.:]`` (:mod:`search_regex`, an exact rewrite) decodes it."""
    import llguidance

    vocab = engine.vocabulary()
    schema = {"type": "object", "patternProperties": {"[A-Za-z0-9-_.:]{1,255}": {"type": "string"}}}
    text = '{"child1":"https://example.com/child1","child-3":"https://example.com/child-3"}'
    if _raw_llguidance_decodes(vocab, schema, text):
        pytest.skip(f"llguidance {llguidance.__version__} decodes it now: the trim is no longer needed")
    compiled = GrammarCache(max_entries=4).get(GrammarSpec.json_schema(schema), "llguidance", vocab, relax=True)
    assert compiled.relaxed == ()  # exact: nothing left to validation
    assert run_instance(compiled, text, vocab, masked=True).accepted
    assert not run_instance(compiled, '{"ab":1}', vocab, masked=True).accepted  # a matching key: a string
    assert run_instance(compiled, '{"!!":1}', vocab, masked=True).accepted  # no matching character: any value
