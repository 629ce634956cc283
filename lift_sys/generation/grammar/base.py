"""The grammar-backend interface: compile once, match per request, mask per step.

Shaped after xgrammar's names (compiler / matcher / tokenizer info) and
outlines' one-adapter-per-backend layout. A backend never sees an engine:
it gets a :class:`Vocabulary` (token bytes, EOS ids, vocab size) and returns
matchers that fill an int32 bitmask -- the one mask format both llguidance
and xgrammar write, so the engine applies masks the same way whichever
backend made them.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Protocol, Sequence

import numpy as np

GrammarKind = Literal["json_schema", "regex", "lark"]


@dataclass(frozen=True)
class Vocabulary:
    """What a grammar backend needs to know about a tokenizer.

    ``tokens[i]`` is the byte string token ``i`` decodes to; control tokens
    (``<|im_end|>`` ...) are prefixed with ``0xFF`` so no backend mistakes
    them for text. ``n_vocab`` is the model's logit width, which can exceed
    ``len(tokens)`` (padded embedding tables).
    """

    tokens: Sequence[bytes]
    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    n_vocab: int
    tokenize: Callable[[bytes], list[int]]
    name: str = ""

    @property
    def fingerprint(self) -> str:
        cached = self.__dict__.get("_fp")
        if cached is None:
            h = hashlib.sha256()
            for t in self.tokens:
                h.update(len(t).to_bytes(4, "little"))
                h.update(t)
            h.update(repr((self.eos_token_ids, self.n_vocab)).encode())
            cached = h.hexdigest()[:16]
            object.__setattr__(self, "_fp", cached)
        return cached

    def is_special(self, token_id: int) -> bool:
        return token_id < len(self.tokens) and self.tokens[token_id].startswith(b"\xff")


@dataclass(frozen=True)
class GrammarSpec:
    """A constraint as the caller states it (before any backend sees it)."""

    kind: GrammarKind
    source: Any  # dict for json_schema, str for regex/lark

    @classmethod
    def json_schema(cls, schema: dict[str, Any]) -> "GrammarSpec":
        return cls("json_schema", schema)

    @property
    def key(self) -> str:
        """Stable hash of the constraint, for the compile cache.

        Computed once per spec (the JSON as written + sha256 of a large schema is
        ~0.1 ms, paid on every request otherwise); a spec is immutable.
        """
        cached = self.__dict__.get("_key")
        if cached is None:
            # Key order is part of the constraint: a grammar writes properties in the order given (and
            # llguidance merges in the order keywords are written), so two orders are two grammars -- with
            # sorted keys, a second caller's {b, a} was served the grammar compiled for {a, b}. The whole
            # digest: a cached grammar and validator are shared across callers, so a key must not collide.
            text = json.dumps(self.source) if self.kind == "json_schema" else str(self.source)
            cached = hashlib.sha256(f"{self.kind}\0{text}".encode()).hexdigest()
            object.__setattr__(self, "_key", cached)
        return cached


class Matcher(Protocol):
    """Per-request grammar state."""

    def fill_bitmask(self, bitmask: np.ndarray) -> None:
        """Write the allowed-next-token bitmask (int32, bit i = token i allowed)."""

    def accept(self, token_id: int) -> bool:
        """Advance by one sampled token; False if the grammar rejects it."""

    def forced_tokens(self) -> list[int]:
        """Tokens the grammar forces next (fast-forward); [] when there is a choice."""

    def is_finished(self) -> bool:
        """The grammar is complete and admits nothing but end-of-sequence."""

    def error(self) -> str | None:
        """Why the matcher is in an error state, if it is."""


@dataclass
class CompiledGrammar:
    """A grammar compiled for one vocabulary; cheap to create matchers from."""

    backend: str
    spec_key: str
    vocab_fingerprint: str
    compile_ms: float
    _factory: Callable[[], Matcher] = field(repr=False)
    cache_hit: bool = False
    # Enforced mode (:mod:`.relax`): what this grammar leaves out of the caller's schema, one Relaxation per
    # keyword and pointer; () when it is the schema's exact constraint.
    relaxed: tuple[Any, ...] = ()
    spec: "GrammarSpec | None" = None  # the spec compiled (the looser one when relaxed)

    @property
    def validation_needed(self) -> bool:
        """The grammar is looser than the schema: outputs must be validated (and resampled) to enforce it."""
        return any(not r.exact for r in self.relaxed)

    # A matcher sharing no lazily built state with earlier ones (llguidance: a rebuilt lexer); default: matcher().
    _fresh: Callable[[], Matcher] | None = field(default=None, repr=False)

    def matcher(self) -> Matcher:
        return self._factory()

    def fresh_matcher(self) -> Matcher:
        """A matcher as the first request after compiling would get it (benches: a verdict no earlier run shaped)."""
        return (self._fresh or self._factory)()


class GrammarBackend(Protocol):
    """One constraint engine (llguidance, xgrammar)."""

    name: str

    def lint(self, spec: GrammarSpec) -> None:
        """Raise UnsupportedSchemaError for any keyword this backend would not enforce."""

    def compile(self, spec: GrammarSpec, vocab: Vocabulary) -> CompiledGrammar:
        """Compile ``spec`` for ``vocab`` (uncached; the registry caches)."""

    def wire_schema(self, schema: Any) -> Any:
        """``schema`` written the way this backend compiles it right (what a remote server using it is sent)."""


def new_bitmask(n_vocab: int) -> np.ndarray:
    """An all-allowed int32 bitmask wide enough for ``n_vocab`` tokens."""
    return np.full((n_vocab + 31) // 32, -1, dtype=np.int32)


def bitmask_to_bool(bitmask: np.ndarray, n_vocab: int) -> np.ndarray:
    """Expand an int32 bitmask into a bool array of length ``n_vocab``."""
    return np.unpackbits(bitmask.view(np.uint8), bitorder="little")[:n_vocab].astype(bool)


def bitmask_allows(bitmask: np.ndarray, token_id: int) -> bool:
    return bool((int(bitmask[token_id >> 5]) >> (token_id & 31)) & 1)


_XGR_PREFIX = re.compile(r"\[\d{2}:\d{2}:\d{2}\] \S+?:\d+: ")
_CHECK_FAILED = re.compile(r"Check failed: \(.*?\) is false: ")
_DEAD_END = "no token can come next (the grammar is at a dead end)"


def clean_backend_message(message: object, limit: int = 300) -> str:
    """A backend's error as one line a caller can act on -- never its internals.

    llguidance appends its parser state (``<state>`` ... rows, items, lexer
    cost) and xgrammar prefixes a timestamp and its C++ source location;
    neither belongs in an HTTP error body. Keeps the reason (and llguidance's
    "while processing ...#/pointer" context line), capped at ``limit``.
    """
    text = _CHECK_FAILED.sub("", _XGR_PREFIX.sub("", str(message)))
    lines: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("<"):  # <state>, <non-verbose/>: the dump begins
            break
        if line:
            lines.append(line)
    out = "; ".join(lines) or "no reason given"
    if out.startswith("NoExtensionBias"):  # llguidance's name for it
        out = _DEAD_END
    return out if len(out) <= limit else out[: limit - 1] + "…"
