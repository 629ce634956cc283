"""Compiled-grammar cache and the compile time box.

Compiling is cheap for llguidance (~1 ms) and not for xgrammar (~20 ms,
much more for large schemas), and every request for the same schema and
tokenizer would compile the same thing: cache by (backend, spec hash,
vocabulary fingerprint). A pathological schema must not hang a request
forever, so compilation runs in a worker thread with a deadline -- for
both backends, and including their first mask (where llguidance builds its
lexer), so the time box covers all the work a grammar costs before decoding.

A compile that overran cannot be interrupted (it is native code, and
keeps its thread until it ends). So its key is remembered -- the same
grammar sent again is refused at once -- and while every compile thread is
held by such an overrun, a new compile is refused as "busy" (429, with
Retry-After) instead of queueing behind it and timing out as if its own
grammar were at fault. The server's own grammars (IR, code) are pinned: a
stream of distinct client schemas cannot evict them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from typing import Any

from lift_sys.errors import (
    GrammarCompileError,
    GrammarCompileTimeout,
    InvalidRequest,
    LiftError,
    Overloaded,
    UnsupportedSchemaError,
)
from lift_sys.generation.grammar.lint import name_compile_error
from lift_sys.generation.grammar.relax import MAX_COMPILE_RELAXATIONS, relax_at, relax_schema
from lift_sys.generation.grammar.base import (
    CompiledGrammar,
    GrammarBackend,
    GrammarSpec,
    Vocabulary,
    clean_backend_message,
)

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
                from lift_sys.generation.grammar.llguidance_backend import LLGuidanceBackend

                backend = LLGuidanceBackend()
            else:
                from lift_sys.generation.grammar.xgrammar_backend import XGrammarBackend

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
        self._workers = 2
        self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="grammar-compile")
        self._overran: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._overrunning = 0  # compiles past their time box, still holding a thread
        self._pinned: set[str] = set()
        self._relaxed: OrderedDict[tuple[str, str], tuple[GrammarSpec, tuple]] = OrderedDict()
        self.stats = CacheStats()

    def pin(self, spec: GrammarSpec) -> None:
        """Never evict compilations of ``spec`` (the server's own grammars)."""
        self._pinned.add(spec.key)

    def _timeout(self, backend: str, overran: bool) -> GrammarCompileTimeout:
        again = " (it overran before; not compiled again)" if overran else ""
        return GrammarCompileTimeout(
            f"{backend} did not compile the grammar within {self.compile_timeout_s:g} s{again}; simplify it",
            detail={"timeout_s": self.compile_timeout_s, "backend": backend},
        )

    def _busy(self) -> Overloaded:
        return Overloaded(
            f"grammar compilation is busy ({self._overrunning} compiles over their {self.compile_timeout_s:g} s "
            "time box are still running); retry later",
            retry_after_s=max(1, round(self.compile_timeout_s)),
        )

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no compile is running past its time box (a bench's next schema must not be 'busy')."""
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self._overrunning == 0:
                    return True
            time.sleep(0.05)
        return False

    def _overrun_ended(self, _future: object) -> None:
        with self._lock:
            self._overrunning -= 1

    def get(self, spec: GrammarSpec, backend_name: str | None, vocab: Vocabulary, *,
            relax: bool = False) -> CompiledGrammar:
        """The compiled grammar of ``spec`` (cached); refusals name keyword and pointer.

        ``relax`` (enforced mode, caller schemas only): where the lint or the
        backend's compiler refuses a keyword the grammar cannot express but
        validation can check (:mod:`.relax`), compile the looser schema
        instead; the result's ``relaxed`` says what was left out. Without it
        (the default) such a schema is refused, as before.
        """
        if not relax or spec.kind != "json_schema" or not isinstance(spec.source, dict):
            return self._get(spec, backend_name, vocab)
        backend = get_backend(backend_name)
        memo_key = (backend.name, spec.key)
        with self._lock:
            memo = self._relaxed.get(memo_key)
        if memo is not None:
            compiled = self._get(memo[0], backend.name, vocab)
            return replace(compiled, relaxed=memo[1], spec=memo[0])
        schema: Any = spec.source
        relaxations: list[Any] = []
        refusal: UnsupportedSchemaError | None = None  # the exact schema's, named
        try:
            backend.lint(spec)
        except UnsupportedSchemaError as exc:
            refusal = exc
            from lift_sys.generation.grammar.schema_guard import sanitize_schema

            schema, relaxations = relax_schema(sanitize_schema(spec.source, spec.key), backend.name)
            if not relaxations:
                raise
            # what relaxing cannot help (a reference, a compile-time bound) is refused by name, as before
            backend.lint(GrammarSpec.json_schema(schema))
        for rounds in range(MAX_COMPILE_RELAXATIONS + 1):
            current = GrammarSpec.json_schema(schema) if relaxations else spec
            try:
                compiled = self._get(current, backend.name, vocab)
            except GrammarCompileError as exc:
                if refusal is None or isinstance(exc, (UnsupportedSchemaError, GrammarCompileTimeout)):
                    raise
                # the looser grammar hit a backend limit the exact one never reached: the named refusal stands
                raise refusal from None
            except UnsupportedSchemaError as exc:
                step = relax_at(schema, exc.keyword, exc.pointer, backend.name) \
                    if rounds < MAX_COMPILE_RELAXATIONS else None
                if step is None:
                    raise
                schema, relaxation = step
                relaxations.append(relaxation)
                continue
            if not relaxations:
                return compiled
            with self._lock:
                self._relaxed[memo_key] = (current, tuple(relaxations))
                while len(self._relaxed) > 256:
                    self._relaxed.popitem(last=False)
            return replace(compiled, relaxed=tuple(relaxations), spec=current)
        raise AssertionError("unreachable")

    def _get(self, spec: GrammarSpec, backend_name: str | None, vocab: Vocabulary) -> CompiledGrammar:
        backend = get_backend(backend_name)
        key = (backend.name, spec.key, vocab.fingerprint)
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None:  # this backend linted and compiled this spec already
                self._entries.move_to_end(key)
                self.stats.hits += 1
                return replace(hit, cache_hit=True)
            if key in self._overran:
                raise self._timeout(backend.name, overran=True)
        backend.lint(spec)  # before counting a miss: a refused schema is not a compile
        with self._lock:
            if self._overrunning >= self._workers:
                raise self._busy()
            self.stats.misses += 1
        started = threading.Event()

        def run() -> CompiledGrammar:
            started.set()
            return backend.compile(spec, vocab)

        future = self._pool.submit(run)
        try:
            try:
                compiled = future.result(timeout=self.compile_timeout_s)
            except GrammarCompileError as exc:  # say which keyword and where, when the backend's message names it
                if isinstance(exc, GrammarCompileTimeout) or spec.kind != "json_schema":
                    raise
                raise (name_compile_error(spec.source, backend.name, exc.message) or exc) from None
        except FutureTimeout:
            if future.cancel() or not started.is_set():  # it never ran: the compiler was busy, not this grammar slow
                raise self._busy() from None
            with self._lock:
                self._overrunning += 1
                self._overran[key] = None
                while len(self._overran) > 1024:
                    self._overran.popitem(last=False)
            future.add_done_callback(self._overrun_ended)
            raise self._timeout(backend.name, overran=False) from None
        except LiftError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever a backend raises about a grammar is a 400, in one clean line
            raise GrammarCompileError(f"{backend.name} could not compile the grammar: {clean_backend_message(exc)}") from None
        with self._lock:
            self._entries[key] = compiled
            self._entries.move_to_end(key)
            evictable = [k for k in self._entries if k[1] not in self._pinned]
            for old in evictable[: max(0, len(self._entries) - self.max_entries)]:
                del self._entries[old]
            self.stats.size = len(self._entries)
        return compiled
