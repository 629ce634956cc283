"""How errors leave the server: one status per error type, one body shape.

Errors are ``{"error": {"type", "message", "detail"}}`` with a status that
means something (see ``STATUS``); a 200 never carries an error. A request
the schema models refuse is a 400 naming where and what; an unexpected
exception is a 500 without internals (uvicorn logs the traceback).
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from lift_sys import errors

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


def encodable(value: Any) -> Any:
    """``value`` with what JSON cannot carry replaced: non-finite floats -> None, lone surrogates -> U+FFFD.

    An error body must always encode: a NaN or a ``"\\ud800"`` echoed from a
    request once turned a 400 into a 500.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8") if not value.isascii() else value
    if isinstance(value, dict):
        return {encodable(str(k)): encodable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encodable(v) for v in value]
    if value is None or isinstance(value, (bool, int)):
        return value
    return encodable(str(value))


def error_response(exc: errors.LiftError) -> JSONResponse:
    headers = {}
    if isinstance(exc, errors.Overloaded):
        headers["Retry-After"] = str(exc.retry_after_s)
    if isinstance(exc, errors.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": encodable(exc.to_dict())}, status_code=status_for(exc), headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map every exception an endpoint can raise to a status and the error body."""

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
