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
from lift_sys.generation.grammar.base import CompiledGrammar, GrammarSpec, Vocabulary, clean_backend_message, new_bitmask
from lift_sys.generation.grammar.formats import restore_formats
from lift_sys.generation.grammar.lint import lint_spec
from lift_sys.generation.grammar.search_regex import trim_schema_patterns

# Compact JSON: no whitespace between tokens. Unbounded whitespace lets a
# small model "think" in spaces until max_tokens; none is the safe default.
COMPACT = {"item_separator": ",", "key_separator": ":", "whitespace_flexible": False}


def _limits() -> Any:
    """llguidance's resource limits (defaults), with terse errors.

    The limits are what keep an adversarial grammar bounded per step (lexer
    fuel, states, Earley items); ``verbose_errors=False`` keeps the parser's
    state dump out of error messages, which reach HTTP clients.
    """
    from llguidance import LLParserLimits

    return LLParserLimits(verbose_errors=False)


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


# The lexer error that means "this grammar's shared lexer is full", not "this output is wrong".
_LEXER_FULL = "too many expressions"


class _SharedLexer:
    """The pristine matcher every request's matcher is copied from, rebuilt once its lexer is full.

    Why: a ``deep_copy`` shares the compiled lexer, which llguidance grows
    lazily and never shrinks. On a large schema (SchemaStore's
    detekt-1.22.0, ~300 property names) one instance fed without masks
    filled it, and from then on *every* copy failed at its first token with
    "too many expressions constructed" -- a cached grammar broken for good.
    A matcher that hits that error marks the lexer spent; the next request
    gets a copy of a fresh one (~one compile, here a few ms).
    """

    def __init__(self, build: Any) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._probe = build()
        self._spent = False

    @property
    def probe(self) -> Any:
        return self._probe

    def copy(self) -> "LLGuidanceMatcher":
        with self._lock:
            if self._spent:
                self._probe, self._spent = self._build(), False
            return LLGuidanceMatcher(self._probe.deep_copy(), self)

    def spent(self) -> None:
        with self._lock:
            self._spent = True

    def fresh_copy(self) -> "LLGuidanceMatcher":
        self.spent()
        return self.copy()


class LLGuidanceMatcher:
    def __init__(self, matcher: Any, lexer: _SharedLexer | None = None) -> None:
        self._m = matcher
        self._lexer = lexer
        self._masked = False  # a mask was computed for this step: a token then refused is the lexer's failure

    def fill_bitmask(self, bitmask: np.ndarray) -> None:
        self._m.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)
        self._masked = True
        self._check_lexer(False)

    def accept(self, token_id: int) -> bool:
        ok = bool(self._m.consume_token(token_id))
        if not ok:
            self._check_lexer(self._masked)
        self._masked = False
        return ok

    def _check_lexer(self, after_mask: bool) -> None:
        if self._lexer is not None and self._m.is_error() and (
                after_mask or _LEXER_FULL in (self._m.get_error() or "")):
            self._lexer.spent()

    def forced_tokens(self) -> list[int]:
        return list(self._m.compute_ff_tokens())

    def is_finished(self) -> bool:
        return bool(self._m.is_stopped())

    def error(self) -> str | None:
        return clean_backend_message(self._m.get_error()) if self._m.is_error() else None


class LLGuidanceBackend:
    name = "llguidance"

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
        lint_spec(spec, self.name)

    def wire_schema(self, schema: Any) -> Any:
        return trim_schema_patterns(restore_formats(schema))

    def grammar_text(self, spec: GrammarSpec) -> str:
        from llguidance import LLMatcher

        if spec.kind == "json_schema":
            return LLMatcher.grammar_from_json_schema(json.dumps(self.wire_schema(spec.source)), overrides=COMPACT)
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
        except Exception as exc:  # noqa: BLE001 - ValueError/RuntimeError from the Rust side: the grammar's fault
            raise GrammarCompileError(f"llguidance could not compile the grammar: {clean_backend_message(exc)}") from None
        # Build one matcher now and compute its first mask, so the lexer work
        # is paid here -- inside the compile time box -- and an error state
        # (a grammar over llguidance's limits, a reference loop, an empty
        # language) is a compile error, not a failure in the middle of decoding.
        # No separate ``validate_grammar`` first: it parses and compiles the
        # grammar once more, ~40 % of the compile on MaskBench's slowest 1 %,
        # and a matcher built from a bad grammar reports the same error.
        def build() -> Any:
            matcher = LLMatcher(tokenizer, grammar, log_level=0, limits=_limits())
            if not matcher.is_error():
                first = new_bitmask(vocab.n_vocab)
                matcher.unsafe_compute_mask_ptr(first.ctypes.data, first.nbytes)
            return matcher

        try:
            lexer = _SharedLexer(build)
        except Exception as exc:  # noqa: BLE001 - as above: a Rust-side error about this grammar
            raise GrammarCompileError(f"llguidance could not compile the grammar: {clean_backend_message(exc)}") from None
        probe = lexer.probe
        if probe.is_error():
            reason = clean_backend_message(probe.get_error())
            if reason.startswith("no token can come next"):  # already at the start
                reason = "it admits no output at all (a reference loop, or a language with no string in it)"
            raise GrammarCompileError(f"llguidance rejected the grammar: {reason}")
        compile_ms = (time.perf_counter() - t0) * 1000

        # A copy of the pristine probe shares its compiled lexer: ~µs, where a
        # fresh LLMatcher re-parses the grammar (~3 ms on the IR schema, paid
        # in every request's time to first token).
        return CompiledGrammar(self.name, spec.key, vocab.fingerprint, compile_ms, lexer.copy, _fresh=lexer.fresh_copy)
