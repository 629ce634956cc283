"""The HTTP front, assembled: ``lift-sys serve`` locally, ``@modal.asgi_app`` on Modal.

Request path::

    HealthFastPath -> MetricsMiddleware -> GuardMiddleware      (middleware.py)
      -> FastAPI routes: /v1 (routes.py), OpenAI (openai_api.py)
      -> Dispatcher: bounded queue, cancel on disconnect         (dispatch.py)
      -> worker thread -> InferenceService -> engine

Errors leave through one map (responses.py). Building an app changes
nothing process-wide: thread switch interval, scheduling class and the
access-log filter are ``lift-sys serve``'s business (:mod:`priority`).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp

from lift_sys import __version__
from lift_sys.server import schemas as m
from lift_sys.server.dispatch import Dispatcher
from lift_sys.server.middleware import quiet_health_access_log, wrap
from lift_sys.server.openai_api import openai_router
from lift_sys.server.responses import error_response, install_error_handlers, status_for
from lift_sys.server.routes import v1_router
from lift_sys.service.core import InferenceService
from lift_sys.settings import Settings

__all__ = ["create_app", "asgi", "app_from_env", "error_response", "status_for", "quiet_health_access_log"]


def create_app(service: InferenceService, settings: Settings | None = None, *, workers: int | None = None,
               warm_up: bool = False) -> FastAPI:
    """The HTTP app over ``service`` (which already holds a loaded engine).

    ``warm_up``: queue :meth:`InferenceService.warm_up` as the first job, so
    the shared IR prompt prefix is prefilled before the first real request
    (which simply waits behind it if it comes sooner). ``lift-sys serve``
    turns it on (``LIFT_WARM_UP``). ``app.state.asgi`` is the app with its
    middlewares, what a server should run.
    """
    settings = settings or Settings()
    dispatcher = Dispatcher(service, settings, workers=workers, warm_up=warm_up)
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
    install_error_handlers(app)
    app.include_router(v1_router(dispatcher))
    app.include_router(openai_router(dispatcher))
    app.state.service = service
    app.state.dispatcher = dispatcher
    app.state.jobs = dispatcher.jobs
    app.state.metrics = dispatcher.metrics
    app.state.asgi = wrap(app, settings=settings, metrics=dispatcher.metrics, health_payload=dispatcher.health)
    return app


def asgi(service: InferenceService, settings: Settings | None = None, **kw: Any) -> ASGIApp:
    """The full ASGI stack (middlewares + app) to hand to uvicorn or Modal."""
    return create_app(service, settings, **kw).state.asgi


def app_from_env() -> ASGIApp:
    """uvicorn factory (``lift-sys serve --reload``): builds everything from LIFT_* settings."""
    from lift_sys.server.priority import tune_process_for_serving
    from lift_sys.service.runtime import service_from_settings

    tune_process_for_serving()
    quiet_health_access_log()
    settings = Settings()
    return asgi(service_from_settings(settings), settings, warm_up=settings.warm_up)
