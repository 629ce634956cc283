"""The service over the fake engine: every path above the engine, in milliseconds (no model)."""

from __future__ import annotations

import json

from lift_sys.codegen.prompt import fenced

import pytest

from lift_sys.errors import InvalidRequest, OutputValidationError, TruncatedOutput
from lift_sys.generation.engines.base import CancelToken
from lift_sys.generation.engines.fake import FakeEngine, minimal_instance, pieces
from lift_sys.generation.grammar import GrammarSpec
from lift_sys.service.core import GenerateOptions, InferenceService
from lift_sys.ir.prompt import EXAMPLE_IR

GOOD_CODE = ("def count_vowels(text: str) -> int:\n    if not isinstance(text, str):\n        raise TypeError('no')\n"
             "    return sum(1 for ch in text.lower() if ch in 'aeiou')\n")


def test_ir_from_a_scripted_answer_is_validated_and_stamped():
    engine = FakeEngine([json.dumps(EXAMPLE_IR)])
    result = InferenceService(engine).generate_ir("count the vowels in a string")
    assert result.ir.signature.name == "count_vowels"
    assert result.ir.metadata.model == "fake-model"
    messages, params, constraint = engine.calls[0]
    assert "count the vowels in a string" in messages[-1]["content"]
    assert constraint is not None and constraint.spec.kind == "json_schema"  # the spec went to the engine


def test_truncation_keeps_the_partial_text():
    text = json.dumps(EXAMPLE_IR)
    with pytest.raises(TruncatedOutput) as err:
        InferenceService(FakeEngine([text])).generate_ir("x", GenerateOptions(max_tokens=10))
    partial = err.value.detail["partial_text"]
    assert partial == "".join(pieces(text)[:10]) and text.startswith(partial)


def test_output_that_breaks_the_schema_is_refused_not_returned():
    with pytest.raises(OutputValidationError):
        InferenceService(FakeEngine(['{"intent": 5}'])).generate_ir("x")


def test_generate_returns_the_smallest_instance_of_any_schema():
    schema = {"type": "object", "properties": {"color": {"enum": ["red", "green"]}, "n": {"type": "integer", "minimum": 3}},
              "required": ["color", "n"], "additionalProperties": False}
    result = InferenceService(FakeEngine()).generate([{"role": "user", "content": "hi"}], GrammarSpec.json_schema(schema))
    assert result.json == {"color": "red", "n": 3} == minimal_instance(schema)


def test_streaming_and_cancel():
    seen: list[str] = []
    cancel = CancelToken()

    def on_text(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 3:
            cancel.cancel()

    engine = FakeEngine(["one two three four five six"])
    with pytest.raises(Exception) as err:
        InferenceService(engine).generate([{"role": "user", "content": "hi"}], None, on_text=on_text, cancel=cancel)
    assert type(err.value).__name__ == "Cancelled"
    assert seen == ["one", " ", "two"]


def test_empty_request_is_refused():
    with pytest.raises(InvalidRequest):
        InferenceService(FakeEngine()).generate_ir("   ")


def test_verified_code_repairs_with_the_sandbox_feedback():
    wrong = GOOD_CODE.replace("'aeiou'", "'ae'")
    engine = FakeEngine([fenced(wrong), fenced(GOOD_CODE)])
    from lift_sys.ir.validate import spec_from_document

    # a client's IR: its examples are given (facts), so a failed one is fed back to the next candidate
    result = InferenceService(engine).generate_verified_code(spec_from_document(EXAMPLE_IR), attempts=3)
    assert result.verified and len(result.attempts) == 3  # the third agrees with the second
    repair_prompt = engine.calls[1][0][-1]["content"]
    assert "example[0]" in repair_prompt and "expected 2" in repair_prompt


def test_pipeline_endpoint_is_counted_in_metrics_under_its_own_name():
    """/v1/pipeline (NL -> IR -> verified code) over the fake engine; /metrics names it (it used to be "other")."""
    import httpx

    from lift_sys.server.app import asgi
    from lift_sys.settings import Settings

    from .serving import running

    answers = [json.dumps(EXAMPLE_IR), fenced(GOOD_CODE)]
    with running(asgi(InferenceService(FakeEngine(answers)), Settings(warm_up=False))) as url:
        r = httpx.post(url + "/v1/pipeline", json={"prompt": "count the vowels", "attempts": 1}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["verified"] is True
        metrics = httpx.get(url + "/metrics").text
    assert 'endpoint="/v1/pipeline"' in metrics
