"""A scripted engine for fast tests of the layers above the engine (service, server, CLI).

It is a *remote-kind* engine (no vocabulary): the service hands it the
constraint's spec, as it would to SGLang, and validates what comes back. It
answers from a script -- a list of texts, or a function of (messages,
params, constraint) -- and otherwise with the smallest instance of the
requested JSON schema. Everything else behaves like a real engine:
``max_tokens`` cuts the text and reports ``finish_reason="length"``,
``on_text`` streams it piece by piece, a cancel stops it between pieces,
and ``delay_s`` per piece makes queueing and cancellation observable.

Never a substitute for the real-model tests; a way to test everything
around the model in milliseconds.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any, Callable, Iterable

from lift_sys.errors import InvalidRequest
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

Responder = Callable[[list[ChatMessage], GenerateOptions, "Constraint | None"], str]
_PIECE = re.compile(r"\s+|[^\s]{1,4}")  # "tokens": whitespace runs and chunks of up to 4 characters


def pieces(text: str) -> list[str]:
    """How the fake engine splits text into tokens (deterministic, ~4 characters each)."""
    return _PIECE.findall(text)


def minimal_instance(schema: Any, defs: dict | None = None, depth: int = 0) -> Any:
    """The smallest value a JSON schema accepts (enough for the schemas tests send)."""
    if not isinstance(schema, dict) or depth > 20:
        return None
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return minimal_instance(defs.get(schema["$ref"].rsplit("/", 1)[-1], {}), defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return minimal_instance(schema[key][0], defs, depth + 1)
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        props = schema.get("properties", {})
        return {k: minimal_instance(props[k], defs, depth + 1) for k in schema.get("required", []) if k in props}
    if kind == "array":
        n = schema.get("minItems", 0)
        head = [minimal_instance(p, defs, depth + 1) for p in schema.get("prefixItems", [])]
        return head + [minimal_instance(schema.get("items", {}), defs, depth + 1) for _ in range(n - len(head))]
    if kind == "string":
        return "x" * schema.get("minLength", 0)
    if kind in ("integer", "number"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    return None


class FakeEngine:
    """Engine protocol, scripted. ``script``: texts answered in turn (the last repeats), or a responder."""

    name = "fake"

    def __init__(self, script: Iterable[str] | Responder | None = None, *, model_name: str = "fake-model",
                 context_length: int = 4096, delay_s: float = 0.0, can_continue: bool = False) -> None:
        """``can_continue``: act like a local engine that resumes a completion (a scripted answer to a
        continuation must start with the kept prefix, as the real one's does); off, it is remote-kind."""
        self.can_continue = can_continue
        self.continuations: list[Continuation] = []
        self.model_name = model_name
        self.context_length = context_length
        self.delay_s = delay_s
        self._responder: Responder | None = script if callable(script) else None
        self._texts = list(script) if script is not None and not callable(script) else []
        self.calls: list[tuple[list[ChatMessage], GenerateOptions, Constraint | None]] = []

    def vocabulary(self) -> None:
        return None  # remote kind: takes the spec, masks on "its" side

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return sum(len(pieces(m["content"])) + 4 for m in messages)

    def _answer(self, messages: list[ChatMessage], params: GenerateOptions, constraint: Constraint | None) -> str:
        if self._responder is not None:
            return self._responder(messages, params, constraint)
        if self._texts:
            return self._texts.pop(0) if len(self._texts) > 1 else self._texts[0]
        if constraint is not None and constraint.spec.kind == "json_schema":
            return json.dumps(minimal_instance(constraint.spec.source), separators=(",", ":"))
        return "ok"

    def generate(self, messages: list[ChatMessage], params: GenerateOptions, constraint: Constraint | None = None, *,
                 on_text: OnText | None = None, cancel: CancelToken | None = None,
                 continue_from: Continuation | None = None) -> Completion:
        if continue_from is not None and not self.can_continue:
            raise InvalidRequest("the fake engine cannot continue an earlier completion (can_continue is False)")
        t0 = time.perf_counter()
        self.calls.append((messages, params, constraint))
        prompt_tokens = self.count_tokens(messages)
        answer = self._answer(messages, params, constraint)
        if continue_from is not None:
            self.continuations.append(continue_from)
            kept = continue_from.completion.text[: continue_from.chars]
            if not answer.startswith(kept):
                raise InvalidRequest(f"scripted continuation does not start with the kept prefix {kept[-40:]!r}")
        toks = pieces(answer)
        finish = "stop"
        if len(toks) > params.max_tokens:
            toks, finish = toks[: params.max_tokens], "length"
        out: list[str] = []
        first = None
        for tok in toks:
            if cancel is not None and cancel.cancelled:
                finish = "cancelled"
                break
            if self.delay_s:
                time.sleep(self.delay_s)
            out.append(tok)
            first = first or time.perf_counter()
            if on_text is not None:
                on_text(tok)
        end = time.perf_counter()
        first = first or end
        timings = Timings(ttft_ms=(first - t0) * 1000, decode_ms=(end - first) * 1000, total_ms=(end - t0) * 1000)
        return Completion("".join(out), prompt_tokens, len(out), finish, timings, model=self.model_name)  # type: ignore[arg-type]

    def info(self) -> dict[str, Any]:
        # slots 1: scripted replies go out in call order, so tests stay deterministic
        return {"engine": self.name, "model": self.model_name, "context_length": self.context_length, "slots": 1}
