"""Mask plumbing on real llama.cpp with a random-weights model: the grammar alone makes it valid."""

from __future__ import annotations

import json

import jsonschema
import pytest

from lift_sys.generation.engines.base import GenerateOptions
from lift_sys.generation.engines.llamacpp import LlamaCppEngine
from lift_sys.generation.registry import ensure_model, get_model
from lift_sys.service.core import GenerateOptions, InferenceService

from .tiny_gguf import make_tiny_qwen2

SCHEMA = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 999},
        "color": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["ok", "n", "color", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    path = make_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "tiny.gguf", ensure_model(get_model()))
    return LlamaCppEngine(path, model_name="tiny-random", n_ctx=1024)


def test_without_the_grammar_random_weights_are_not_json(tiny_engine):
    c = tiny_engine.generate([{"role": "user", "content": "json please"}], GenerateOptions(max_tokens=24))
    with pytest.raises(ValueError):
        json.loads(c.text)


@pytest.mark.parametrize("backend", ["llguidance", "xgrammar"])
@pytest.mark.parametrize("temperature, seed", [(0.0, None), (1.0, 7), (1.0, 8)])
def test_with_the_grammar_random_weights_give_schema_valid_json(tiny_engine, backend, temperature, seed):
    service = InferenceService(tiny_engine, default_backend=backend)
    result = service.generate(
        "json please", SCHEMA, GenerateOptions(max_tokens=200, temperature=temperature, seed=seed)
    )
    assert result.finish_reason == "stop"
    jsonschema.validate(result.json, SCHEMA)
    assert json.loads(result.text) == result.json
    assert result.grammar_backend == backend


def test_fast_forward_appends_forced_tokens(tiny_engine):
    service = InferenceService(tiny_engine, default_backend="llguidance")
    result = service.generate("json please", SCHEMA, GenerateOptions(max_tokens=200))
    # keys like "color" are forced by the grammar: appended without sampling
    assert result.completion.forced_tokens > 0
    assert result.completion.completion_tokens > result.completion.forced_tokens
