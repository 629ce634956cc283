"""The ``/v1`` routes of lift-sys itself: IR, code, pipeline, generic generation, metrics.

Each route only translates: body -> service call (queued through the
:class:`~lift_sys.server.dispatch.Dispatcher`) -> response model.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse

from lift_sys import errors
from lift_sys.generation.engines.base import CancelToken
from lift_sys.generation.grammar import GrammarSpec
from lift_sys.ir.validate import spec_from_document
from lift_sys.server import schemas as m
from lift_sys.server.dispatch import Dispatcher, timings, usage


def grammar_of(json_schema: Any, regex: str | None, lark: str | None) -> GrammarSpec | None:
    """The one constraint a /v1/generate body names (two is a 400)."""
    given = [(k, v) for k, v in (("json_schema", json_schema), ("regex", regex), ("lark", lark)) if v is not None]
    if len(given) > 1:
        raise errors.InvalidRequest(f"give one constraint, not {' and '.join(k for k, _ in given)}")
    if not given:
        return None
    kind, source = given[0]
    if kind == "json_schema" and not isinstance(source, dict):
        raise errors.InvalidRequest("json_schema must be a JSON object")
    return GrammarSpec(kind, source)  # type: ignore[arg-type]


def enforcement_header(info: dict[str, Any]) -> str:
    """``x-lift-enforcement``: ``grammar`` or ``grammar+validation; samples=2; keywords=uniqueItems,not``."""
    value = info["mode"]
    if info["mode"] != "grammar":
        keywords = sorted({k["keyword"] for k in info["validated_keywords"]})
        value += f"; samples={info['samples']}; keywords={','.join(keywords)}"
    return value


def v1_router(d: Dispatcher) -> APIRouter:
    router = APIRouter()
    service = d.service

    @router.get("/health", summary="Liveness/readiness; never waits on the model")
    async def health() -> dict[str, Any]:
        # Served by HealthFastPath in front of the app; this route documents it
        # in /docs (and answers if the app is mounted without the wrapper).
        return d.health()

    @router.post("/v1/ir", response_model=m.IRResponse, summary="Natural language -> IR")
    async def v1_ir(body: m.IRRequest, request: Request) -> m.IRResponse:
        t0 = time.perf_counter()
        opts = d.options(body.max_tokens, body.temperature, body.seed, body.grammar_backend)

        def job(cancel: CancelToken, queue_ms: float):
            return service.generate_ir(body.prompt, opts, cancel=cancel), queue_ms

        result, queue_ms = await d.run(request, job)
        gen = result.generation
        d.observe(gen, queue_ms)
        return m.IRResponse(
            ir=result.ir.model_dump(mode="json"),
            checks=[str(c) for c in result.checks],
            usage=usage(gen),
            timings=timings(gen, queue_ms, t0),
            finish_reason=gen.finish_reason,
            model=d.model_of(gen),
        )

    @router.post("/v1/code", response_model=m.CodeResponse, summary="IR -> Python function (statically checked)")
    async def v1_code(body: m.CodeRequest, request: Request) -> m.CodeResponse:
        t0 = time.perf_counter()
        try:
            ir = spec_from_document(body.ir)
        except ValueError as exc:
            raise errors.InvalidRequest(f"ir is not a valid IR: {exc}") from None
        opts = d.options(body.max_tokens, body.temperature, body.seed)

        def job(cancel: CancelToken, queue_ms: float):
            return service.generate_verified_code(ir, opts, attempts=body.attempts, cancel=cancel), queue_ms

        piped, queue_ms = await d.run(request, job)
        return _code_response(piped, queue_ms, t0)

    def _code_response(piped, queue_ms: float, t0: float) -> m.CodeResponse:
        best = piped.best
        if best is None or best.result is None:
            # every attempt failed to produce code: report the last failure as it was raised
            raise piped.attempts[-1].exception
        result = best.result
        gen = result.generation
        d.observe(gen, queue_ms)
        return m.CodeResponse(
            code=result.code,
            language=result.language,
            checks=[m.CheckOut(**c.to_dict()) for c in result.checks],
            ok=result.ok,
            verified=piped.verified,
            verification=piped.report.to_dict() if piped.report else None,
            selection=piped.selection,
            attempts=[a.to_dict() for a in piped.attempts],
            usage=usage(gen),
            timings=timings(gen, queue_ms, t0),
            finish_reason=gen.finish_reason,
            model=d.model_of(gen),
        )

    @router.post("/v1/pipeline", summary="Natural language -> IR -> verified code")
    async def v1_pipeline(body: m.PipelineRequest, request: Request) -> dict[str, Any]:
        t0 = time.perf_counter()
        opts = d.options(body.max_tokens, 0.0, None, body.grammar_backend)

        def job(cancel: CancelToken, queue_ms: float):
            return service.lift(body.prompt, opts, attempts=body.attempts, cancel=cancel), queue_ms

        (ir_result, piped), queue_ms = await d.run(request, job)
        code = _code_response(piped, queue_ms, t0)
        return {"ir": ir_result.ir.model_dump(mode="json"), "ir_samples": ir_result.samples,
                "code": code.code, "verified": code.verified,
                "verification": code.verification.model_dump() if code.verification else None,
                "selection": piped.selection, "attempts": code.attempts,
                "timings": {"total_ms": round((time.perf_counter() - t0) * 1000, 3)}}

    @router.post("/v1/generate", response_model=m.GenerateResponse, response_model_by_alias=True,
                 summary="Generic constrained generation (JSON Schema, regex or Lark)")
    async def v1_generate(body: m.GenerateRequest, request: Request, response: Response) -> dict[str, Any]:
        t0 = time.perf_counter()
        if (body.prompt is None) == (body.messages is None):
            raise errors.InvalidRequest("give exactly one of prompt or messages")
        grammar = grammar_of(body.json_schema, body.regex, body.lark)
        if grammar is None:
            raise errors.InvalidRequest("give a constraint: json_schema, regex or lark (use /v1/chat/completions for free text)")
        messages = body.prompt if body.prompt is not None else [msg.model_dump() for msg in body.messages or []]
        opts = d.options(body.max_tokens, body.temperature, body.seed, body.grammar_backend, body.top_p)

        def job(cancel: CancelToken, queue_ms: float):
            return service.generate(messages, grammar, opts, cancel=cancel), queue_ms

        gen, queue_ms = await d.run(request, job)
        d.observe(gen, queue_ms)
        enforcement = gen.enforcement_info()
        if enforcement is not None:
            response.headers["x-lift-enforcement"] = enforcement_header(enforcement)
        return {
            "text": gen.text,
            "json": gen.json,
            "usage": usage(gen).model_dump(),
            "timings": timings(gen, queue_ms, t0).model_dump(),
            "finish_reason": gen.finish_reason,
            "model": d.model_of(gen),
            "enforcement": enforcement,
        }

    @router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        body, content_type = d.metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    return router
