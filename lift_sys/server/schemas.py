"""Request/response models of the HTTP API (they document every field on /docs)."""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

Backend = Literal["llguidance", "xgrammar"]


# Seeds are int64 on SGLang/vLLM; numpy refuses negative ones.
from lift_sys.generation.options import MAX_TEMPERATURE, SEED_MAX


class _Req(BaseModel):
    # Unknown fields are refused (not ignored), and so are NaN/Infinity even
    # from Python callers (the HTTP body check refuses them first).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens in the rendered prompt")
    completion_tokens: int = Field(description="Tokens generated (including grammar-forced ones)")
    cached_prompt_tokens: int = Field(0, description="Prompt tokens whose KV cache was reused from the previous request "
                                      "(the shared system prompt + worked example of every IR request)")


class TimingsOut(BaseModel):
    queue_ms: float = Field(description="Waiting for the model")
    compile_ms: float = Field(description="Grammar lint + compile (near 0 on a cache hit)")
    ttft_ms: float = Field(description="Engine start to first generated token")
    decode_ms: float = Field(description="First to last generated token")
    total_ms: float = Field(description="Whole request inside the server")


class ErrorBody(BaseModel):
    type: str = Field(description="Stable error kind, e.g. unsupported_schema, truncated_output")
    message: str = Field(description="One line a person can act on")
    detail: Optional[dict[str, Any]] = Field(None, description="Structured facts: keyword/pointer, partial_text, limits")


class ErrorResponse(BaseModel):
    error: ErrorBody


class IRRequest(_Req):
    prompt: str = Field(min_length=1, description="The request in plain English", examples=["a function that reverses a string"])
    max_tokens: Optional[int] = Field(None, ge=1, description="Generation budget; output cut by it is a 422 truncated_output")
    temperature: float = Field(0.0, ge=0, le=MAX_TEMPERATURE, description="0 = greedy (deterministic)")
    seed: Optional[int] = Field(None, ge=0, le=SEED_MAX, description="Sampling seed (temperature > 0)")
    grammar_backend: Optional[Backend] = Field(None, description="Constraint engine; default: the server's")


class IRResponse(BaseModel):
    ir: dict[str, Any] = Field(description="The IR document (see lift_sys.ir.IR)")
    checks: list[str] = Field(description="Semantic findings the schema cannot express (warnings)")
    usage: Usage
    timings: TimingsOut
    finish_reason: str
    model: str


class CodeRequest(_Req):
    ir: dict[str, Any] = Field(description="An IR document (as returned by /v1/ir, metadata optional)")
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=MAX_TEMPERATURE)
    seed: Optional[int] = Field(None, ge=0, le=SEED_MAX)
    attempts: int = Field(3, ge=1, le=6, description="Candidates to generate and verify in the sandbox; the best is chosen")


class PipelineRequest(_Req):
    prompt: str = Field(min_length=1, description="The request in plain English")
    attempts: int = Field(3, ge=1, le=6, description="Code candidates, alternately from the prompt and the IR; all verified, the best chosen")
    max_tokens: Optional[int] = Field(None, ge=1, description="Budget for each generation (IR, each code attempt)")
    grammar_backend: Optional[Backend] = None


class CheckOut(BaseModel):
    name: str = Field(description="parses, defines_function, signature_matches, imports_allowed, runs, example[i], postcondition[j] on example[i], ...")
    passed: bool
    detail: str = Field("", description="Evidence: what the code returned/raised, or why it was refused")
    scope: str = Field("code", description="code = counts toward verified; ir = a finding about the IR itself; "
                       "suspect = an invented claim that agreeing candidates contradict (reported, not blocking)")
    calls_function: bool = Field(False, description="A check that calls the function itself (its calls answered by the sandbox)")
    provenance: str = Field("static", description="static | given (stated in the request) | invented (by the model) | "
                            "agreed (invented, and the code satisfies it) | suspect | probe (other candidates "
                            "passing every check answer a probe input differently)")




class VerificationOut(BaseModel):
    verified: bool
    passed: int
    total: int
    checks: list[CheckOut]
    sandbox_seconds: float
    ir_findings: int = Field(0, description="Failed checks that are findings about the IR (scope ir), not the code")
    suspect: int = Field(0, description="Invented checks that agreeing candidates contradict (scope suspect)")
    isolation: str = Field("bwrap", description="The sandbox level in force: bwrap | process")
    seccomp: bool = Field(False, description="The sandboxed process confirmed its seccomp filter")
    landlock: int = Field(0, description="The Landlock ABI the sandboxed process restricted itself with (0: none)")


class CodeResponse(BaseModel):
    code: str = Field(description="Python source of the IR's function (the best candidate)")
    language: str
    checks: list[CheckOut] = Field(description="Static checks against the IR: parses, name, parameters in order")
    ok: bool = Field(description="All static checks passed")
    verified: bool = Field(description="Every blocking verification check passed (examples and assertions run in a sandbox)")
    verification: Optional[VerificationOut] = None
    selection: dict[str, Any] = Field(default_factory=dict, description="Which candidate won and why (given checks, then agreement)")
    attempts: list[dict[str, Any]] = Field(default_factory=list, description="Each candidate: source (request or ir), code, verification, temperature, seed, agreement")
    usage: Usage
    timings: TimingsOut
    finish_reason: str
    model: str


class Message(BaseModel):
    """A chat message. Other fields (name, tool_calls, ...) are refused: the model would never see them."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str


class GenerateRequest(_Req):
    prompt: Optional[str] = Field(None, description="A single user message (or give messages)")
    messages: Optional[list[Message]] = Field(None, description="Chat messages (or give prompt)")
    json_schema: Optional[dict[str, Any]] = Field(None, description="Constrain to this JSON Schema")
    regex: Optional[str] = Field(None, description="Constrain to this regular expression")
    lark: Optional[str] = Field(None, description="Constrain to this Lark grammar (llguidance only)")
    max_tokens: Optional[int] = Field(None, ge=1)
    temperature: float = Field(0.0, ge=0, le=MAX_TEMPERATURE)
    top_p: float = Field(1.0, gt=0, le=1)
    seed: Optional[int] = Field(None, ge=0, le=SEED_MAX)
    grammar_backend: Optional[Backend] = None


class ValidatedKeyword(BaseModel):
    keyword: str
    pointer: str
    reason: str


class EnforcementOut(BaseModel):
    """How the constraint was enforced (also the ``x-lift-enforcement`` header)."""

    mode: Literal["grammar", "grammar+validation"] = Field(
        description="grammar: the grammar is the schema's constraint; grammar+validation: a looser grammar (the "
                    "keywords below left out), every sample validated against the full schema and resampled")
    samples: int = Field(description="Generations it took (>1 only for grammar+validation)")
    validated_keywords: list[ValidatedKeyword] = Field(default_factory=list)


class GenerateResponse(BaseModel):
    text: str
    json_: Optional[Any] = Field(None, alias="json", description="Parsed output when json_schema was given")
    usage: Usage
    timings: TimingsOut
    finish_reason: str
    model: str
    enforcement: Optional[EnforcementOut] = None

    model_config = ConfigDict(populate_by_name=True)


# ---- OpenAI-compatible chat completions


class JsonSchemaFormat(BaseModel):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: Optional[bool] = None
    description: Optional[str] = None

    model_config = ConfigDict(populate_by_name=True)


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaFormat] = None


class StreamOptions(BaseModel):
    include_usage: bool = False


# OpenAI chat fields this server does not implement, with the values that mean
# "not used". Any other value is refused (400 unsupported_parameter) instead of
# being ignored with a 200 that answers a different question.
CHAT_UNSUPPORTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "tools": ((None, []), "tool calling is not implemented; use response_format json_schema"),
    "tool_choice": ((None, "none"), "tool calling is not implemented"),
    "parallel_tool_calls": ((None,), "tool calling is not implemented"),
    "functions": ((None, []), "function calling is not implemented; use response_format json_schema"),
    "function_call": ((None, "none"), "function calling is not implemented"),
    "n": ((None, 1), "one choice per request"),
    "best_of": ((None, 1), "one choice per request"),
    "logprobs": ((None, False), "log probabilities are not returned"),
    "top_logprobs": ((None, 0), "log probabilities are not returned"),
    "logit_bias": ((None, {}), "logit bias is not applied"),
    "presence_penalty": ((None, 0), "penalties are not applied"),
    "frequency_penalty": ((None, 0), "penalties are not applied"),
    "repetition_penalty": ((None, 1), "penalties are not applied"),
    "top_k": ((None, -1, 0), "only temperature and top_p sampling"),
    "min_p": ((None, 0), "only temperature and top_p sampling"),
    "echo": ((None, False), "the prompt is not echoed"),
    "suffix": ((None,), "no insertion mode"),
    "audio": ((None,), "text only"),
    "modalities": ((None, ["text"]), "text only"),
    "prediction": ((None,), "predicted outputs are not supported"),
    "reasoning_effort": ((None,), "not a reasoning model"),
    "web_search_options": ((None,), "no web search"),
    "stop": ((None, [], ""), "stop sequences are not supported; use response_format or regex to bound output"),
}
# Accepted and without effect on the completion (bookkeeping fields).
CHAT_IGNORED = frozenset({"model", "user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"})


def _is_neutral(value: Any, neutral: tuple[Any, ...]) -> bool:
    """``value`` is null or one of ``neutral`` (a bool is not a number here: ``n: true`` is not ``n: 1``)."""
    if value is None:
        return True
    return any(n is not None and isinstance(value, bool) == isinstance(n, bool) and value == n for n in neutral)


class ChatCompletionRequest(BaseModel):
    model: Optional[str] = Field(None, description="Ignored beyond echo: the server serves one model")
    messages: list[Message] = Field(min_length=1)
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    temperature: Optional[float] = Field(1.0, ge=0, le=MAX_TEMPERATURE, description="null = 1.0")
    top_p: Optional[float] = Field(1.0, gt=0, le=1, description="null = 1.0")
    seed: Optional[int] = Field(None, ge=0, le=SEED_MAX)
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    response_format: Optional[ResponseFormat] = None
    regex: Optional[str] = Field(None, description="Extension (as in SGLang): constrain to a regex")

    # Every other field is kept (extra="allow") so that it can be refused by
    # name: see CHAT_UNSUPPORTED / CHAT_IGNORED and :meth:`refuse_unsupported`.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    def refuse_unsupported(self) -> None:
        """Raise UnsupportedParameter for the first field that would change the answer if honoured."""
        from lift_sys.errors import UnsupportedParameter

        for name, value in (self.model_extra or {}).items():
            if name in CHAT_IGNORED:
                continue
            if name not in CHAT_UNSUPPORTED:
                raise UnsupportedParameter(name, "unknown parameter")
            neutral, reason = CHAT_UNSUPPORTED[name]
            if not _is_neutral(value, neutral):
                raise UnsupportedParameter(name, reason)
