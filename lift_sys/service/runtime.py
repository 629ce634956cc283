"""Wiring: model name -> verified file -> engine -> service.

One engine per process (the model loads once); :func:`local_service`
memoizes it so every front in a process shares the same loaded model.
"""

from __future__ import annotations

import threading

from lift_sys.errors import ModelNotAvailable
from lift_sys.generation.engines.llamacpp import LlamaCppEngine
from lift_sys.generation.registry import ProgressFn, ensure_model, get_model
from lift_sys.service.core import InferenceService
from lift_sys.settings import Settings

_engines: dict[tuple[str, int], LlamaCppEngine] = {}
_lock = threading.Lock()


def local_engine(model: str | None = None, *, n_ctx: int = 4096, progress: ProgressFn | None = None) -> LlamaCppEngine:
    """The process-wide llama.cpp engine for ``model`` (assembling/verifying the file first)."""
    spec = get_model(model)
    if not spec.local:
        raise ModelNotAvailable(
            f"model {spec.name!r} runs on GPU servers only (SGLang/vLLM); "
            "use --engine-url to reach one, or pick a local model from `lift-sys models`"
        )
    key = (spec.name, n_ctx)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            path = ensure_model(spec, progress)
            engine = LlamaCppEngine(path, model_name=spec.name, n_ctx=n_ctx)
            _engines[key] = engine
        return engine


def local_service(
    model: str | None = None,
    *,
    grammar_backend: str = "llguidance",
    n_ctx: int = 4096,
    progress: ProgressFn | None = None,
) -> InferenceService:
    return InferenceService(local_engine(model, n_ctx=n_ctx, progress=progress), default_backend=grammar_backend)


def service_from_settings(settings: "Settings", progress: ProgressFn | None = None) -> InferenceService:
    """The service a server/Modal container runs, as the LIFT_* settings describe it."""
    if settings.engine == "openai":
        from lift_sys.generation.engines.openai_http import OpenAIHTTPEngine

        if not settings.engine_url:
            from lift_sys.errors import InvalidRequest

            raise InvalidRequest("engine=openai needs an engine URL (--engine-url / LIFT_ENGINE_URL)")
        key = settings.engine_api_key.get_secret_value() if settings.engine_api_key else None
        engine = OpenAIHTTPEngine(settings.engine_url, model=settings.engine_model, api_key=key)
        return InferenceService(engine, default_backend=settings.grammar_backend, compile_timeout_s=settings.compile_timeout_s)
    service = local_service(settings.model, grammar_backend=settings.grammar_backend, n_ctx=settings.n_ctx, progress=progress)
    service.grammar_cache.compile_timeout_s = settings.compile_timeout_s
    return service
