"""One generation's decode state: grammar matcher, sampler, stop rules, streamed text.

Why a module of its own: the single-stream loop (``LIFT_SLOTS=1``) and the
batch scheduler (``LIFT_SLOTS>1``) run exactly this per-token logic and
differ only in how the logits are produced. llama.cpp's logits for one
sequence are bit-identical whether it is decoded alone or beside others
(measured: max |difference| 0.0 over 40 steps beside a chunked 300-token
prefill and a third sequence), so a greedy request gives the same tokens
either way -- ``tests/test_batching.py`` checks it with both grammar
backends.
"""

from __future__ import annotations

import codecs
import time
from typing import Sequence

import numpy as np

from lift_sys.errors import EngineError, GrammarRuntimeError
from lift_sys.generation.engines.base import (
    Completion,
    Constraint,
    FinishReason,
    OnText,
    SamplingParams,
    Timings,
)
from lift_sys.generation.grammar.base import bitmask_allows, bitmask_to_bool, clean_backend_message, new_bitmask


def grammar_failed(constraint: Constraint | None, at: int, reason: str) -> GrammarRuntimeError:
    """A decode-time grammar failure as the service reports it (400 grammar_error)."""
    backend = constraint.backend if constraint is not None else "?"
    return GrammarRuntimeError(
        f"the {backend} grammar failed at output token {at}: {reason}",
        detail={"backend": backend, "completion_tokens": at},
    )


def sample(
    logits: np.ndarray, params: SamplingParams, rng: np.random.Generator, bitmask: np.ndarray | None, n_vocab: int
) -> int:
    """Pick a token: greedy fast path (argmax already legal), else mask, then argmax or top-p sampling."""
    if params.temperature == 0:
        token = int(np.argmax(logits))
        if bitmask is None or bitmask_allows(bitmask, token):
            return token  # the common case: the model's choice is already legal
    if bitmask is not None:
        allowed = bitmask_to_bool(bitmask, n_vocab)
        if not allowed.any():
            raise GrammarRuntimeError("the grammar allows no next token (dead end)")
        logits = np.where(allowed, logits, -np.inf)
    if params.temperature == 0:
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / params.temperature
    probs = np.exp(scaled)
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs)
        cum = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cum, params.top_p)) + 1]
        sub = probs[keep] / probs[keep].sum()
        return int(keep[rng.choice(len(keep), p=sub)])
    return int(rng.choice(n_vocab, p=probs))


class SequenceState:
    """Everything one request carries between decode steps.

    The caller feeds the prompt, then alternates: logits -> :meth:`step`
    -> decode the returned tokens -> logits ... until :meth:`step` returns
    ``[]`` (finished: see :attr:`finish`). Own seed, own matcher, own
    budget: nothing here is shared between sequences.
    """

    def __init__(
        self,
        *,
        params: SamplingParams,
        constraint: Constraint | None,
        budget: int,
        n_vocab: int,
        vocab_tokens: Sequence[bytes],
        stop_ids: frozenset[int],
        on_text: OnText | None = None,
        replay: Sequence[int] = (),
    ) -> None:
        """``replay``: tokens an earlier completion already chose (a continuation): the matcher takes
        them now, they count as output, and their text is streamed before the first new token."""
        if constraint is not None and constraint.compiled is None:
            raise EngineError("local engine needs a compiled grammar")
        self.params = params
        self.constraint = constraint
        self.budget = budget
        self._n_vocab = n_vocab
        self._vocab_tokens = vocab_tokens
        self._stop_ids = stop_ids
        self.on_text = on_text  # the batch scheduler re-routes it through the caller's thread
        self._matcher = constraint.compiled.matcher() if constraint is not None and constraint.compiled else None
        self._bitmask = new_bitmask(n_vocab)
        self._rng = np.random.default_rng(params.seed)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pieces: list[str] = []
        self.out: list[int] = []
        self.forced_total = 0
        self.finish: FinishReason = "length"
        self.done = False
        self.timings = Timings()
        self.t_start = time.perf_counter()
        self.t_first: float | None = None
        self._unsent: list[int] = []
        if replay:
            for i, t in enumerate(replay):
                if self._matcher is not None and not self._matcher.accept(t):
                    raise EngineError(f"the continued completion's token {i} does not fit the grammar "
                                      f"({self._matcher.error() or 'rejected'}): not a completion of this constraint")
            self.out = list(replay)
            self._unsent = list(replay)

    # ------------------------------------------------------------------ per step

    def step(self, logits: np.ndarray) -> list[int]:
        """Choose the next token (plus any grammar-forced ones) from ``logits``.

        Returns the tokens to decode next, or ``[]`` when the sequence is
        finished. Raises :class:`GrammarRuntimeError` on a backend failure.
        """
        if self.done:
            return []
        if self._unsent:  # a continuation's kept prefix, streamed on the caller's path before new text
            self._emit(self._unsent)
            self._unsent = []
        m = self._matcher
        if m is not None:
            tm = time.perf_counter()
            try:
                m.fill_bitmask(self._bitmask)
            except Exception as exc:  # noqa: BLE001 - a backend failure, in one clean line
                raise grammar_failed(self.constraint, len(self.out), clean_backend_message(exc)) from None
            if (reason := m.error()) is not None:  # e.g. llguidance over its per-step limits
                raise grammar_failed(self.constraint, len(self.out), reason)
            self.timings.mask_ms += (time.perf_counter() - tm) * 1000
        token = sample(logits, self.params, self._rng, self._bitmask if m is not None else None, self._n_vocab)
        if self.t_first is None:
            self.t_first = time.perf_counter()
        if token in self._stop_ids:
            return self._end("stop")
        forced: list[int] = []
        if m is not None:
            if not m.accept(token):
                raise grammar_failed(self.constraint, len(self.out), m.error() or "a token the mask allowed was rejected")
            if m.is_finished():
                self.out.append(token)
                self._emit([token])
                return self._end("stop")
            forced = m.forced_tokens()[: max(0, self.budget - len(self.out) - 1)]
            for f in forced:
                if not m.accept(f):
                    raise grammar_failed(self.constraint, len(self.out), m.error() or "a forced token was rejected")
        tokens = [token, *forced]
        self.out.extend(tokens)
        self.forced_total += len(forced)
        self._emit(tokens)
        if m is not None and forced and m.is_finished():
            return self._end("stop")
        if len(self.out) >= self.budget:
            return self._end("length")
        return tokens

    def cancel(self) -> None:
        """Stop here: the caller went away."""
        self._end("cancelled")

    def _end(self, finish: FinishReason) -> list[int]:
        self.finish = finish
        self.done = True
        return []

    def _emit(self, tids: list[int]) -> None:
        text = self._utf8.decode(b"".join(self._vocab_tokens[t] for t in tids))
        if text:
            self._pieces.append(text)
            if self.on_text:
                self.on_text(text)

    # ------------------------------------------------------------------ result

    def completion(self, *, prompt_tokens: int, cached_prompt_tokens: int, model: str) -> Completion:
        """Flush the UTF-8 tail and package the result (timings measured from construction)."""
        if self._unsent:  # cancelled before the first step: the kept prefix is still the output
            self._emit(self._unsent)
            self._unsent = []
        tail = self._utf8.decode(b"", final=True)
        if tail:
            self._pieces.append(tail)
            if self.on_text:
                self.on_text(tail)
        t_end = time.perf_counter()
        t_first = self.t_first or t_end
        self.timings.ttft_ms = (t_first - self.t_start) * 1000
        self.timings.decode_ms = (t_end - t_first) * 1000
        self.timings.total_ms = (t_end - self.t_start) * 1000
        return Completion(
            text="".join(self._pieces),
            prompt_tokens=prompt_tokens,
            completion_tokens=len(self.out),
            finish_reason=self.finish,
            timings=self.timings,
            cached_prompt_tokens=cached_prompt_tokens,
            forced_tokens=self.forced_total,
            model=model,
            token_ids=self.out,
        )
