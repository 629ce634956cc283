"""Errors shared by every layer.

Each error carries a stable ``kind`` string. Fronts map kinds to what their
medium needs (an HTTP status, a CLI exit code) without the service knowing
about either: the service raises, the front translates.
"""

from __future__ import annotations

from typing import Any


class LiftError(Exception):
    """Base class: a failure a user can act on, with a one-line message."""

    kind = "lift_error"

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail or {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.kind, "message": self.message}
        if self.detail:
            body["detail"] = self.detail
        return body


class InvalidRequest(LiftError):
    """The caller asked for something malformed (empty prompt, bad option)."""

    kind = "invalid_request"


class UnsupportedSchemaError(InvalidRequest):
    """The schema uses a keyword the chosen grammar backend would not enforce.

    Rejecting it up front is the only honest option: silently ignoring the
    keyword would return output that *looks* constrained but is not.
    """

    kind = "unsupported_schema"

    def __init__(self, keyword: str, pointer: str, backend: str, reason: str = "") -> None:
        where = pointer or "/"
        why = f": {reason}" if reason else ""
        super().__init__(
            f"schema keyword '{keyword}' at {where} is not enforced by the {backend} backend{why}",
            detail={"keyword": keyword, "pointer": where, "backend": backend},
        )
        self.keyword = keyword
        self.pointer = where
        self.backend = backend


class SchemaRefused(InvalidRequest):
    """The schema asks for something no library may do on a client's behalf.

    A reference that is not a same-document JSON pointer (``http://``,
    ``file:``, a relative path, an anchor), a base-URI change (``$id``), an
    unknown ``$schema`` dialect, a reference that points nowhere, or a
    reference cycle that consumes no input. Refused before any backend or
    validator sees the schema, so nothing is ever fetched or looped on.
    """

    kind = "invalid_schema"

    def __init__(self, keyword: str, pointer: str, reason: str) -> None:
        where = pointer or "/"
        super().__init__(f"schema keyword '{keyword}' at {where}: {reason}",
                         detail={"keyword": keyword, "pointer": where})
        self.keyword = keyword
        self.pointer = where


class UnsupportedParameter(InvalidRequest):
    """A request field this server would otherwise have to ignore (tools, n > 1, logprobs ...).

    Ignoring it would answer a different question than the one asked, with
    a 200; refusing it names the field.
    """

    kind = "unsupported_parameter"

    def __init__(self, parameter: str, reason: str = "") -> None:
        why = f": {reason}" if reason else ""
        super().__init__(f"'{parameter}' is not supported by this server{why}", detail={"parameter": parameter})
        self.parameter = parameter


class GrammarCompileError(InvalidRequest):
    """The grammar backend could not compile the schema/grammar."""

    kind = "grammar_compile_error"


class GrammarCompileTimeout(GrammarCompileError):
    """Compilation took longer than the configured time box."""

    kind = "grammar_compile_timeout"


class GrammarRuntimeError(InvalidRequest):
    """The grammar backend failed while decoding (a resource limit, a dead end).

    Raised instead of an engine error: the constraint the caller gave could
    not be followed to a complete output, and the message says why in one
    line (never the backend's internal state dump).
    """

    kind = "grammar_error"


class PromptTooLong(InvalidRequest):
    """The prompt does not fit the model's context window."""

    kind = "prompt_too_long"

    def __init__(self, prompt_tokens: int, limit: int) -> None:
        super().__init__(
            f"prompt is {prompt_tokens} tokens; the model's context holds {limit} "
            "(including the tokens to generate)",
            detail={"prompt_tokens": prompt_tokens, "context_limit": limit},
        )


class TruncatedOutput(LiftError):
    """Generation stopped at ``max_tokens`` before the structure was complete.

    This is not "invalid JSON": the output was valid so far and simply cut.
    The partial text is kept so nothing the model produced is lost, and
    ``result`` carries the whole partial generation (usage, timings) for
    fronts whose semantics are "200 with finish_reason length" (the OpenAI
    API).
    """

    kind = "truncated_output"

    def __init__(self, partial_text: str, max_tokens: int, completion_tokens: int, result: Any = None) -> None:
        super().__init__(
            f"output truncated at max_tokens={max_tokens} before the output was complete; "
            "raise max_tokens (--max-tokens)",
            detail={
                "partial_text": partial_text,
                "max_tokens": max_tokens,
                "completion_tokens": completion_tokens,
            },
        )
        self.partial_text = partial_text
        self.max_tokens = max_tokens
        self.result = result


class RunawayOutput(TruncatedOutput):
    """Generation stopped early because the output started repeating itself (a loop, not an answer).

    A kind of truncation (same status, partial text kept): the caller may
    resample with another seed, which is what the IR step does.
    """

    kind = "runaway_output"

    def __init__(self, partial_text: str, max_tokens: int, completion_tokens: int, result: Any = None) -> None:
        super().__init__(partial_text, max_tokens, completion_tokens, result)
        self.message = (f"output stopped after {completion_tokens} tokens: it was repeating itself "
                        "(a loop, not an answer); resample with another seed or temperature")
        self.args = (self.message,)


class OutputValidationError(LiftError):
    """Constrained output failed validation (a backend bug or a model-side rule)."""

    kind = "output_validation_error"


class SchemaNotEnforced(OutputValidationError):
    """The output of a caller-supplied schema does not validate against it.

    The backend accepted the schema but enforced part of it differently
    from the JSON Schema validator (e.g. a regex dialect). That is a
    property of the caller's schema on this backend, not a server fault:
    reported as such (422), with the pointer and the output.
    """

    kind = "schema_not_enforced"


class ModelNotAvailable(LiftError):
    """The model's files are not present; the message names the install command."""

    kind = "model_not_available"


class ModelIntegrityError(LiftError):
    """Assembled/downloaded model bytes do not match the registry's sha256."""

    kind = "model_integrity_error"


class EngineError(LiftError):
    """The engine failed (remote server error, decode failure)."""

    kind = "engine_error"


class Cancelled(LiftError):
    """The caller went away; generation stopped early."""

    kind = "cancelled"


class Overloaded(LiftError):
    """Too many requests are waiting for the model; retry later."""

    kind = "overloaded"

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, detail={"retry_after_s": retry_after_s})
        self.retry_after_s = retry_after_s


class Unauthorized(LiftError):
    """Missing or wrong API key."""

    kind = "unauthorized"


class PayloadTooLarge(InvalidRequest):
    """The request body exceeds the server's limit."""

    kind = "payload_too_large"
