"""The IR grammar fitted to the request's ``def`` line (lift_sys/ir/typed.py): fixed signature, typed examples.

Grammar level with a byte vocabulary (no model), both backends: an IR
whose examples use the parameters and the annotated types is accepted; an
example with an unknown or missing key, a wrongly typed input or output,
or a signature other than the request's is rejected -- HumanEval/7's loop
on ``{"inputs":{"":"","":"a"}}`` and HumanEval/6's ``[0,"1"]`` for a
``List[int]`` cannot be written. And the service uses it: with a fake
(remote-kind) engine the schema it is handed is the fitted one.
"""

from __future__ import annotations

import json

import pytest

from lift_sys.generation.engines.fake import FakeEngine
from lift_sys.generation.grammar import GrammarSpec
from lift_sys.generation.grammar.conformance import byte_vocabulary, run_instance
from lift_sys.generation.grammar.lint import TRUSTED_SCHEMAS
from lift_sys.generation.options import GenerateOptions
from lift_sys.ir.given import request_signature
from lift_sys.ir.typed import fitted_ir_schema, value_schema
from lift_sys.service.core import InferenceService, ir_grammar_for

from .conftest import requires_xgrammar

REQUEST = '''from typing import List


def filter_by_substring(strings: List[str], substring: str) -> List[str]:
    """ Filter an input list of strings only for ones that contain given substring
    >>> filter_by_substring(['abc', 'bacd', 'cde', 'array'], 'a')
    ['abc', 'bacd', 'array']
    """
'''


def _ir(**changes) -> dict:
    doc = {
        "intent": {"summary": "Keep the strings containing substring.", "rationale": "Order is kept."},
        "signature": {"name": "filter_by_substring",
                      "parameters": [{"name": "strings", "type_hint": "List[str]", "description": "The list."},
                                     {"name": "substring", "type_hint": "str", "description": "To look for."}],
                      "returns": "List[str]"},
        "effects": [],
        "assertions": [{"kind": "postcondition", "predicate": "all(substring in s for s in result)",
                        "description": "Only matches."}],
        "examples": [{"inputs": {"strings": ["ab", "c"], "substring": "a"}, "output": ["ab"], "raises": None},
                     {"inputs": {"strings": ["a"], "substring": ""}, "output": None, "raises": "ValueError"}],
        "holes": [],
    }
    doc.update(changes)
    return doc


def test_annotations_become_json_types():
    assert value_schema("int") == {"type": "integer"} and value_schema("bool") == {"type": "boolean"}
    assert value_schema("List[int]") == {"type": "array", "items": {"type": "integer"}, "maxItems": 16}
    assert value_schema("Optional[str]") == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    assert value_schema("str | None") == value_schema("Optional[str]")
    assert value_schema("Dict[str, float]") == {"type": "object", "additionalProperties": {"type": "number"}}
    assert value_schema("Tuple[int, int]")["prefixItems"] == [{"type": "integer"}] * 2
    assert value_schema("tuple[str, ...]")["items"] == {"type": "string"}
    assert value_schema("typing.List[float]")["items"] == {"type": "number"}
    # not understood: any JSON value, as the generic schema has it
    for hint in ("Any", "MyClass", "Callable[[int], int]", "List[", "", None, "Union[int, Any]"):
        assert value_schema(hint) == {"$ref": "#/$defs/JsonValue"}, hint


def test_a_header_the_generic_schema_could_not_hold_keeps_the_generic_grammar():
    assert ir_grammar_for("reverse a string").key == ir_grammar_for("count the vowels").key  # no def line
    camel = "def isPalindrome(text: str) -> bool:\n    pass\n"
    assert fitted_ir_schema(*request_signature(camel)) is None
    assert ir_grammar_for(camel).key == ir_grammar_for("reverse a string").key
    assert ir_grammar_for(REQUEST).key != ir_grammar_for("reverse a string").key
    generic = ir_grammar_for("reverse a string").key
    nine = "def f(" + ", ".join(f"a{i}: int" for i in range(9)) + ") -> int:\n    pass\n"
    long_hint = "def f(x: " + "List[" * 30 + "int" + "]" * 30 + ") -> int:\n    pass\n"
    for hostile in (nine, long_hint, "def f(x, x) -> int:\n    pass\n"):
        assert ir_grammar_for(hostile).key == generic, hostile
    deep = value_schema("List[" * 20 + "int" + "]" * 20)  # nesting is cut to any JSON value, not recursed
    assert "$ref" in json.dumps(deep) and json.dumps(deep).count('"array"') <= 6


@pytest.mark.parametrize("backend", ["llguidance", pytest.param("xgrammar", marks=requires_xgrammar)])
def test_the_fitted_grammar_accepts_the_request_s_shape_and_nothing_else(backend):
    from lift_sys.generation.grammar.llguidance_backend import LLGuidanceBackend

    spec = ir_grammar_for(REQUEST)
    assert spec.key in TRUSTED_SCHEMAS  # our own schema, registered by the service
    if backend == "xgrammar":
        from lift_sys.generation.grammar.xgrammar_backend import XGrammarBackend as Backend
    else:
        Backend = LLGuidanceBackend
    vocab = byte_vocabulary()
    compiled = Backend().compile(spec, vocab)

    def accepts(doc: dict) -> bool:
        return run_instance(compiled, json.dumps(doc, separators=(",", ":"), ensure_ascii=False), vocab).accepted

    good = _ir()
    assert accepts(good)
    # a call that raises may break the annotations (the prompt's worked example: TypeError for a non-str)
    assert accepts(_ir(examples=[{"inputs": {"strings": None, "substring": 5}, "output": None, "raises": "TypeError"}]))
    example = good["examples"][0]
    bad_examples = [
        {**example, "inputs": {"": "", "substring": "a"}},  # HumanEval/7's loop: an empty parameter name
        {**example, "inputs": {"strings": ["ab"]}},  # a parameter missing
        {**example, "inputs": {"strings": ["ab"], "substring": "a", "extra": 1}},  # an unknown one
        {**example, "inputs": {"strings": [1, "c"], "substring": "a"}},  # List[str] holding a number
        {**example, "output": [0, "1"]},  # HumanEval/6's mixed list for a typed result
        {**example, "output": "ab"},
        {**example, "inputs": {"strings": None, "substring": "a"}},  # untyped arguments, yet it returns
        {"inputs": {"strings": None, "substring": "a"}, "output": ["ab"], "raises": "TypeError"},  # raises, with a value
    ]
    for bad in bad_examples:
        assert not accepts(_ir(examples=[bad])), bad
    sig = good["signature"]
    assert not accepts(_ir(signature={**sig, "name": "filter_strings"}))
    assert not accepts(_ir(signature={**sig, "returns": "list"}))
    assert not accepts(_ir(signature={**sig, "parameters": sig["parameters"][:1]}))


def _inputs(schema: dict, shape: int = 0) -> dict:
    return schema["$defs"]["Example"]["anyOf"][shape]["properties"]["inputs"]


def test_the_service_hands_the_engine_the_fitted_schema_and_keeps_the_request_s_signature():
    engine = FakeEngine()  # answers with the smallest instance of the schema it is handed
    result = InferenceService(engine).generate_ir(REQUEST, GenerateOptions(max_tokens=1000))
    handed = engine.calls[0][2].spec.source
    assert handed["$defs"]["Signature"]["properties"]["name"] == {"enum": ["filter_by_substring"]}
    assert _inputs(handed)["required"] == ["strings", "substring"]
    assert result.ir.signature.name == "filter_by_substring" and result.fitted == "def line"
    assert [p.name for p in result.ir.signature.parameters] == ["strings", "substring"]
    given = [e for e in result.ir.examples if e.given]
    assert given and given[0].inputs == {"strings": ["abc", "bacd", "cde", "array"], "substring": "a"}


def _plain_ir() -> str:
    doc = _ir()
    doc["examples"] = [{"inputs": {"strings": ["ab", "c"], "substring": "a"}, "output": ["ab"], "raises": None}]
    return json.dumps(doc, separators=(",", ":"))


def test_with_no_def_line_the_sample_is_fitted_once_its_signature_is_written():
    """Stopped after the signature, then the *same* sample continues under the grammar fitted to it."""
    engine = FakeEngine([_plain_ir()], can_continue=True)
    result = InferenceService(engine).generate_ir("keep the strings that contain a substring",
                                                  GenerateOptions(max_tokens=1000))
    assert len(engine.calls) == 2 and result.samples == 1 and result.resampled == [] and result.fitted == "signature"
    first, second = engine.calls[0][2].spec.source, engine.calls[1][2].spec.source
    assert first["$defs"]["Example"]["properties"]["inputs"].get("required") is None  # generic
    fitted = _inputs(second)
    assert fitted["required"] == ["strings", "substring"] and fitted["additionalProperties"] is False
    assert fitted["properties"]["strings"] == value_schema("List[str]")
    kept = engine.continuations[0]
    assert kept.completion.text[: kept.chars].endswith('"returns":"List[str]"}')  # through the signature's end
    assert result.ir.examples[0].inputs == {"strings": ["ab", "c"], "substring": "a"}


def test_a_remote_engine_keeps_the_generic_grammar_for_a_request_with_no_def_line():
    engine = FakeEngine([_plain_ir()])  # remote kind: cannot continue a completion
    result = InferenceService(engine).generate_ir("keep the strings that contain a substring", GenerateOptions(max_tokens=1000))
    assert len(engine.calls) == 1 and engine.continuations == []
    assert result.fitted == ""
