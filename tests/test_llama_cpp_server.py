"""The remote engine against a second, independent OpenAI-compatible server: llama-cpp-python's own.

``python -m llama_cpp.server`` serves the embedded model on loopback; it knows
``response_format`` only as ``{"type": "json_object", "schema": ...}`` and
refuses ``json_schema`` -- the engine must notice, switch dialect, and still
get schema-constrained output (its grammar comes from llama.cpp's own
json_schema -> GBNF converter, not ours).
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx
import jsonschema
import pytest

from lift_sys.generation.engines.openai_http import OpenAIHTTPEngine
from lift_sys.generation.grammar import GrammarSpec
from lift_sys.generation.registry import ensure_model, get_model
from lift_sys.service.core import GenerateOptions, InferenceService

from .serving import free_port

pytestmark = pytest.mark.model

PET = {
    "type": "object",
    "properties": {"name": {"type": "string", "pattern": "^[A-Z][a-z]{1,12}$"},
                   "kind": {"enum": ["cat", "dog", "fish"]},
                   "age": {"type": "integer"}},
    "required": ["name", "kind", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    path = ensure_model(get_model(None))
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "stderr.log"  # a file: llama.cpp's load log fills a pipe
    with open(log, "wb") as errf:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
                                 "--port", str(port), "--n_ctx", "2048", "--model_alias", "qwen-embedded"],
                                stdout=subprocess.DEVNULL, stderr=errf)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not come up: " + log.read_text(errors="replace")[-2000:])
            try:
                if httpx.get(url + "/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_schema_constrained_output_through_llama_cpp_server(llama_server):
    engine = OpenAIHTTPEngine(llama_server, model="qwen-embedded")
    service = InferenceService(engine)
    for prompt in ("Describe a pet as JSON.", "Invent a dog."):
        result = service.generate([{"role": "user", "content": prompt}], GrammarSpec.json_schema(PET),
                                  GenerateOptions(max_tokens=60))
        jsonschema.validate(result.json, PET)
        assert result.completion.finish_reason == "stop"
    assert engine.info()["model"] == "qwen-embedded"
    # it refused json_schema once and the engine now speaks its dialect
    assert engine._schema_dialect == "llama.cpp"


def test_truncation_through_llama_cpp_server_is_reported(llama_server):
    service = InferenceService(OpenAIHTTPEngine(llama_server, model="qwen-embedded"))
    from lift_sys.errors import TruncatedOutput

    with pytest.raises(TruncatedOutput) as err:
        service.generate([{"role": "user", "content": "Describe a pet as JSON."}], GrammarSpec.json_schema(PET),
                         GenerateOptions(max_tokens=3))
    assert err.value.detail["partial_text"].startswith("{")
