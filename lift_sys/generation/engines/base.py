"""The Engine protocol: the one interface every model runtime implements.

An engine turns chat messages + sampling settings (+ an optional
constraint) into text, token counts, a finish reason and timings. It knows
nothing about IR, HTTP or Modal. Two kinds exist:

* local engines (llama.cpp) expose a :class:`Vocabulary` and take a
  :class:`CompiledGrammar`: the mask is applied in our own decode loop;
* remote engines (any OpenAI-compatible server) have no vocabulary here
  and pass the :class:`GrammarSpec` along (``response_format``), so the
  server's grammar engine (XGrammar in SGLang) does the masking.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Protocol, TypedDict

from lift_sys.generation.grammar.base import CompiledGrammar, GrammarSpec, Vocabulary
from lift_sys.generation.options import GenerateOptions

FinishReason = Literal["stop", "length", "cancelled"]


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


SamplingParams = GenerateOptions
"""The engine-side name of :class:`GenerateOptions` (one type: engines read max_tokens/temperature/top_p/seed)."""


@dataclass
class Constraint:
    """A constraint as the engine receives it: the spec, and (local engines) its compiled form."""

    spec: GrammarSpec
    backend: str
    compiled: CompiledGrammar | None = None


@dataclass
class Timings:
    """Milliseconds spent in each phase of one generation."""

    compile_ms: float = 0.0
    prompt_ms: float = 0.0  # prefill of the uncached prompt suffix
    ttft_ms: float = 0.0  # from engine start to the first generated token
    decode_ms: float = 0.0  # from the first token to the last
    mask_ms: float = 0.0  # total time computing grammar masks
    total_ms: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in asdict(self).items()}


@dataclass
class Completion:
    """What an engine returns."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: FinishReason
    timings: Timings = field(default_factory=Timings)
    cached_prompt_tokens: int = 0  # prompt tokens whose KV was reused
    forced_tokens: int = 0  # tokens appended by grammar fast-forward
    model: str = ""
    token_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def decode_tok_s(self) -> float:
        """Completion tokens per second of decode (after the first token)."""
        if self.completion_tokens <= 1 or self.timings.decode_ms <= 0:
            return 0.0
        return (self.completion_tokens - 1) / (self.timings.decode_ms / 1000)


@dataclass(frozen=True)
class Continuation:
    """Continue an earlier completion of the same messages and constraint from its first ``chars`` characters.

    Why: when a check rejects the end of a sample (an IR predicate that is
    not one boolean expression), everything before it is still good. A new
    sample re-decoded that prefix -- 106-258 tokens, ~10-20 s here, for 23
    of the 40 IRs of HumanEval 0-39 -- where a continuation keeps it: the
    engine replays the prefix's own tokens through the grammar matcher, and
    their KV is still in the context, so decoding resumes at the cut.
    Engines that cannot (remote ones) say so with ``can_continue = False``
    and the caller samples afresh.
    """

    completion: Completion
    chars: int


class CancelToken:
    """Set by a front when its caller went away; the decode loop checks it every token."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


OnText = Callable[[str], None]
"""Streaming callback: receives each new piece of decoded text."""


class Engine(Protocol):
    name: str
    model_name: str
    context_length: int
    can_continue: bool  # generate() takes ``continue_from`` (local engines)

    def vocabulary(self) -> Vocabulary | None:
        """The tokenizer view grammar backends compile against; None for remote engines."""

    def count_tokens(self, messages: list[ChatMessage]) -> int | None:
        """Prompt length in tokens, when the engine can tell cheaply."""

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
        """Run one generation (``continue_from``: only where ``can_continue``; the result's text includes the kept prefix)."""

    def info(self) -> dict[str, Any]:
        """Static facts for /health and stats (model, engine, context)."""
