"""The IR models and their generated schema (fast, no model)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from lift_sys.errors import OutputValidationError
from lift_sys.generation.grammar.lint import iter_schemas, lint_schema
from lift_sys.ir import IR, IRSpec, check_ir, ir_generation_schema, ir_schema, parse_ir_json
from lift_sys.ir.prompt import EXAMPLE_IR


def test_example_round_trips_model_json_model():
    spec = IRSpec.model_validate(EXAMPLE_IR)
    ir = IR.from_spec(spec, model="m", grammar_backend="llguidance")
    text = ir.model_dump_json()
    again = IR.model_validate_json(text)
    assert again == ir
    assert again.signature.name == "count_vowels"
    assert again.examples[2].raises == "TypeError"
    assert again.metadata.grammar_backend == "llguidance"
    jsonschema.validate(json.loads(text), ir_schema())


def test_generation_schema_excludes_metadata_and_forbids_extra_keys():
    schema = ir_generation_schema()
    assert "metadata" not in schema["properties"]
    assert set(schema["required"]) == {"intent", "signature", "effects", "assertions", "examples", "holes"}
    for pointer, node in iter_schemas(schema):
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is False, pointer
        assert "title" not in node, pointer


@pytest.mark.parametrize("backend", ["llguidance", "xgrammar"])
def test_ir_schema_uses_only_keywords_every_backend_enforces(backend):
    # raises on any unenforced keyword; trusted: our own schema may be served *narrower* (xgrammar writes no
    # escape inside the predicate's pattern, so a predicate uses single quotes), never looser
    lint_schema(ir_generation_schema(), backend, trusted=True)
    from lift_sys.generation.grammar.lint import TRUSTED_SCHEMAS
    from lift_sys.service.core import _IR_GRAMMAR

    assert _IR_GRAMMAR.key in TRUSTED_SCHEMAS and _IR_GRAMMAR.source == ir_generation_schema()


def test_schema_and_pydantic_agree_on_bad_names():
    bad = json.loads(json.dumps(EXAMPLE_IR))
    bad["signature"]["name"] = "CountVowels"
    with pytest.raises(OutputValidationError, match="/signature/name"):
        parse_ir_json(json.dumps(bad))
    with pytest.raises(OutputValidationError, match="not JSON"):
        parse_ir_json('{"intent": ')


def test_extra_keys_rejected():
    bad = dict(EXAMPLE_IR, extra=1)
    with pytest.raises(OutputValidationError, match="Additional properties"):
        parse_ir_json(json.dumps(bad))


def test_semantic_checks_find_what_the_schema_cannot():
    doc = json.loads(json.dumps(EXAMPLE_IR))
    doc["assertions"][0]["predicate"] = "isinstance(text,"
    doc["examples"][0]["inputs"] = {"txt": "Hello"}
    found = check_ir(IRSpec.model_validate(doc))
    wheres = {c.where for c in found}
    assert "/assertions/0/predicate" in wheres
    assert "/examples/0/inputs" in wheres
    assert check_ir(IRSpec.model_validate(EXAMPLE_IR)) == []


def test_validate_json_fast_check_and_named_failure():
    from lift_sys.generation.grammar import GrammarSpec
    from lift_sys.ir.validate import validate_json

    schema = {"type": "object", "required": ["n"], "additionalProperties": False,
              "properties": {"n": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]}}}
    spec = GrammarSpec.json_schema(schema)
    validate_json({"n": 3}, schema, schema_key=spec.key)
    validate_json({"n": None}, schema)
    with pytest.raises(OutputValidationError) as e:
        validate_json({"n": -1}, schema, schema_key=spec.key)
    assert e.value.detail["pointer"] == "/n" and "/n" in str(e.value)
    with pytest.raises(OutputValidationError) as e:
        validate_json({"n": 1, "extra": 2}, schema)
    assert "extra" in str(e.value) and e.value.detail["validator"] == "additionalProperties"
    # The IR itself, through the same fast path.
    validate_json(EXAMPLE_IR, ir_generation_schema())
    bad = {**EXAMPLE_IR, "signature": {**EXAMPLE_IR["signature"], "name": 7}}
    with pytest.raises(OutputValidationError) as e:
        validate_json(bad, ir_generation_schema())
    assert e.value.detail["pointer"] == "/signature/name"


def test_validate_json_schema_jsonschema_rs_refuses_still_validates():
    """A pattern in Python's dialect but not jsonschema-rs's: checked by jsonschema instead of crashing."""
    from lift_sys.ir.validate import validate_json

    schema = {"type": "string", "pattern": r"^(?P<c>a)(?P=c)$"}
    validate_json("aa", schema)
    with pytest.raises(OutputValidationError) as e:
        validate_json("ab", schema)
    assert e.value.detail["validator"] == "pattern"


def test_hand_written_ir_may_leave_out_optional_fields_but_the_model_may_not():
    from lift_sys.ir.models import ir_generation_schema

    spec = IRSpec.model_validate({
        "intent": {"summary": "Double n."},
        "signature": {"name": "double", "parameters": [{"name": "n", "type_hint": "int"}], "returns": "int"},
        "examples": [{"inputs": {"n": 2}, "output": 4}, {"inputs": {"n": "x"}, "raises": "TypeError"}],
        "assertions": [{"kind": "postcondition", "predicate": "result == 2 * n"}],
    })
    assert spec.examples[0].raises is None and spec.examples[1].output is None
    assert spec.intent.rationale == "" and spec.holes == [] and spec.effects == []
    gen = ir_generation_schema()
    example = gen["$defs"]["Example"]
    assert set(example["required"]) == {"inputs", "output", "raises"}
    assert "default" not in json.dumps(gen)
    assert set(gen["required"]) == {"intent", "signature", "effects", "assertions", "examples", "holes"}
