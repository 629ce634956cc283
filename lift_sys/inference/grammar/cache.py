"""Compiled-grammar cache and the compile time box.

Compiling is cheap for llguidance (~1 ms) and not for xgrammar (~20 ms,
much more for large schemas), and every request for the same schema and
tokenizer would compile the same thing: cache by (backend, spec hash,
vocabulary fingerprint). A pathological schema must not hang a request
forever, so compilation runs in a worker thread with a deadline.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace

from lift_sys.errors import GrammarCompileTimeout, InvalidRequest
from lift_sys.inference.grammar.base import CompiledGrammar, GrammarBackend, GrammarSpec, Vocabulary

BACKEND_NAMES = ("llguidance", "xgrammar")
DEFAULT_BACKEND = "llguidance"

_backends: dict[str, GrammarBackend] = {}
_backends_lock = threading.Lock()


def get_backend(name: str | None = None) -> GrammarBackend:
    """The (process-wide) backend instance called ``name``; imported on first use."""
    key = name or DEFAULT_BACKEND
    if key not in BACKEND_NAMES:
        raise InvalidRequest(f"unknown grammar backend {key!r}; choose one of {', '.join(BACKEND_NAMES)}")
    with _backends_lock:
        backend = _backends.get(key)
        if backend is None:
            if key == "llguidance":
                from lift_sys.inference.grammar.llguidance_backend import LLGuidanceBackend

                backend = LLGuidanceBackend()
            else:
                from lift_sys.inference.grammar.xgrammar_backend import XGrammarBackend

                backend = XGrammarBackend()
            _backends[key] = backend
        return backend


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    size: int = 0


class GrammarCache:
    """LRU of compiled grammars keyed by (backend, spec, vocabulary)."""

    def __init__(self, max_entries: int = 128, compile_timeout_s: float = 10.0) -> None:
        self.max_entries = max_entries
        self.compile_timeout_s = compile_timeout_s
        self._entries: OrderedDict[tuple[str, str, str], CompiledGrammar] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="grammar-compile")
        self.stats = CacheStats()

    def get(self, spec: GrammarSpec, backend_name: str | None, vocab: Vocabulary) -> CompiledGrammar:
        backend = get_backend(backend_name)
        key = (backend.name, spec.key, vocab.fingerprint)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:  # this backend linted and compiled this spec already
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return replace(hit, cache_hit=True)
        backend.lint(spec)  # before counting a miss: a refused schema is not a compile
        with self._lock:
            self.stats.misses += 1
        future = self._pool.submit(backend.compile, spec, vocab)
        try:
            compiled = future.result(timeout=self.compile_timeout_s)
        except FutureTimeout:
            raise GrammarCompileTimeout(
                f"{backend.name} did not compile the grammar within {self.compile_timeout_s:g} s",
                detail={"timeout_s": self.compile_timeout_s, "backend": backend.name},
            ) from None
        with self._lock:
            self._entries[key] = compiled
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
            self.stats.size = len(self._entries)
        return compiled
