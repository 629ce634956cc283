"""Prompt-prefix snapshots: the KV of recent prompts, kept in host memory.

Why: a one-slot context keeps the KV of *one* token history, so two kinds
of request that take turns evict each other's prefix. The pipeline does
exactly that -- IR, then code candidates written alternately from the
request and from the IR (two different prompts), then the next request's
IR -- and every call after the first prefilled its whole prompt again.
Measured (0.5B, 2-core AMD EPYC, HumanEval/41, 45, 48): 4 prompt tokens
reused per call after the first; a ~750-token IR-candidate prompt cost
~15 s of prefill against ~5 s of decode, and the IR prompt of the next
problem ~10 s for its 441-token system prefix.

llama.cpp can copy one sequence's KV out of a context and back
(``llama_state_seq_get_data`` / ``set_data``): ~12 KB a token for the
0.5B model (24 layers x 2 KV heads x 64 x K+V in f16), a memcpy of a few
MB against seconds of CPU prefill. This module is the bookkeeping only --
which token prefixes are kept, which one serves a prompt best, what to
evict -- so it is tested without a model -- and the two copies, :func:`save_sequence`
and :func:`restore_sequence`, which both engines use (the batched one per
slot: a request admitted to a slot gets the best snapshot copied in when
it shares more than any slot does).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any



def common_prefix(a: list[int] | tuple[int, ...], b: list[int] | tuple[int, ...]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(frozen=True)
class Snapshot:
    """The KV of ``tokens`` (positions 0..len-1 of one sequence), as llama.cpp serialized it."""

    tokens: tuple[int, ...]
    data: Any  # a ctypes byte buffer
    nbytes: int


class PromptCache:
    """Least-recently-used snapshots of prompt prefixes, within a byte budget.

    A snapshot whose tokens are a prefix of a newer one is dropped when the
    newer one is stored (the newer one serves every prompt the older one
    would, as far as the older one reaches).
    """

    def __init__(self, max_bytes: int, min_tokens: int = 32) -> None:
        self.max_bytes = max_bytes
        self.min_tokens = min_tokens
        self._entries: "OrderedDict[tuple[int, ...], Snapshot]" = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.restored_tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def best(self, prompt: list[int]) -> tuple[Snapshot | None, int]:
        """The snapshot sharing the longest prefix with ``prompt``, and that length (0: none)."""
        best, length = None, 0
        for snap in self._entries.values():
            n = common_prefix(snap.tokens, prompt)
            if n > length:
                best, length = snap, n
        return best, length

    def covers(self, tokens: list[int]) -> bool:
        """Whether some snapshot already holds all of ``tokens`` (then storing them adds nothing)."""
        return any(len(s.tokens) >= len(tokens) and common_prefix(s.tokens, tokens) == len(tokens)
                   for s in self._entries.values())

    def wants(self, tokens: list[int]) -> bool:
        """Whether storing a snapshot of ``tokens`` is worth its copy."""
        return self.max_bytes > 0 and len(tokens) >= self.min_tokens and not self.covers(tokens)

    def used(self, snap: Snapshot, tokens: int) -> None:
        """Record that ``snap`` served ``tokens`` prompt tokens (it becomes the most recent)."""
        self._entries.move_to_end(snap.tokens)
        self.hits += 1
        self.restored_tokens += tokens

    def put(self, tokens: list[int], data: Any, nbytes: int) -> None:
        """Store a snapshot of ``tokens``; drop the prefixes it covers, then the oldest beyond the budget."""
        if nbytes > self.max_bytes:
            return
        key = tuple(tokens)
        for old in [k for k in self._entries if len(k) <= len(key) and key[: len(k)] == k]:
            self.bytes -= self._entries.pop(old).nbytes
        self._entries[key] = Snapshot(key, data, nbytes)
        self.bytes += nbytes
        while self.bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self.bytes -= dropped.nbytes

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    def stats(self) -> dict[str, int]:
        return {"entries": len(self._entries), "bytes": self.bytes, "max_bytes": self.max_bytes,
                "hits": self.hits, "restored_tokens": self.restored_tokens}


def save_sequence(cache: PromptCache, ctx: Any, seq_id: int, tokens: list[int]) -> None:
    """Keep the KV of sequence ``seq_id`` of llama.cpp context ``ctx`` (exactly ``tokens``) in ``cache``."""
    import ctypes

    import llama_cpp

    if not cache.wants(tokens):
        return
    size = llama_cpp.llama_state_seq_get_size(ctx, seq_id)
    if size <= 0 or size > cache.max_bytes:
        return
    buf = (ctypes.c_ubyte * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buf, size, seq_id)
    if written > 0:
        cache.put(tokens, buf, written)


def restore_sequence(ctx: Any, seq_id: int, snap: Snapshot) -> bool:
    """Replace sequence ``seq_id``'s KV with ``snap``'s; False (the sequence left empty) if llama.cpp refuses it."""
    import llama_cpp

    memory = llama_cpp.llama_get_memory(ctx)
    llama_cpp.llama_memory_seq_rm(memory, seq_id, -1, -1)
    if llama_cpp.llama_state_seq_set_data(ctx, snap.data, snap.nbytes, seq_id) == snap.nbytes:
        return True
    llama_cpp.llama_memory_seq_rm(memory, seq_id, -1, -1)
    return False
