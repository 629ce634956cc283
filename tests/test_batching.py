"""Continuous batching on the local engine (LIFT_SLOTS > 1), on the real model.

* greedy output is byte-identical alone and inside a batch, with each
  grammar backend, and two same-seed sampled requests side by side agree
  (a sequence's logits do not depend on its neighbours -- unrepacked
  weights, batch-invariant matmuls, a q8_0 K cache -- and every sequence keeps its
  own matcher/sampler); checked in a fresh process started like ``serve``;
* seeds, budgets and cancellation stay per request;
* the server runs one worker per slot and /metrics shows slots, running
  sequences and the batch-size histogram;
* ``lift-sys serve`` in front of a remote engine does not serialize
  concurrent requests.

No timing is asserted (speed is `lift-sys bench batch`).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import json
import os
from pathlib import Path

import httpx
import pytest

from lift_sys.errors import InvalidRequest
from lift_sys.generation.engines.base import CancelToken, GenerateOptions
from lift_sys.generation.engines.batch import BATCH_INVARIANT_ENV
from lift_sys.generation.engines.llamacpp import LlamaCppEngine
from lift_sys.generation.engines.openai_http import OpenAIHTTPEngine
from lift_sys.server.app import asgi
from lift_sys.service.core import InferenceService
from lift_sys.settings import Settings

from .conftest import _has, requires_xgrammar
from .serving import running

pytestmark = pytest.mark.model

OTHERS = [
    "a function that counts the words in a sentence",
    "a function that returns the square of n",
    "a function that checks whether a string is a palindrome, ignoring case",
]


@pytest.fixture(scope="module")
def batched(engine):
    """A second engine over the same model file with 4 slots (the session engine keeps 1)."""
    saved = {k: os.environ.get(k) for k in BATCH_INVARIANT_ENV}
    eng = LlamaCppEngine(engine.model_path, model_name=engine.model_name, slots=4)
    # The engine asked for batch-invariant kernels through the environment; in this process ggml
    # has long made its choice, and the CLI tests' subprocesses must keep the one-slot default.
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    yield InferenceService(eng)
    eng.close()


@pytest.fixture(scope="module")
def identity_run(engine) -> dict:
    """Every backend's identity run, in one fresh process started the way ``lift-sys serve`` starts a batched
    engine (see tests/batch_identity.py for why); one model load and one prefix prefill for all of them."""
    backends = ["llguidance"] + (["xgrammar"] if _has("xgrammar") else [])
    run = subprocess.run([sys.executable, "-m", "tests.batch_identity", str(engine.model_path), ",".join(backends)],
                         capture_output=True, text=True, timeout=1200, cwd=Path(__file__).resolve().parents[1])
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["llguidance", pytest.param("xgrammar", marks=requires_xgrammar)])
def test_greedy_ir_identical_alone_and_in_a_batch(identity_run, backend):
    """Byte-identical greedy IR alone and beside others, with each backend."""
    out = identity_run[backend]
    alone, target = out["alone"], out["target"]
    assert alone["text"].startswith('{"intent":{') and alone["tokens"] > 100
    assert target["text"] == alone["text"]  # byte-identical
    assert target["ids"] == alone["ids"]
    for c in out["others"]:
        assert c["text"].startswith('{"intent":{') and c["tokens"] > 100
    assert out["shared_steps"] > 20  # the requests really shared decode steps
    # the shared IR prefix was not prefilled again
    assert min(out["target_cached"], *(c["cached"] for c in out["others"])) > 400


def test_same_seed_same_sampled_text_side_by_side(identity_run):
    first, again = identity_run["seeded"]
    assert first and again == first  # per-request RNG, logits independent of the company


def test_seed_budget_and_cancel_stay_per_request(batched):
    messages = [{"role": "user", "content": "Write a haiku about batching."}]
    sampled = GenerateOptions(max_tokens=24, temperature=0.9, seed=7)
    cancel = CancelToken()
    seen: list[str] = []

    def stop_after_a_few(text: str) -> None:
        seen.append(text)
        if len(seen) == 3:
            cancel.cancel()

    with ThreadPoolExecutor(5) as pool:
        long_one = pool.submit(batched.engine.generate, messages, GenerateOptions(max_tokens=200),
                               on_text=stop_after_a_few, cancel=cancel)
        short = pool.submit(batched.engine.generate, messages, GenerateOptions(max_tokens=5))
        first = pool.submit(batched.engine.generate, messages, sampled)
        again = pool.submit(batched.engine.generate, messages, sampled)
        other_seed = pool.submit(batched.engine.generate, messages, GenerateOptions(max_tokens=24, temperature=0.9, seed=8))
        # Each sequence has its own RNG (same-seed identity across a batch: tested in a fresh process above).
        assert again.result().completion_tokens > 0 and first.result().completion_tokens > 0
        assert other_seed.result().token_ids != first.result().token_ids
        assert (short.result().finish_reason, short.result().completion_tokens) == ("length", 5)
        stopped = long_one.result()
    assert stopped.finish_reason == "cancelled" and stopped.completion_tokens < 200
    assert "".join(seen) == stopped.text  # streamed through the caller's thread, nothing lost
    with pytest.raises(InvalidRequest):
        LlamaCppEngine(batched.engine.model_path, slots=0)


def test_forced_tokens_go_in_as_one_chunk_when_few_sequences_decode(batched):
    """Alone, a sequence's grammar-forced tokens share one llama_decode (bit-identical to one per step, cheaper);
    the identity test above checks that the text does not change with it."""
    schema = {"type": "object", "properties": {"the_name_of_the_function_being_specified": {"type": "string",
              "maxLength": 12}, "the_number_of_parameters_it_takes": {"type": "integer", "maximum": 9}},
              "required": ["the_name_of_the_function_being_specified", "the_number_of_parameters_it_takes"],
              "additionalProperties": False}
    before = batched.engine.batch_stats()
    gen = batched.generate([{"role": "user", "content": "Describe a function that reverses a string."}], schema,
                           GenerateOptions(max_tokens=120))
    after = batched.engine.batch_stats()
    c = gen.completion
    assert set(gen.json) == set(schema["properties"])
    steps = sum(after.steps_by_size.values()) - sum(before.steps_by_size.values())
    assert c.forced_tokens >= 10  # the long keys are forced
    # one step for the prompt (a chunk) and one per sampled token: the forced ones took no step of their own
    assert steps <= 1 + (c.completion_tokens - c.forced_tokens) + 1


def test_server_runs_a_worker_per_slot_and_reports_batches(batched):
    with running(asgi(batched, Settings())) as url:
        schema = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}, "required": ["name"],
                  "additionalProperties": False}

        def ask(request: str) -> int:
            body = {"prompt": f"Name {request} in JSON.", "json_schema": schema, "max_tokens": 120}
            return httpx.post(url + "/v1/generate", json=body, timeout=600).status_code

        with ThreadPoolExecutor(3) as pool:
            assert list(pool.map(ask, OTHERS)) == [200, 200, 200]
        text = httpx.get(url + "/metrics").text
    assert "lift_engine_slots 4.0" in text
    assert "lift_running_requests" in text and "lift_waiting_requests" in text
    assert "lift_engine_running_sequences" in text and "lift_engine_waiting_sequences" in text
    count = [line for line in text.splitlines() if line.startswith("lift_batch_size_count")]
    one = [line for line in text.splitlines() if line.startswith('lift_batch_size_bucket{le="1"')]
    assert float(count[0].split()[-1]) > float(one[0].split()[-1])  # some steps carried more than one sequence


class _Barrier(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint that answers only once N requests are in flight together.

    If the server in front serialized them, the barrier times out and the
    request gets a 500 -- a failed assertion, not a slow test.
    """

    barrier: threading.Barrier
    seen = 0
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_GET(self):  # /v1/models
        body = json.dumps({"data": [{"id": "barrier"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with _Barrier.lock:
            _Barrier.seen += 1
        try:
            _Barrier.barrier.wait(timeout=20)
        except threading.BrokenBarrierError:
            self.send_response(500)
            self.end_headers()
            return
        events = [
            {"model": "barrier", "choices": [{"index": 0, "delta": {"content": '{"ok":true}'}, "finish_reason": "stop"}]},
            {"model": "barrier", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 4}},
        ]
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())


def test_serve_in_front_of_a_remote_engine_does_not_serialize():
    n = 6
    _Barrier.barrier = threading.Barrier(n)
    _Barrier.seen = 0
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Barrier)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    engine = OpenAIHTTPEngine(f"http://127.0.0.1:{upstream.server_port}", model="barrier", context_length=4096,
                              retries=0)
    try:
        with running(asgi(InferenceService(engine, default_backend="xgrammar"), Settings())) as url:
            body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 8,
                    "response_format": {"type": "json_schema",
                                        "json_schema": {"name": "o", "schema": {"type": "object"}}}}

            def ask(_: int) -> httpx.Response:
                return httpx.post(url + "/v1/chat/completions", json=body, timeout=60)

            with ThreadPoolExecutor(n) as pool:
                responses = list(pool.map(ask, range(n)))
        assert [r.status_code for r in responses] == [200] * n, responses[0].text
        assert all(json.loads(r.json()["choices"][0]["message"]["content"]) == {"ok": True} for r in responses)
        assert _Barrier.seen == n
    finally:
        engine.close()
        upstream.shutdown()
