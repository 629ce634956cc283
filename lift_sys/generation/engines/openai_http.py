"""Remote engine: any OpenAI-compatible server that honours ``response_format`` json_schema.

SGLang (XGrammar), vLLM, and lift-sys's own server all qualify. This is how
the Modal deployment reaches SGLang, and how a user points lift-sys at a
GPU box (``--engine-url``). The grammar is compiled *on the server*; here
the schema is only linted (by the service) and sent along.

Always streams (``stream: true`` with ``include_usage``): that gives a real
time-to-first-token, lets a cancelled request stop within a chunk (closing
the stream closes the connection, and the server cancels), and still
returns exact usage.

Retries: only failures where the server provably did no work -- the
connection could not be made, or it answered 429/503 (overloaded, not
started) -- with exponential backoff honouring ``Retry-After``. Redirects
are followed (Modal answers long requests with 303).
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from lift_sys.errors import EngineError, InvalidRequest, LiftError, PromptTooLong
from lift_sys.generation.engines.base import (
    CancelToken,
    Continuation,
    ChatMessage,
    Completion,
    Constraint,
    OnText,
    GenerateOptions,
    Timings,
)

_RETRY_STATUS = {429, 503}


def _refuses_json_schema(message: str) -> bool:
    """The server's error says it does not know ``response_format: {"type": "json_schema"}``."""
    return "response_format" in message and "json_schema" in message and "json_object" in message


def _server_error(resp: httpx.Response, body: bytes) -> LiftError:
    detail: dict = {}
    try:
        err = json.loads(body).get("error")
        message = err.get("message") if isinstance(err, dict) else str(err)
        detail = (err.get("detail") or {}) if isinstance(err, dict) else {}
    except (ValueError, AttributeError):
        message = body[:300].decode("utf-8", "replace")
    text = f"remote engine answered {resp.status_code}: {message}"
    if resp.status_code == 413:
        if "prompt_tokens" in detail and "context_limit" in detail:
            return PromptTooLong(int(detail["prompt_tokens"]), int(detail["context_limit"]))
        return InvalidRequest(text)
    if resp.status_code in (400, 422):
        return InvalidRequest(text)
    return EngineError(text, detail={"status": resp.status_code})


class OpenAIHTTPEngine:
    """Engine over ``POST {base_url}/v1/chat/completions``."""

    name = "openai-http"
    can_continue = False  # an OpenAI-compatible API has no way to resume a constrained answer mid-grammar

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 900.0,
        connect_timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        context_length: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self.base_url = base
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=base,
            headers=headers,
            follow_redirects=True,
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
        )
        self.retries = retries
        self.backoff_s = backoff_s
        self._model = model
        self._schema_dialect = "openai"  # "llama.cpp" once a server refused json_schema (see generate)
        self._context_length = context_length

    # ------------------------------------------------------------------ facts

    def _discover(self) -> None:
        """Ask ``/v1/models`` which model is served (and its context, where the server says)."""
        try:
            resp = self._request("GET", "/v1/models")
            data = resp.json().get("data") or []
        except (LiftError, ValueError):
            data = []
        if data:
            first = data[0]
            self._model = self._model or first.get("id")
            ctx = first.get("max_model_len") or first.get("context_length")
            if self._context_length is None and isinstance(ctx, int):
                self._context_length = ctx

    @property
    def model_name(self) -> str:
        if self._model is None:
            self._discover()
        return self._model or "default"

    @property
    def context_length(self) -> int:
        if self._context_length is None:
            self._discover()
        return self._context_length or 32768

    def vocabulary(self) -> None:
        return None  # the server owns the tokenizer and the grammar engine

    def count_tokens(self, messages: list[ChatMessage]) -> None:
        return None

    def info(self) -> dict[str, Any]:
        return {"engine": self.name, "model": self._model or "default", "url": self.base_url}

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ HTTP

    def _sleep_for(self, attempt: int, resp: httpx.Response | None) -> float:
        if resp is not None:
            ra = resp.headers.get("retry-after")
            if ra and ra.isdigit():
                return min(float(ra), 30.0)
        return self.backoff_s * (2**attempt)

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        for attempt in range(self.retries + 1):
            try:
                resp = self._client.request(method, path, **kw)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self.retries:
                    raise EngineError(f"cannot reach {self.base_url}: {exc}") from exc
                time.sleep(self._sleep_for(attempt, None))
                continue
            if resp.status_code in _RETRY_STATUS and attempt < self.retries:
                time.sleep(self._sleep_for(attempt, resp))
                continue
            if resp.status_code >= 400:
                raise _server_error(resp, resp.content)
            return resp
        raise EngineError("unreachable")  # pragma: no cover

    def _payload(self, messages: list[ChatMessage], params: GenerateOptions, constraint: Constraint | None) -> dict:
        payload: dict[str, Any] = {
            "model": self.model_name,
            "messages": list(messages),
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.seed is not None:
            payload["seed"] = params.seed
        if constraint is not None:
            spec = constraint.spec
            if spec.kind == "json_schema" and self._schema_dialect == "llama.cpp":
                payload["response_format"] = {"type": "json_object", "schema": spec.source}
            elif spec.kind == "json_schema":
                payload["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "output", "schema": spec.source, "strict": True},
                }
            elif spec.kind == "regex":
                payload["regex"] = spec.source  # SGLang's (and our server's) extension
            else:
                raise InvalidRequest("a remote engine takes json_schema or regex constraints, not lark")
        return payload

    def generate(
        self,
        messages: list[ChatMessage],
        params: GenerateOptions,
        constraint: Constraint | None = None,
        *,
        on_text: OnText | None = None,
        cancel: CancelToken | None = None,
        continue_from: Continuation | None = None,
    ) -> Completion:
        if continue_from is not None:
            raise InvalidRequest("a remote engine cannot continue an earlier completion (can_continue is False)")
        try:
            return self._generate(messages, params, constraint, on_text, cancel)
        except (EngineError, InvalidRequest) as exc:
            if not (constraint is not None and constraint.spec.kind == "json_schema" and self._schema_dialect == "openai"
                    and _refuses_json_schema(str(exc))):
                raise
        # llama-cpp-python's server knows only {"type": "json_object", "schema": ...}: speak its dialect
        # from now on. Either way the service validates the output against the schema afterwards, so a
        # server that ignored the schema gives a clear schema error, never unchecked output.
        self._schema_dialect = "llama.cpp"
        return self._generate(messages, params, constraint, on_text, cancel)

    def _generate(self, messages: list[ChatMessage], params: GenerateOptions, constraint: Constraint | None,
                  on_text: OnText | None, cancel: CancelToken | None) -> Completion:
        payload = self._payload(messages, params, constraint)
        t_start = time.perf_counter()
        for attempt in range(self.retries + 1):
            try:
                with self._client.stream("POST", "/v1/chat/completions", json=payload) as resp:
                    if resp.status_code in _RETRY_STATUS and attempt < self.retries:
                        time.sleep(self._sleep_for(attempt, resp))
                        continue
                    if resp.status_code >= 400:
                        raise _server_error(resp, resp.read())
                    return self._consume(resp, t_start, on_text, cancel)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == self.retries:
                    raise EngineError(f"cannot reach {self.base_url}: {exc}") from exc
                time.sleep(self._sleep_for(attempt, None))
            except httpx.TimeoutException as exc:  # read timeout: the server may be working; do not retry
                raise EngineError(f"{self.base_url} timed out: {exc}") from exc
            except httpx.HTTPError as exc:
                raise EngineError(f"HTTP error talking to {self.base_url}: {exc}") from exc
        raise EngineError(f"{self.base_url} stayed overloaded after {self.retries} retries")

    def _consume(self, resp: httpx.Response, t_start: float, on_text: OnText | None, cancel: CancelToken | None) -> Completion:
        pieces: list[str] = []
        finish: str | None = None
        usage: dict[str, Any] = {}
        model = self._model or ""
        t_first: float | None = None
        for line in resp.iter_lines():
            if cancel is not None and cancel.cancelled:
                finish = "cancelled"
                break  # leaving the context manager closes the connection
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                err = event["error"]
                raise EngineError(f"remote engine failed mid-stream: {err.get('message', err)}")
            model = event.get("model") or model
            if event.get("usage"):
                usage = event["usage"]
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    if t_first is None:
                        t_first = time.perf_counter()
                    pieces.append(piece)
                    if on_text:
                        on_text(piece)
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        t_end = time.perf_counter()
        if finish not in ("stop", "length", "cancelled"):
            # e.g. a stream that ended without a finish_reason: report it, never guess "stop"
            raise EngineError(f"remote engine ended the stream without a usable finish_reason ({finish!r})")
        timings = Timings(
            ttft_ms=((t_first or t_end) - t_start) * 1000,
            decode_ms=(t_end - (t_first or t_end)) * 1000,
            total_ms=(t_end - t_start) * 1000,
        )
        return Completion(
            text="".join(pieces),
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=finish,  # type: ignore[arg-type]
            timings=timings,
            # SGLang/vLLM (and our server) report prefix-cache hits here; absent = unknown = 0
            cached_prompt_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
            model=model,
        )
