"""FastAPI app over the one service: ``lift-sys serve`` locally, ``@modal.asgi_app`` on Modal.

Request path: ASGI middlewares (body size, API key, metrics) -> endpoint ->
bounded :class:`GenerationQueue` -> worker thread -> service -> engine.
The event loop only parses, queues and awaits; it never runs the model, so
``/health`` answers in microseconds while generations run. While a request
waits, the endpoint watches its connection: a client that leaves cancels
its job (removed from the queue, or stopped within a token by the decode
loop's cancel check).

Errors are ``{"error": {"type", "message", "detail"}}`` with a status that
means something (see ``STATUS``); a 200 never carries an error.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import sys
import time
import uuid
from typing import Any, AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lift_sys import __version__, errors
from lift_sys.server import schemas as m
from lift_sys.generation.engines.base import CancelToken
from lift_sys.generation.grammar import GrammarSpec
from lift_sys.server.guard import check_json_body, is_json_content
from lift_sys.server.metrics import Metrics
from lift_sys.service.core import GenerateOptions, GenerationResult, InferenceService
from lift_sys.settings import Settings
from lift_sys.server.queue import GenerationQueue
from lift_sys.ir.models import IRSpec

log = logging.getLogger("lift_sys.server")

STATUS: list[tuple[type[errors.LiftError], int]] = [
    (errors.PayloadTooLarge, 413),
    (errors.PromptTooLong, 413),
    (errors.InvalidRequest, 400),  # incl. unsupported_schema, grammar compile error/timeout
    (errors.Unauthorized, 401),
    (errors.TruncatedOutput, 422),
    (errors.SchemaNotEnforced, 422),
    (errors.Overloaded, 429),
    (errors.Cancelled, 499),
    (errors.ModelNotAvailable, 503),
    (errors.EngineError, 502),
    (errors.ModelIntegrityError, 500),
    (errors.OutputValidationError, 500),
]


def status_for(exc: errors.LiftError) -> int:
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def _encodable(value: Any) -> Any:
    """``value`` with what JSON cannot carry replaced: non-finite floats -> None, lone surrogates -> U+FFFD.

    An error body must always encode: a NaN or a ``"\\ud800"`` echoed from a
    request once turned a 400 into a 500.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if not value.isascii() else value
    if isinstance(value, dict):
        return {_encodable(str(k)): _encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encodable(v) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return _encodable(str(value))


def error_response(exc: errors.LiftError) -> JSONResponse:
    headers = {}
    if isinstance(exc, errors.Overloaded):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": _encodable(exc.to_dict())}, status_code=status_for(exc), headers=headers)


# --------------------------------------------------------------------------- ASGI middlewares


async def _send_error(send: Send, exc: errors.LiftError) -> None:
    resp = error_response(exc)
    await send({"type": "http.response.start", "status": resp.status_code, "headers": resp.raw_headers})
    await send({"type": "http.response.body", "body": resp.body})


class GuardMiddleware:
    """API key, body-size limit and the JSON body check, as plain ASGI (keeps disconnect detection intact).

    The body is read here, whole (it is bounded by ``max_body``), and a JSON
    body is checked by :func:`~lift_sys.server.guard.check_json_body`
    before any endpoint parses it: NaN/Infinity, lone surrogates, nesting
    beyond ``max_depth`` are a 400 naming the JSON pointer, for every
    endpoint at once. The app then receives the same bytes, and after them
    the real ``receive`` (so a disconnect is still seen).
    """

    def __init__(self, app: ASGIApp, *, max_body: int, api_key: str | None, open_paths: tuple[str, ...],
                 max_depth: int = 64) -> None:
        self.app = app
        self.max_body = max_body
        self.api_key = api_key.encode() if api_key else None
        self.open_paths = open_paths
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self.api_key is not None and scope["path"] not in self.open_paths:
            auth = headers.get(b"authorization", b"")
            scheme, _, token = auth.partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.api_key):
                return await _send_error(send, errors.Unauthorized("missing or wrong API key (Authorization: Bearer …)"))
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return await _send_error(
                send, errors.PayloadTooLarge(f"request body is {int(length)} bytes; the limit is {self.max_body}")
            )
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left (or its body timed out): nobody to answer
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body:
                return await _send_error(send, errors.PayloadTooLarge(f"request body exceeds the limit of {self.max_body} bytes"))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body and is_json_content(headers.get(b"content-type")):
            try:
                check_json_body(body, max_depth=self.max_depth)
            except errors.LiftError as exc:
                return await _send_error(send, exc)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class MetricsMiddleware:
    """Counts requests by endpoint and status, and their latency."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = [499]  # no response at all: the client left (or its body timed out) first

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            if status[0] == 499:
                status[0] = 500
            raise
        finally:
            self.metrics.observe_request(scope["path"], status[0], time.perf_counter() - t0)


class HealthFastPath:
    """``GET /health`` answered by the outermost ASGI layer.

    Why: load balancers and pollers hit /health many times a second, often
    while the model saturates every core. Through FastAPI (routing, endpoint
    machinery, response-model serialization) it cost ~0.4 ms of server CPU;
    here it is a dict, ``json.dumps`` and two ``send`` calls. It never waits on
    the model and needs no API key. Still counted in the metrics; the
    FastAPI route of the same name documents it in /docs.
    """

    def __init__(self, app: ASGIApp, payload: Callable[[], dict[str, Any]], metrics: Metrics) -> None:
        self.app = app
        self.payload = payload
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/health" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        body = json.dumps(self.payload(), separators=(",", ":")).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
        self.metrics.observe_request("/health", 200, time.perf_counter() - t0)


class _NoHealthAccessLog(logging.Filter):
    """Drop uvicorn's access-log lines for /health (a load balancer polls it many times a second)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and len(args) >= 3 and str(args[2]).split("?", 1)[0] == "/health")


def quiet_health_access_log() -> None:
    """Keep the access log for real requests; call before ``uvicorn.run``."""
    logging.getLogger("uvicorn.access").addFilter(_NoHealthAccessLog())


# --------------------------------------------------------------------------- app


def _timings(result: GenerationResult, queue_ms: float, t_start: float) -> m.TimingsOut:
    t = result.completion.timings
    return m.TimingsOut(
        queue_ms=round(queue_ms, 3),
        compile_ms=round(t.compile_ms, 3),
        ttft_ms=round(t.ttft_ms, 3),
        decode_ms=round(t.decode_ms, 3),
        total_ms=round((time.perf_counter() - t_start) * 1000, 3),
    )


def _usage(result: GenerationResult) -> m.Usage:
    c = result.completion
    return m.Usage(prompt_tokens=c.prompt_tokens, completion_tokens=c.completion_tokens,
                   cached_prompt_tokens=c.cached_prompt_tokens)


def _openai_usage(result: GenerationResult) -> dict[str, Any]:
    """Usage in OpenAI's shape (what SGLang and vLLM send too), cached tokens included."""
    c = result.completion
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": c.cached_prompt_tokens}}


def create_app(service: InferenceService, settings: Settings | None = None, *, workers: int | None = None,
               warm_up: bool = False) -> FastAPI:
    """The HTTP app over ``service`` (which already holds a loaded engine).

    ``warm_up``: queue :meth:`InferenceService.warm_up` as the first job, so
    the shared IR prompt prefix is prefilled before the first real request
    (which simply waits behind it if it comes sooner). ``lift-sys serve``
    turns it on (``LIFT_WARM_UP``).
    """
    settings = settings or Settings()
    metrics = Metrics()
    local = service.is_local  # in-process model (a remote engine only waits on the network)
    n_workers = workers or (1 if local else 8)
    jobs = GenerationQueue(max_waiting=settings.max_queue, workers=n_workers, priority=settings.worker_priority if local else "normal")
    # Hand the GIL to the event loop sooner when it is waiting (default 5 ms):
    # the decode loop holds the GIL only for short Python steps between
    # llama.cpp calls, so /health need not wait a full switch interval.
    sys.setswitchinterval(0.0005)
    metrics.bind(queue_depth=lambda: jobs.depth, service=service)
    if warm_up:
        def report(done: Any) -> None:
            if done.exception() is not None:
                log.warning("prompt warm-up failed (requests still work): %s", done.exception())

        jobs.submit(lambda _queue_ms: service.warm_up()).add_done_callback(report)
    engine_info = service.engine_info()
    default_max = min(settings.max_tokens_default, service.context_length - 1)

    app = FastAPI(
        title="lift-sys inference",
        version=__version__,
        description="Natural language -> IR -> code with schema-constrained decoding. "
        "Errors are {error: {type, message, detail}} with meaningful status codes.",
        responses={
            400: {"model": m.ErrorResponse, "description": "Invalid request / unsupported schema keyword"},
            401: {"model": m.ErrorResponse, "description": "Missing or wrong API key"},
            413: {"model": m.ErrorResponse, "description": "Prompt over the context limit / body too large"},
            422: {"model": m.ErrorResponse, "description": "Output truncated at max_tokens (partial text in detail)"},
            429: {"model": m.ErrorResponse, "description": "Queue full; see Retry-After"},
        },
    )
    app.state.service = service
    app.state.jobs = jobs
    app.state.metrics = metrics

    @app.exception_handler(errors.LiftError)
    async def _lift_error(_: Request, exc: errors.LiftError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Only where and what: pydantic's "input"/"ctx" would echo the client's
        # value back (any size, and not always encodable as JSON).
        found = [{"loc": [str(p) for p in e.get("loc", ()) if p != "body"], "type": str(e.get("type", "")),
                  "msg": str(e.get("msg", "invalid"))} for e in exc.errors()]
        first = found[0] if found else {"loc": [], "msg": "invalid"}
        where = "/".join(first["loc"])
        msg = f"invalid request: {where}: {first['msg']}" if where else f"invalid request: {first['msg']}"
        return error_response(errors.InvalidRequest(msg, detail={"errors": found[:20]}))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's input: answered without internals (Starlette
        # re-raises it afterwards, so uvicorn logs the traceback).
        return JSONResponse({"error": {"type": "internal_error", "message": "internal server error (logged)"}},
                            status_code=500)

    async def run(request: Request, fn: Callable[[CancelToken, float], Any]) -> Any:
        """Queue ``fn`` for a worker; cancel it if the client disconnects while waiting."""
        cancel = CancelToken()
        fut = jobs.submit(lambda queue_ms: fn(cancel, queue_ms))
        afut = asyncio.wrap_future(fut)
        while True:
            done, _ = await asyncio.wait({afut}, timeout=0.05)
            if done:
                return afut.result()
            if await request.is_disconnected():
                cancel.cancel()
                fut.cancel()
                metrics.cancelled.inc()
                raise errors.Cancelled("client disconnected")

    def options(max_tokens: int | None, temperature: float, seed: int | None, backend: str | None = None, top_p: float = 1.0) -> GenerateOptions:
        limit = service.context_length - 1
        mt = max_tokens or default_max
        if mt > limit:
            raise errors.InvalidRequest(f"max_tokens={mt} exceeds the model's context length ({limit + 1})")
        return GenerateOptions(max_tokens=mt, temperature=temperature, top_p=top_p, seed=seed, grammar_backend=backend)

    # ------------------------------------------------------------------ endpoints

    def health_payload() -> dict[str, Any]:
        return {**service.health(), "queue_depth": jobs.depth}

    @app.get("/health", summary="Liveness/readiness; never waits on the model")
    async def health() -> dict[str, Any]:
        # Served by HealthFastPath in front of the app; this route documents it
        # in /docs (and answers if the app is mounted without the wrapper).
        return health_payload()

    @app.post("/v1/ir", response_model=m.IRResponse, summary="Natural language -> IR")
    async def v1_ir(body: m.IRRequest, request: Request) -> m.IRResponse:
        t0 = time.perf_counter()
        opts = options(body.max_tokens, body.temperature, body.seed, body.grammar_backend)

        def job(cancel: CancelToken, queue_ms: float):
            return service.generate_ir(body.prompt, opts, cancel=cancel), queue_ms

        result, queue_ms = await run(request, job)
        gen = result.generation
        metrics.observe_generation(gen, queue_ms)
        return m.IRResponse(
            ir=result.ir.model_dump(mode="json"),
            checks=[str(c) for c in result.checks],
            usage=_usage(gen),
            timings=_timings(gen, queue_ms, t0),
            finish_reason=gen.finish_reason,
            model=gen.completion.model or engine_info.get("model", ""),
        )

    @app.post("/v1/code", response_model=m.CodeResponse, summary="IR -> Python function (statically checked)")
    async def v1_code(body: m.CodeRequest, request: Request) -> m.CodeResponse:
        t0 = time.perf_counter()
        try:
            doc = {k: v for k, v in body.ir.items() if k != "metadata"}
            ir = IRSpec.model_validate(doc)
        except ValueError as exc:
            raise errors.InvalidRequest(f"ir is not a valid IR: {exc}") from None
        opts = options(body.max_tokens, body.temperature, body.seed)

        def job(cancel: CancelToken, queue_ms: float):
            return service.generate_verified_code(ir, opts, attempts=body.attempts, cancel=cancel), queue_ms

        piped, queue_ms = await run(request, job)
        return _code_response(piped, queue_ms, t0)

    def _code_response(piped, queue_ms: float, t0: float) -> m.CodeResponse:
        best = piped.best
        if best is None or best.result is None:
            # every attempt failed to produce code: report the last failure as it was raised
            raise piped.attempts[-1].exception
        result = best.result
        gen = result.generation
        metrics.observe_generation(gen, queue_ms)
        return m.CodeResponse(
            code=result.code,
            language=result.language,
            checks=[m.CodeCheckOut(**c.to_dict()) for c in result.checks],
            ok=result.ok,
            verified=piped.verified,
            verification=piped.report.to_dict() if piped.report else None,
            attempts=[a.to_dict() for a in piped.attempts],
            usage=_usage(gen),
            timings=_timings(gen, queue_ms, t0),
            finish_reason=gen.finish_reason,
            model=gen.completion.model or engine_info.get("model", ""),
        )

    @app.post("/v1/pipeline", summary="Natural language -> IR -> verified code")
    async def v1_pipeline(body: m.PipelineRequest, request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        opts = options(body.max_tokens, 0.0, None, body.grammar_backend)

        def job(cancel: CancelToken, queue_ms: float):
            ir_result = service.generate_ir(body.prompt, opts, cancel=cancel)
            piped = service.generate_verified_code(ir_result.ir, opts, attempts=body.attempts, cancel=cancel)
            return (ir_result, piped), queue_ms

        (ir_result, piped), queue_ms = await run(request, job)
        code = _code_response(piped, queue_ms, t0)
        return {"ir": ir_result.ir.model_dump(mode="json"), "code": code.code, "verified": code.verified,
                "verification": code.verification.model_dump() if code.verification else None,
                "attempts": code.attempts, "timings": {"total_ms": round((time.perf_counter() - t0) * 1000, 3)}}

    def _grammar(json_schema: Any, regex: str | None, lark: str | None) -> GrammarSpec | None:
        given = [(k, v) for k, v in (("json_schema", json_schema), ("regex", regex), ("lark", lark)) if v is not None]
        if len(given) > 1:
            raise errors.InvalidRequest(f"give one constraint, not {' and '.join(k for k, _ in given)}")
        if not given:
            return None
        kind, source = given[0]
        if kind == "json_schema" and not isinstance(source, dict):
            raise errors.InvalidRequest("json_schema must be a JSON object")
        return GrammarSpec(kind, source)  # type: ignore[arg-type]

    @app.post("/v1/generate", response_model=m.GenerateResponse, response_model_by_alias=True,
              summary="Generic constrained generation (JSON Schema, regex or Lark)")
    async def v1_generate(body: m.GenerateRequest, request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        if (body.prompt is None) == (body.messages is None):
            raise errors.InvalidRequest("give exactly one of prompt or messages")
        grammar = _grammar(body.json_schema, body.regex, body.lark)
        if grammar is None:
            raise errors.InvalidRequest("give a constraint: json_schema, regex or lark (use /v1/chat/completions for free text)")
        messages = body.prompt if body.prompt is not None else [msg.model_dump() for msg in body.messages or []]
        opts = options(body.max_tokens, body.temperature, body.seed, body.grammar_backend, body.top_p)

        def job(cancel: CancelToken, queue_ms: float):
            return service.generate(messages, grammar, opts, cancel=cancel), queue_ms

        gen, queue_ms = await run(request, job)
        metrics.observe_generation(gen, queue_ms)
        return {
            "text": gen.text,
            "json": gen.json,
            "usage": _usage(gen).model_dump(),
            "timings": _timings(gen, queue_ms, t0).model_dump(),
            "finish_reason": gen.finish_reason,
            "model": gen.completion.model or engine_info.get("model", ""),
        }

    @app.post("/v1/chat/completions", summary="OpenAI-compatible chat completions (json_schema, json_object, stream)")
    async def chat_completions(body: m.ChatCompletionRequest, request: Request):
        body.refuse_unsupported()  # tools, n > 1, logprobs ...: refused by name, never silently ignored
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
        opts = options(body.max_completion_tokens or body.max_tokens,
                       1.0 if body.temperature is None else body.temperature, body.seed, None,
                       1.0 if body.top_p is None else body.top_p)
        messages = [msg.model_dump() for msg in body.messages]
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model_name = engine_info.get("model", "")
        if body.stream:
            return await _stream_chat(request, messages, grammar, opts, cid, created, model_name,
                                      bool(body.stream_options and body.stream_options.include_usage))

        def job(cancel: CancelToken, queue_ms: float):
            try:
                return service.generate(messages, grammar, opts, cancel=cancel), queue_ms
            except errors.TruncatedOutput as exc:  # OpenAI semantics: 200 with finish_reason "length"
                return exc.result, queue_ms  # type: ignore[attr-defined]

        gen, queue_ms = await run(request, job)
        metrics.observe_generation(gen, queue_ms)
        return {
            "id": cid,
            "object": "chat.completion",
            "created": created,
            "model": model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": gen.text},
                    "finish_reason": gen.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": _openai_usage(gen),
        }

    async def _stream_chat(request: Request, messages, grammar, opts, cid, created, model_name, include_usage):
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
                    gen = exc.result  # type: ignore[attr-defined]
                loop.call_soon_threadsafe(events.put_nowait, ("done", (gen, queue_ms)))
            except BaseException as exc:  # noqa: BLE001
                loop.call_soon_threadsafe(events.put_nowait, ("error", exc))

        fut = jobs.submit(job)

        # Wait for the first event so that errors raised before any output
        # (schema, compile, context) still get a real status code.
        first = await events.get()
        if first[0] == "error":
            exc = first[1]
            if isinstance(exc, errors.LiftError):
                return error_response(exc)
            raise exc

        def chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> str:
            body = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_name,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}] if usage is None else [],
            }
            if usage is not None:
                body["usage"] = usage
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
                        metrics.observe_generation(gen, queue_ms)
                        yield chunk({}, finish=gen.finish_reason)
                        if include_usage:
                            yield chunk({}, usage=_openai_usage(gen))
                        break
                    else:
                        if isinstance(payload, errors.LiftError):
                            err = _encodable(payload.to_dict())
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
                    metrics.cancelled.inc()

        return StreamingResponse(gen_events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    @app.get("/v1/models", summary="OpenAI-compatible model list")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": engine_info.get("model"), "object": "model", "owned_by": "lift-sys",
                                            "max_model_len": service.context_length}]}

    wrapped = HealthFastPath(
        MetricsMiddleware(
            GuardMiddleware(app, max_body=settings.max_body_bytes,
                            api_key=settings.api_key.get_secret_value() if settings.api_key else None,
                            open_paths=("/health",), max_depth=settings.max_json_depth),
            metrics,
        ),
        health_payload,
        metrics,
    )
    app.state.asgi = wrapped
    return app


def asgi(service: InferenceService, settings: Settings | None = None, **kw: Any) -> ASGIApp:
    """The full ASGI stack (middlewares + app) to hand to uvicorn or Modal."""
    return create_app(service, settings, **kw).state.asgi


def app_from_env() -> ASGIApp:
    """uvicorn factory (``lift-sys serve --reload``): builds everything from LIFT_* settings."""
    from lift_sys.service.runtime import service_from_settings

    settings = Settings()
    return asgi(service_from_settings(settings), settings, warm_up=settings.warm_up)
