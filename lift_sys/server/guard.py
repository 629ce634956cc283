"""What the HTTP server refuses before any endpoint sees a request.

Everything a client sends is untrusted; this module holds the checks that
apply to every request, whatever its endpoint:

* :func:`check_json_body` -- a JSON body must be JSON a person could have
  meant: no ``NaN``/``Infinity`` (Python's ``json`` accepts them; a float
  overflow like ``1e400`` becomes one too), no lone surrogates in any string
  or key (``"\\ud800"`` is legal JSON escape syntax and not text), a bounded
  nesting depth, integers of bounded length. Each refusal names the JSON
  pointer. Without this, a ``NaN`` reached pydantic, whose error echoed the
  input, which the error response could not encode: a 500.
* :class:`TimeoutHttpToolsProtocol` -- uvicorn's httptools protocol with a
  header read timeout (a connection that never finishes its headers is
  closed), a body read timeout (408) and a header size limit (431). uvicorn
  has neither timeout: 50 connections trickling bytes held 50 sockets
  indefinitely.
* :func:`uvicorn_config` -- the one uvicorn configuration ``lift-sys serve``
  and the tests run, so what is tested is what is served.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import sys
from typing import Any

from lift_sys.errors import InvalidRequest

_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _refuse(message: str, path: list[str]) -> InvalidRequest:
    pointer = "".join("/" + _escape(_printable(p)) for p in path)
    where = pointer or "/"
    shown = where if len(where) <= 160 else where[:160] + "…"
    return InvalidRequest(f"request body: {message} at {shown}", detail={"pointer": shown})


def _printable(text: str) -> str:
    """A key for an error message: lone surrogates shown as escapes (the message must encode)."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _check_string(text: str, path: list[str]) -> None:
    if not text.isascii() and (bad := _SURROGATE.search(text)) is not None:
        raise _refuse(f"string has a lone surrogate (\\u{ord(bad.group()):04x}) at index {bad.start()}; "
                      "text must be valid Unicode", path)


def check_json_value(value: Any, *, max_depth: int) -> None:
    """Refuse non-finite numbers, lone surrogates and nesting beyond ``max_depth``, naming the pointer.

    Iterative (an explicit stack), so the check itself has no recursion limit to hit.
    """
    stack: list[tuple[Any, list[str]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, float):
            if not math.isfinite(node):
                raise _refuse("NaN and Infinity are not JSON numbers (nor is one too large for a double, like 1e400)", path)
        elif isinstance(node, str):
            _check_string(node, path)
        elif isinstance(node, (dict, list)):
            if len(path) >= max_depth:
                raise _refuse(f"nesting deeper than {max_depth} levels", path)
            if isinstance(node, dict):
                for key, sub in node.items():
                    _check_string(key, [*path, key])
                    stack.append((sub, [*path, key]))
            else:
                stack.extend((sub, [*path, str(i)]) for i, sub in enumerate(node))


def check_json_body(body: bytes, *, max_depth: int = 64) -> Any:
    """Parse ``body`` as JSON the way the endpoints will, and refuse what no endpoint should see.

    Returns the parsed value. Raises :class:`InvalidRequest` (a 400) naming
    the problem: not UTF-8, not JSON (with line and column), too deep, an
    integer over Python's digit limit, a non-finite number or a lone
    surrogate (with the JSON pointer).
    """
    try:
        value = json.loads(body)
    except RecursionError:
        raise InvalidRequest(f"request body: nesting deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not UTF-8 text") from None
    except ValueError as exc:  # an integer literal over sys.get_int_max_str_digits() (4300)
        if "integer string conversion" in str(exc):
            raise InvalidRequest(f"request body: an integer has more than {sys.get_int_max_str_digits()} digits") from None
        raise InvalidRequest("request body is not valid JSON") from None
    check_json_value(value, max_depth=max_depth)
    return value


def is_json_content(content_type: bytes | None) -> bool:
    """Whether FastAPI would parse a body with this Content-Type as JSON (absent counts, as there)."""
    if not content_type:
        return True
    media = content_type.split(b";", 1)[0].strip().lower()
    main, _, sub = media.partition(b"/")
    return main == b"application" and (sub == b"json" or sub.endswith(b"+json"))


# --------------------------------------------------------------------------- uvicorn


def _error_bytes(status: int, kind: str, message: str, detail: dict[str, Any]) -> bytes:
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE

    body = json.dumps({"error": {"type": kind, "message": message, "detail": detail}}).encode()
    return b"".join([
        STATUS_LINE[status],
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n\r\n",
        body,
    ])


def protocol_class(*, header_timeout_s: float, body_timeout_s: float, max_header_bytes: int) -> type:
    """uvicorn's httptools protocol with read timeouts and a header size limit (values bound here)."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class TimeoutHttpToolsProtocol(HttpToolsProtocol):
        """Header timeout (close), body timeout (408), header size limit (431).

        * The header clock starts when the connection opens and when a new
          request begins on it; if the headers are not complete in
          ``header_timeout_s`` the connection is closed (uvicorn's keep-alive
          timeout only covers the idle gap *after* a response).
        * The body clock starts when the headers are complete; if the body is
          not complete in ``body_timeout_s`` the client gets a 408 and the
          connection is closed. The app sees a disconnect, so a handler
          waiting on the body ends.
        * Request line + headers beyond ``max_header_bytes`` get a 431.

        A request queued behind another on the same connection (pipelining)
        is not timed while uvicorn itself holds reading paused.
        """

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            self._header_timer: asyncio.TimerHandle | None = None
            self._body_timer: asyncio.TimerHandle | None = None
            self._header_bytes = 0
            self._in_headers = True  # until a request's headers are complete
            self._refused = False
            super().connection_made(transport)
            self._arm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_timers()
            super().connection_lost(exc)

        # ---- timers

        def _arm_header_timer(self) -> None:
            if self._header_timer is None:
                self._header_timer = self.loop.call_later(header_timeout_s, self._header_timed_out)

        def _cancel_timers(self) -> None:
            for name in ("_header_timer", "_body_timer"):
                timer = getattr(self, name, None)
                if timer is not None:
                    timer.cancel()
                    setattr(self, name, None)

        def _header_timed_out(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.flow is not None and self.flow.read_paused:  # we are not reading: not the client's delay
                self._arm_header_timer()
                return
            self._refused = True
            self.transport.close()

        def _body_timed_out(self) -> None:
            self._body_timer = None
            if self.transport.is_closing():
                return
            if self.flow is not None and self.flow.read_paused:
                self._body_timer = self.loop.call_later(body_timeout_s, self._body_timed_out)
                return
            self._refused = True
            if self.cycle is not None and not self.cycle.response_started:
                self.transport.write(_error_bytes(
                    408, "request_timeout",
                    f"the request body was not received within {body_timeout_s:g} s",
                    {"timeout_s": body_timeout_s},
                ))
            self.transport.close()  # connection_lost tells the app: http.disconnect

        # ---- parser callbacks

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)
            # Bytes that arrived while the headers are still incomplete. Counted
            # here, not in on_header: httptools buffers a header until it is
            # complete, so a never-ending header would otherwise grow unseen.
            if self._in_headers and not self._refused:
                self._header_bytes += len(data)
                if self._header_bytes > max_header_bytes:
                    self._refused = True
                    self._cancel_timers()
                    self.transport.write(_error_bytes(
                        431, "headers_too_large",
                        f"request line and headers exceed {max_header_bytes} bytes",
                        {"limit_bytes": max_header_bytes},
                    ))
                    self.transport.close()

        def send_400_response(self, msg: str) -> None:
            if not self._refused:
                super().send_400_response(msg)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._header_bytes = 0
            self._arm_header_timer()

        def on_headers_complete(self) -> None:
            self._in_headers = False
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().on_headers_complete()
            if self._body_timer is None:
                self._body_timer = self.loop.call_later(body_timeout_s, self._body_timed_out)

        def on_message_complete(self) -> None:
            if self._body_timer is not None:
                self._body_timer.cancel()
                self._body_timer = None
            self._in_headers = False  # until the next request begins (on_message_begin)
            super().on_message_complete()

    return TimeoutHttpToolsProtocol


def __getattr__(name: str) -> Any:
    """``SettingsProtocol``: the protocol class built from the LIFT_* environment.

    For ``lift-sys serve --reload``, whose worker process rebuilds uvicorn's
    configuration from picklable values: it names this attribute
    (``http="lift_sys.server.guard:SettingsProtocol"``) instead of
    passing a class.
    """
    if name == "SettingsProtocol":
        from lift_sys.settings import Settings

        settings = Settings()
        return protocol_class(header_timeout_s=settings.header_timeout_s, body_timeout_s=settings.body_timeout_s,
                              max_header_bytes=settings.max_header_bytes)
    raise AttributeError(name)


def uvicorn_options(settings: Any) -> dict[str, Any]:
    """uvicorn keyword arguments of ``lift-sys serve``: httptools with our timeouts, a connection cap.

    ``limit_concurrency`` answers 503 to a request that arrives while
    ``max_connections`` connections (or as many running requests) are open;
    the timeouts make sure slow clients cannot hold those slots for long.
    """
    protocol = protocol_class(header_timeout_s=settings.header_timeout_s, body_timeout_s=settings.body_timeout_s,
                              max_header_bytes=settings.max_header_bytes)
    return {"http": protocol, "limit_concurrency": settings.max_connections}


def uvicorn_config(app: Any, settings: Any, *, host: str | None = None, port: int | None = None, **kw: Any) -> Any:
    """The ``uvicorn.Config`` ``lift-sys serve`` runs (tests start servers with it too)."""
    import uvicorn

    return uvicorn.Config(app, host=host or settings.host, port=settings.port if port is None else port,
                          **uvicorn_options(settings), **kw)
