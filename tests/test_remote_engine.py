"""The OpenAI-compatible HTTP engine, against our own server on loopback (a real server, not a stub).

Retry and redirect behaviour is checked against a tiny stdlib HTTP server
that answers the way overloaded servers and Modal do (503, then 303).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lift_sys.errors import EngineError, PromptTooLong, TruncatedOutput, UnsupportedSchemaError
from lift_sys.generation.engines.base import GenerateOptions
from lift_sys.generation.engines.openai_http import OpenAIHTTPEngine
from lift_sys.server.app import asgi
from lift_sys.service.core import GenerateOptions, InferenceService
from lift_sys.settings import Settings

from .serving import free_port, running

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def remote(service):
    with running(asgi(service, Settings())) as url:
        engine = OpenAIHTTPEngine(url + "/v1")  # a /v1 suffix is accepted too
        yield InferenceService(engine)
        engine.close()


def test_ir_through_the_remote_engine(remote):
    result = remote.generate_ir("a function that returns the n-th Fibonacci number, raising ValueError for negative n")
    assert "fib" in result.ir.signature.name
    c = result.generation.completion
    assert c.finish_reason == "stop"
    assert c.prompt_tokens > 100 and c.completion_tokens > 20  # usage reported faithfully
    assert remote.engine.model_name == "qwen2.5-coder-0.5b-instruct"  # discovered from /v1/models
    assert result.ir.metadata.model == "qwen2.5-coder-0.5b-instruct"
    # The server's prefix cache, as reported in OpenAI's usage.prompt_tokens_details: a second IR
    # request shares the system prompt and worked example with the first.
    # (a few tokens of output show it: a cut IR carries its generation)
    with pytest.raises(TruncatedOutput) as cut:
        remote.generate_ir("a function that doubles a number", GenerateOptions(max_tokens=16))
    second = cut.value.result.completion
    assert second.prompt_tokens - 40 <= second.cached_prompt_tokens < second.prompt_tokens


def test_remote_truncation_and_errors(remote):
    with pytest.raises(TruncatedOutput) as info:
        remote.generate_ir("a function that reverses a string", GenerateOptions(max_tokens=10))
    assert info.value.partial_text.startswith('{"intent":')
    with pytest.raises(UnsupportedSchemaError, match="'not'"):  # linted here, never sent (a $ref into a 'not')
        remote.generate("x", {"$defs": {"x": {"not": {}}}, "properties": {"a": {"$ref": "#/$defs/x/not"}}},
                        GenerateOptions(grammar_backend="xgrammar"))
    with pytest.raises(PromptTooLong):
        remote.generate("word " * 6000, {"type": "object"})


def test_unreachable_server_is_a_clear_error():
    engine = OpenAIHTTPEngine(f"http://127.0.0.1:{free_port()}", model="m", retries=2, backoff_s=0.01, context_length=4096)
    with pytest.raises(EngineError, match="cannot reach"):
        engine.generate([{"role": "user", "content": "hi"}], GenerateOptions(max_tokens=4))


class _Flaky(BaseHTTPRequestHandler):
    """503 on the first POST, then a 303 to a URL that streams a completion."""

    calls: list[str] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        _Flaky.calls.append("POST")
        if _Flaky.calls.count("POST") == 1:
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        self.send_response(303)
        self.send_header("Location", "/result/1")
        self.end_headers()

    def do_GET(self):
        _Flaky.calls.append("GET " + self.path)
        events = [
            {"model": "flaky", "choices": [{"index": 0, "delta": {"content": '{"a":'}, "finish_reason": None}]},
            {"model": "flaky", "choices": [{"index": 0, "delta": {"content": "1}"}, "finish_reason": "stop"}]},
            {"model": "flaky", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}},
        ]
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def test_retries_overload_and_follows_redirects():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        engine = OpenAIHTTPEngine(f"http://127.0.0.1:{server.server_port}", model="flaky", backoff_s=0.01, context_length=4096)
        c = engine.generate([{"role": "user", "content": "hi"}], GenerateOptions(max_tokens=8))
        assert c.text == '{"a":1}'
        assert (c.finish_reason, c.prompt_tokens, c.completion_tokens) == ("stop", 7, 3)
        assert _Flaky.calls == ["POST", "POST", "GET /result/1"]
    finally:
        server.shutdown()
