"""The plain-ASGI layers in front of the app: /health fast path, metrics, guard.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: it keeps the
client's disconnect visible to the endpoint (a cancelled request stops its
generation) and costs a few function calls per request.
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any, Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lift_sys import errors
from lift_sys.server.guard import check_json_body, is_json_content
from lift_sys.server.metrics import Metrics
from lift_sys.server.responses import error_response


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


def wrap(app: ASGIApp, *, settings: Any, metrics: Metrics, health_payload: Callable[[], dict[str, Any]]) -> ASGIApp:
    """The full stack, outermost first: /health fast path -> metrics -> guard (key, body) -> app."""
    guarded = GuardMiddleware(app, max_body=settings.max_body_bytes,
                              api_key=settings.api_key.get_secret_value() if settings.api_key else None,
                              open_paths=("/health",), max_depth=settings.max_json_depth)
    return HealthFastPath(MetricsMiddleware(guarded, metrics), health_payload, metrics)
