"""The OpenAI-compatible surface: ``/v1/chat/completions`` (json_schema, json_object, stream) and ``/v1/models``.

OpenAI semantics where they differ from ours: a generation cut at
``max_tokens`` is a 200 with ``finish_reason: "length"`` (ours is a 422),
usage carries ``prompt_tokens_details.cached_tokens`` (what SGLang and vLLM
send), and a stream is server-sent events ending in ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from lift_sys import errors
from lift_sys.generation.engines.base import CancelToken
from lift_sys.generation.grammar import GrammarSpec
from lift_sys.server import schemas as m
from lift_sys.server.dispatch import Dispatcher
from lift_sys.server.responses import encodable, error_response
from lift_sys.server.routes import enforcement_header
from lift_sys.service.core import GenerationResult

log = logging.getLogger("lift_sys.server")


def openai_usage(result: GenerationResult) -> dict[str, Any]:
    """Usage in OpenAI's shape (what SGLang and vLLM send too), cached tokens included."""
    c = result.completion
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": c.cached_prompt_tokens}}


def grammar_of(body: m.ChatCompletionRequest) -> GrammarSpec | None:
    """``response_format`` (or our ``regex`` extension) as a grammar; None = free text."""
    grammar: GrammarSpec | None = None
    rf = body.response_format
    if rf is not None and rf.type == "json_schema":
        if rf.json_schema is None or not rf.json_schema.schema_:
            raise errors.InvalidRequest("response_format.json_schema.schema is required")
        grammar = GrammarSpec.json_schema(rf.json_schema.schema_)
    elif rf is not None and rf.type == "json_object":
        grammar = GrammarSpec.json_schema({"type": "object"})
    if body.regex is not None:
        if grammar is not None:
            raise errors.InvalidRequest("give response_format or regex, not both")
        grammar = GrammarSpec("regex", body.regex)
    return grammar


def openai_router(d: Dispatcher) -> APIRouter:
    router = APIRouter()
    service = d.service

    @router.post("/v1/chat/completions", summary="OpenAI-compatible chat completions (json_schema, json_object, stream)")
    async def chat_completions(body: m.ChatCompletionRequest, request: Request, response: Response):
        body.refuse_unsupported()  # tools, n > 1, logprobs ...: refused by name, never silently ignored
        grammar = grammar_of(body)
        opts = d.options(body.max_completion_tokens or body.max_tokens,
                         1.0 if body.temperature is None else body.temperature, body.seed, None,
                         1.0 if body.top_p is None else body.top_p)
        messages = [msg.model_dump() for msg in body.messages]
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        if body.stream:
            return await _stream(request, messages, grammar, opts, cid, created,
                                 bool(body.stream_options and body.stream_options.include_usage))

        def job(cancel: CancelToken, queue_ms: float):
            try:
                return service.generate(messages, grammar, opts, cancel=cancel), queue_ms
            except errors.TruncatedOutput as exc:  # OpenAI semantics: 200 with finish_reason "length"
                return exc.result, queue_ms

        gen, queue_ms = await d.run(request, job)
        d.observe(gen, queue_ms)
        # lift-sys extension (OpenAI clients ignore unknown keys): how the schema was enforced, also as a header
        enforcement = gen.enforcement_info()
        extra = {} if enforcement is None else {"enforcement": enforcement}
        if enforcement is not None:
            response.headers["x-lift-enforcement"] = enforcement_header(enforcement)
        return {
            **extra,
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": d.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": gen.text},
                    "finish_reason": gen.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": openai_usage(gen),
        }

    async def _stream(request: Request, messages, grammar, opts, cid, created, include_usage):
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        cancel = CancelToken()

        def on_text(piece: str) -> None:
            loop.call_soon_threadsafe(events.put_nowait, ("text", piece))

        def job(queue_ms: float):
            try:
                try:
                    gen = service.generate(messages, grammar, opts, on_text=on_text, cancel=cancel)
                except errors.TruncatedOutput as exc:
                    gen = exc.result
                loop.call_soon_threadsafe(events.put_nowait, ("done", (gen, queue_ms)))
            except BaseException as exc:  # noqa: BLE001
                loop.call_soon_threadsafe(events.put_nowait, ("error", exc))

        fut = d.submit(job)

        # Wait for the first event so that errors raised before any output
        # (schema, compile, context) still get a real status code.
        first = await events.get()
        if first[0] == "error":
            exc = first[1]
            if isinstance(exc, errors.LiftError):
                return error_response(exc)
            raise exc

        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None,
                  enforcement: dict | None = None) -> str:
            body = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": d.model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if usage is None else [],
            }
            if usage is not None:
                body["usage"] = usage
            if enforcement is not None:  # lift-sys extension, on the chunk that finishes the choice
                body["enforcement"] = enforcement
            return f"data: {json.dumps(body)}\n\n"

        async def gen_events() -> AsyncIterator[str]:
            event = first
            yield chunk({"role": "assistant", "content": ""})
            try:
                while True:
                    kind, payload = event
                    if kind == "text":
                        yield chunk({"content": payload})
                    elif kind == "done":
                        gen, queue_ms = payload
                        d.observe(gen, queue_ms)
                        yield chunk({}, finish=gen.finish_reason, enforcement=gen.enforcement_info())
                        if include_usage:
                            yield chunk({}, usage=openai_usage(gen))
                        break
                    else:
                        if isinstance(payload, errors.LiftError):
                            err = encodable(payload.to_dict())
                        else:
                            log.error("stream failed", exc_info=payload)
                            err = {"type": "internal_error", "message": "internal server error (logged)"}
                        yield f"data: {json.dumps({'error': err})}\n\n"
                        break
                    event = await events.get()
                yield "data: [DONE]\n\n"
            finally:
                if not fut.done():  # client went away mid-stream
                    cancel.cancel()
                    fut.cancel()
                    d.metrics.cancelled.inc()

        return StreamingResponse(gen_events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @router.get("/v1/models", summary="OpenAI-compatible model list")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": d.model_name, "object": "model", "owned_by": "lift-sys",
                                            "max_model_len": service.context_length}]}

    return router
