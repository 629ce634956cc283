"""xgrammar backend: the engine SGLang uses by default (extra: ``lift-sys[xgrammar]``).

Imported lazily: xgrammar pulls in torch and transformers at import. The
tokenizer info is built from raw token bytes (``VocabType.RAW``), so no HF
tokenizer is needed even here.

Fast-forward is off for this backend: xgrammar only offers a forced
*string*, and re-tokenizing that string can pick token boundaries the model
would never produce (the reason SGLang retired jump-forward decoding).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np

from lift_sys.errors import GrammarCompileError
from lift_sys.generation.grammar.base import CompiledGrammar, GrammarSpec, Vocabulary, clean_backend_message, new_bitmask
from lift_sys.generation.grammar.lint import lint_schema


class XGrammarMatcher:
    def __init__(self, matcher: Any) -> None:
        self._m = matcher
        self._error: str | None = None

    def fill_bitmask(self, bitmask: np.ndarray) -> None:
        # numpy speaks DLPack; xgrammar fills a 2-D (batch, words) view in place.
        self._m.fill_next_token_bitmask(bitmask.reshape(1, -1), 0)

    def accept(self, token_id: int) -> bool:
        try:
            ok = bool(self._m.accept_token(token_id))
        except Exception as exc:  # noqa: BLE001 - a C++ check; never its source location
            ok = False
            self._error = clean_backend_message(exc)
        if not ok and self._error is None:
            self._error = f"token {token_id} rejected by the grammar"
        return ok

    def forced_tokens(self) -> list[int]:
        return []

    def is_finished(self) -> bool:
        return bool(self._m.is_terminated())

    def error(self) -> str | None:
        return self._error


class XGrammarBackend:
    name = "xgrammar"
    supports_fast_forward = False

    def __init__(self) -> None:
        try:
            import xgrammar  # noqa: F401
        except ImportError as exc:
            raise GrammarCompileError(
                "the xgrammar backend is not installed: pip install 'lift-sys[xgrammar]' "
                f"({exc.__class__.__name__}: {exc})"
            ) from exc
        self._compilers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _compiler(self, vocab: Vocabulary) -> Any:
        import xgrammar as xgr

        with self._lock:
            comp = self._compilers.get(vocab.fingerprint)
            if comp is None:
                # Control tokens become empty strings: xgrammar then never
                # admits them inside JSON text; EOS is passed as the stop token.
                encoded = [b"" if t.startswith(b"\xff") else bytes(t) for t in vocab.tokens]
                info = xgr.TokenizerInfo(
                    encoded,
                    xgr.VocabType.RAW,
                    vocab_size=vocab.n_vocab,
                    stop_token_ids=list(vocab.eos_token_ids),
                    add_prefix_space=False,
                )
                comp = xgr.GrammarCompiler(info, max_threads=2, cache_enabled=False)
                self._compilers[vocab.fingerprint] = comp
            return comp

    def lint(self, spec: GrammarSpec) -> None:
        if spec.kind == "json_schema":
            lint_schema(spec.source, self.name)

    def compile(self, spec: GrammarSpec, vocab: Vocabulary) -> CompiledGrammar:
        import xgrammar as xgr

        self.lint(spec)
        compiler = self._compiler(vocab)
        t0 = time.perf_counter()
        try:
            if spec.kind == "json_schema":
                compiled = compiler.compile_json_schema(
                    json.dumps(spec.source), any_whitespace=False, separators=(",", ":"), strict_mode=True
                )
            elif spec.kind == "regex":
                compiled = compiler.compile_regex(spec.source)
            else:
                raise GrammarCompileError("xgrammar takes EBNF, not Lark; use the llguidance backend for lark")
            # The first mask, inside the compile time box: a grammar whose start
            # admits no token at all (a reference loop, an empty language) is a
            # compile error, not a dead end in the middle of decoding.
            probe = xgr.GrammarMatcher(compiled)
            first = new_bitmask(vocab.n_vocab)
            probe.fill_next_token_bitmask(first.reshape(1, -1), 0)
        except GrammarCompileError:
            raise
        except Exception as exc:  # noqa: BLE001 - RuntimeError/ValueError with the reason (and C++ internals, cleaned)
            raise GrammarCompileError(f"xgrammar could not compile the grammar: {clean_backend_message(exc)}") from None
        if not first.any():
            raise GrammarCompileError("xgrammar could not compile the grammar: it admits no output at all "
                                      "(a reference loop, or a language with no string in it)")
        compile_ms = (time.perf_counter() - t0) * 1000

        def factory() -> XGrammarMatcher:
            return XGrammarMatcher(xgr.GrammarMatcher(compiled))

        return CompiledGrammar(self.name, spec.key, vocab.fingerprint, compile_ms, factory)
