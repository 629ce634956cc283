"""IR generation with the real embedded model, on both grammar backends.

Few and focused: 3 requests over 2 backends (4 IRs), greedy. The assertions are on
content: the IR validates against the schema *and* the pydantic model, the
function name is snake_case and about the request, parameters exist.
"""

from __future__ import annotations

import re

import jsonschema
import pytest

from lift_sys.errors import TruncatedOutput
from lift_sys.service.core import GenerateOptions
from lift_sys.ir import IR, ir_schema

pytestmark = pytest.mark.model

REQUESTS = [
    ("a function that returns the n-th Fibonacci number, raising ValueError for negative n", ("fib",)),
    ("a function that checks whether a string is a palindrome, ignoring case", ("palindrome", "pal")),
    ("a function that returns the largest element of a non-empty list of integers", ("largest", "max")),
]


# Each request once and each backend on more than one request: 4 IRs, not 6 (a real-model IR is
# 10-45 s here; the grammar's language on both backends is covered at grammar level elsewhere).
CASES = [
    pytest.param(REQUESTS[0][0], REQUESTS[0][1], "llguidance", id="fibonacci-llguidance"),
    pytest.param(REQUESTS[0][0], REQUESTS[0][1], "xgrammar", id="fibonacci-xgrammar"),
    pytest.param(REQUESTS[1][0], REQUESTS[1][1], "xgrammar", id="palindrome-xgrammar"),
    pytest.param(REQUESTS[2][0], REQUESTS[2][1], "llguidance", id="largest-llguidance"),
]


@pytest.mark.parametrize("request_text, name_hints, backend", CASES)
def test_ir_from_request(service, backend, request_text, name_hints):
    result = service.generate_ir(request_text, GenerateOptions(max_tokens=900, grammar_backend=backend))
    ir = result.ir
    doc = ir.model_dump(mode="json")
    jsonschema.validate(doc, ir_schema())
    assert IR.model_validate(doc) == ir
    assert result.generation.finish_reason == "stop"
    assert ir.metadata.grammar_backend == backend
    assert ir.metadata.model == "qwen2.5-coder-0.5b-instruct"
    name = ir.signature.name
    assert re.fullmatch(r"[a-z_][a-z0-9_]*", name)
    assert any(h in name for h in name_hints), name
    assert len(ir.signature.parameters) >= 1
    # once the signature was written, the rest of the same sample was fitted to it (ir/typed.py): every
    # example's inputs are exactly the parameters
    assert result.fitted == "signature"
    names = [p.name for p in ir.signature.parameters]
    assert ir.examples and all(list(e.inputs) == names for e in ir.examples), (names, ir.examples)
    assert result.generation.completion.completion_tokens > 20
    # the raw text is one compact JSON object: no whitespace at all outside strings
    assert result.generation.text.startswith("{") and result.generation.text.endswith("}")
    structure = re.sub(r'"(?:[^"\\]|\\.)*"', '""', result.generation.text)
    assert not re.search(r"\s", structure), structure


def test_truncation_is_reported_not_invalid_json(service):
    with pytest.raises(TruncatedOutput) as info:
        service.generate_ir(REQUESTS[0][0], GenerateOptions(max_tokens=20))
    exc = info.value
    assert exc.max_tokens == 20
    assert exc.partial_text.startswith('{"intent":')
    assert exc.detail["completion_tokens"] == 20


def test_prefix_cache_reuses_the_shared_prompt(service, engine):
    # The prompt is what is cached, so a few tokens of output show it (a cut IR carries its generation).
    def cut(request: str):
        with pytest.raises(TruncatedOutput) as info:
            service.generate_ir(request, GenerateOptions(max_tokens=16))
        return info.value.result

    cut(REQUESTS[0][0])
    second = cut(REQUESTS[1][0])
    c = second.completion
    # system prompt + worked example are shared: most of the prompt is not re-evaluated
    assert c.cached_prompt_tokens > 0.7 * c.prompt_tokens
    assert second.compile_cache_hit
