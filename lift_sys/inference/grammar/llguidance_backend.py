"""llguidance backend: the default. No torch, ~1 ms compiles, fast-forward tokens.

The tokenizer is built straight from the engine's :class:`Vocabulary`
(token bytes + a tokenize callback), so the local path needs neither
``transformers`` nor ``torch``.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np

from lift_sys.errors import GrammarCompileError
from lift_sys.inference.grammar.base import CompiledGrammar, GrammarSpec, Vocabulary
from lift_sys.inference.grammar.lint import lint_schema

# Compact JSON: no whitespace between tokens. Unbounded whitespace lets a
# small model "think" in spaces until max_tokens; none is the safe default.
COMPACT = {"item_separator": ",", "key_separator": ":", "whitespace_flexible": False}


class _TokenizerShim:
    """The object shape ``llguidance.TokenizerWrapper`` reads."""

    def __init__(self, vocab: Vocabulary) -> None:
        self.tokens = list(vocab.tokens)
        self.eos_token_id = vocab.eos_token_ids[0]
        self.bos_token_id = vocab.bos_token_id
        self.special_token_ids = [i for i, t in enumerate(self.tokens) if t.startswith(b"\xff")]
        self._tokenize = vocab.tokenize

    def __call__(self, text: bytes) -> list[int]:
        return self._tokenize(text)


class LLGuidanceMatcher:
    def __init__(self, matcher: Any) -> None:
        self._m = matcher

    def fill_bitmask(self, bitmask: np.ndarray) -> None:
        self._m.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)

    def accept(self, token_id: int) -> bool:
        return bool(self._m.consume_token(token_id))

    def forced_tokens(self) -> list[int]:
        return list(self._m.compute_ff_tokens())

    def is_finished(self) -> bool:
        return bool(self._m.is_stopped())

    def error(self) -> str | None:
        return self._m.get_error() if self._m.is_error() else None


class LLGuidanceBackend:
    name = "llguidance"
    supports_fast_forward = True

    def __init__(self) -> None:
        import llguidance  # noqa: F401  (fail early with ImportError if missing)

        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _tokenizer(self, vocab: Vocabulary) -> Any:
        import llguidance

        with self._lock:
            tok = self._tokenizers.get(vocab.fingerprint)
            if tok is None:
                tok = llguidance.LLTokenizer(
                    llguidance.TokenizerWrapper(_TokenizerShim(vocab)),
                    n_vocab=vocab.n_vocab,
                    eos_token=list(vocab.eos_token_ids),
                )
                self._tokenizers[vocab.fingerprint] = tok
            return tok

    def lint(self, spec: GrammarSpec) -> None:
        if spec.kind == "json_schema":
            lint_schema(spec.source, self.name)

    def grammar_text(self, spec: GrammarSpec) -> str:
        from llguidance import LLMatcher

        if spec.kind == "json_schema":
            return LLMatcher.grammar_from_json_schema(json.dumps(spec.source), overrides=COMPACT)
        if spec.kind == "regex":
            return LLMatcher.grammar_from_regex(spec.source)
        return LLMatcher.grammar_from_lark(spec.source)

    def compile(self, spec: GrammarSpec, vocab: Vocabulary) -> CompiledGrammar:
        from llguidance import LLMatcher

        self.lint(spec)
        tokenizer = self._tokenizer(vocab)
        t0 = time.perf_counter()
        try:
            grammar = self.grammar_text(spec)
        except ValueError as exc:
            raise GrammarCompileError(f"llguidance: {exc}") from exc
        is_error, messages = LLMatcher.validate_grammar_with_warnings(grammar, tokenizer)
        if is_error:
            raise GrammarCompileError(f"llguidance rejected the grammar: {messages[0]}")
        # Build one matcher now so the lexer/slicer work is paid at compile time,
        # and surface any error the constructor records.
        probe = LLMatcher(tokenizer, grammar, log_level=0)
        if probe.is_error():
            raise GrammarCompileError(f"llguidance rejected the grammar: {probe.get_error()}")
        compile_ms = (time.perf_counter() - t0) * 1000

        def factory() -> LLGuidanceMatcher:
            # A copy of the pristine probe shares its compiled lexer: ~µs,
            # where a fresh LLMatcher re-parses the grammar (~3 ms on the IR
            # schema, paid in every request's time to first token).
            return LLGuidanceMatcher(probe.deep_copy())

        return CompiledGrammar(self.name, spec.key, vocab.fingerprint, compile_ms, factory)
