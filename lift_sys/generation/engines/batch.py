"""Continuous batching over one llama.cpp context: up to ``slots`` sequences per ``llama_decode``.

Why: a decode step reads all the weights once whatever the number of rows,
so on a CPU N sequences per step cost far less than N steps. Raw ceiling on
the 2-core dev box (0.5B Q4_K_M, N one-token sequences after a 100-token
prefill, median step; issue 12): N=1 41 ms, N=2 x1.50 throughput, N=4
x2.20, N=8 x2.50, N=16 x2.74 (flash attention on). ``bench batch`` measures
it again next to the engine.

Shape:

* one context with ``n_seq_max = slots`` and a separate KV stream per slot
  (``kv_unified = False``: measured x1.98 at 8 unified vs x2.50 split,
  since a unified cache makes every sequence attend over every cell);
  each slot gets the full per-request context (``n_ctx`` tokens);
* one decode thread owns the context. Callers (server workers, threads)
  :meth:`BatchScheduler.run` a :class:`SequenceState` and block until it
  finishes; streamed text is handed back through a per-request queue, so a
  slow ``on_text`` never stalls the batch;
* requests join and leave between steps; a prompt's uncached part is fed
  in chunks of at most ``prefill_chunk`` tokens per step beside the
  running sequences (so a long prompt delays them by one chunk per step,
  not by its whole prefill);
* a running sequence feeds its grammar-forced tokens one per step in a
  full batch (a chunk would split the step into extra ubatches) and as one
  chunk when at most ``CHUNK_FORCED_UP_TO`` sequences decode; either way
  gives bit-identical logits (``_step`` has the numbers);
* slots are kept contiguous: rows go in slot order, a new request takes
  the lowest free slot, and a gap left by a finished sequence is closed by
  moving the highest running sequence down (with split streams llama.cpp
  batches only consecutive sequence ids into one ubatch; ``_admit`` has
  the numbers);
* prefix reuse: a new request keeps its slot's KV as far as it shares the
  prompt, or gets a host-memory snapshot of an earlier prompt copied in
  (:mod:`~lift_sys.generation.engines.prompt_cache`, the same as the
  one-slot engine's) when that shares ``MIN_COPY_GAIN`` more tokens, or --
  if another slot (running or idle) shares at least
  ``MIN_COPY_GAIN`` more tokens -- copies that stream
  (``llama_memory_seq_cp``; across split streams llama.cpp copies the whole
  stream buffer at the start of the next decode, a memcpy of a few tens of
  MB against seconds of CPU prefill) and drops the tail it does not share.

The decode thread starts on the first request, from the caller's thread, so
it inherits that thread's CPU priority (``lift-sys serve`` raises its
workers', see ``lift_sys/server/priority.py``).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lift_sys.errors import EngineError
from lift_sys.generation.engines.base import CancelToken, Completion
from lift_sys.generation.engines.prompt_cache import PromptCache, common_prefix, restore_sequence, save_sequence
from lift_sys.generation.engines.sequence import SequenceState

BATCH_INVARIANT_ENV = {"GGML_CPU_TILED_MM": "0"}
"""Process settings a batched engine needs before the process's first matmul (see :func:`make_batch_invariant`)."""


def make_batch_invariant() -> None:
    """Ask ggml for matmul kernels whose rows do not depend on the batch (before any compute).

    ggml's CPU backend switches un-repacked K-quant matmuls to a tiled
    kernel at >= 8 rows, with another summation order, so a sequence's
    logits changed when it shared a ubatch with 7 others (max |difference|
    0.31 at 8, 12 and 16 rows; 0.0 at 1-7 rows) or when a prompt tail was
    prefilled as 8+ rows instead of fewer; a greedy IR then diverged between
    "alone" and "in a batch" in 3 of 6 runs of the identity test. The stock
    kernel gives bit-identical rows for any count (0 of 8 runs failed).
    Cost, measured here: 8 rows 96 vs 94 ms a step, 16 rows 159 vs 146 ms.
    ggml reads the variable once, at the process's first matmul, so the
    engine sets it before loading (``lift-sys serve`` and the bench columns
    build the batched engine first); an explicit value in the environment
    wins. Not set for the one-slot engine: there it only slowed a 444-token
    prefill (2.14 vs 1.92 s) and changed its greedy outputs.
    """
    for key, value in BATCH_INVARIANT_ENV.items():
        os.environ.setdefault(key, value)


MIN_COPY_GAIN = 16
"""Copy another slot's stream only when it shares this many more prompt tokens (a copy moves the whole stream)."""

CHUNK_FORCED_UP_TO = 3
"""Feed grammar-forced tokens as one chunk while at most this many sequences decode (see ``_step``)."""


def relay_until_done(events: "queue.SimpleQueue[tuple[str, Any]]", on_text: Any) -> Any:
    """Wait on a request's events in the caller's thread: text to ``on_text``, then the result or the error.

    Both engine-owned decode threads (this scheduler's and the one-slot
    engine's ``DecodeThread``) hand results back this way, so a caller's
    ``on_text`` never runs on -- or stalls -- the thread that decodes.
    """
    while True:
        kind, payload = events.get()
        if kind == "text":
            on_text(payload)
        elif kind == "error":
            raise payload
        else:
            return payload


@dataclass
class _Request:
    prompt: list[int]
    state: SequenceState
    cancel: CancelToken | None
    events: "queue.SimpleQueue[tuple[str, Any]]" = field(default_factory=queue.SimpleQueue)
    slot: int = -1
    feed: list[int] = field(default_factory=list)  # tokens to put into the slot's KV next
    cached: int = 0
    prefilling: bool = True
    t_admit: float = 0.0
    counted: int = 0  # output tokens already added to the scheduler's generated count


@dataclass
class BatchStats:
    """Live counters for /metrics (read without taking the scheduler's lock)."""

    slots: int
    running: int
    waiting: int
    steps_by_size: dict[int, int]  # sequences in one llama_decode -> number of such steps
    tokens_decoded: int  # rows through llama_decode: prompt and output tokens
    tokens_generated: int  # output tokens produced (sampled or grammar-forced), as they are produced
    prefix_copies: int
    slot_moves: int  # running sequences moved down to close a gap in the slots (see BatchScheduler._compact)
    decode_s: float  # inside llama_decode
    host_s: float  # everything else in the decode thread's steps: masks, sampling, bookkeeping


class BatchScheduler:
    """Owns a multi-sequence llama.cpp context and the thread that decodes it."""

    def __init__(
        self,
        model_path: str,
        *,
        slots: int,
        n_ctx_per_slot: int,
        n_threads: int,
        n_vocab: int,
        prefill_chunk: int = 64,
        flash_attn: bool = True,
        prompt_cache: PromptCache | None = None,
        verbose: bool = False,
    ) -> None:
        import llama_cpp
        from llama_cpp import _internals

        if slots < 2:
            raise ValueError(f"a batch scheduler needs at least 2 slots, not {slots}")
        if slots > llama_cpp.llama_max_parallel_sequences():
            raise ValueError(f"slots must be at most {llama_cpp.llama_max_parallel_sequences()} (llama.cpp's limit)")
        self.slots = slots
        self.prefill_chunk = max(1, prefill_chunk)
        self._n_vocab = n_vocab
        # Room for one token per slot plus a prefill chunk (a lone prompt takes it all).
        self._capacity = max(512, self.prefill_chunk + slots)
        p = llama_cpp.llama_context_default_params()
        p.n_ctx = n_ctx_per_slot * slots
        p.n_batch = self._capacity
        p.n_ubatch = self._capacity
        p.n_seq_max = slots
        p.kv_unified = False
        p.n_threads = n_threads
        p.n_threads_batch = n_threads
        p.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        p.no_perf = True
        # Weights without llama.cpp's CPU repacking (``use_extra_bufts``): with
        # it, a sequence's logits depend on how many rows share its ubatch
        # (max |difference| 0.46 between 1 and 8 rows, and a greedy IR
        # diverged after 508 characters); without it they are bit-identical
        # for 1 or 8 rows (not for a chunk of one sequence vs one token at a
        # time: see ``_step``). Costs ~10 % per step (8x1 rows: 97 vs 108 ms).
        # The file is mmap'd, so this second load shares the weights' pages.
        mp = llama_cpp.llama_model_default_params()
        mp.use_extra_bufts = False
        self._model = _internals.LlamaModel(path_model=model_path, params=mp, verbose=verbose)
        # K cache in q8_0, V cache in f16. Why not f16 K: llama.cpp's CPU
        # flash attention takes a split-KV path when a ubatch holds ONE
        # sequence, n_kv >= 512 and K is f16 (a tiled one for 32+ rows of one
        # sequence), and a per-row path otherwise, so with f16 K a sequence's
        # logits depended on whether it decoded alone (max |difference| 0.23
        # at 444 cached tokens, 0.37 at 900; a greedy IR diverged when its
        # request ran alone for a few steps). A quantized K always takes the
        # per-row path: bit-identical alone, beside 7 others, and fed as a
        # chunk of k tokens vs one per step (0.0 at 100 and 700 cells).
        # Why f16 V, not q8_0: the per-row path accumulates an f16 V directly
        # but dequantizes a q8_0 V row to f32 for every cell and head.
        # Measured (2-core Zen 4, 8 sequences x 1 token, median step):
        # 97.0 vs 102.7 ms at 700 cells, 106.8 vs 126.5 ms at 1,200 -- the
        # context an IR decodes at -- and 75.2 vs 76.2 ms at 100.
        # (q8_0 rows hold blocks of 32: a model whose head size is not a
        # multiple of 32 keeps f16, e.g. the tests' tiny random model.)
        # Since 2026-12-05 a quantized K takes our own row kernel instead of
        # ggml's online loop (scripts/llama_patches/0001-*: dense scores, one
        # vectorized exp, V summed in f32 registers; still per row, so still
        # bit-identical alone, batched and chunked -- tests/test_llama_kernels.py):
        # 8 sequences x 1 token at 700 cells, 80-85 vs 87-92 ms a step on the
        # Zen 4 (AVX-512), 86-90 vs 103-104 ms with an AVX2-only build.
        # And the q5_0/q8_0 matmuls (~60 % of a step) take our exact-integer
        # kernel (scripts/llama_patches/0002-*: one int32 per block, the
        # float work once per 8 columns; the same arithmetic for 1 row or 16,
        # so still batch-invariant): 8 sequences x 1 token at 700 cells
        # 63-70 vs 81-83 ms a step, 16 x 1 104 vs 146, 1 x 1 15.0 vs 19.3.
        # Since 2026-12-05 (sixth session) that kernel prefetches the next
        # weight rows a slice per block (8 x 1: 50.5 vs 62-66 ms), and the
        # q4_K/q6_K ffn_down takes an exact-integer kernel too
        # (scripts/llama_patches/0003-*): 8 x 1 44-47 vs 50.5 ms, 16 x 1 77-78
        # vs 87-89, 1 x 1 15.0-15.4 vs 14.5-14.9. And the attention kernel
        # scores a q8_0 K with exact integers and, in a decode step, runs the
        # heads that share a KV head as one group (K and V rows read and
        # converted once): at 1,200 cells 8 x 1 44 vs 54 ms, 16 x 1 71 vs 90.5.
        head = llama_cpp.llama_model_n_embd(self._model.model) // max(1, llama_cpp.llama_model_n_head(self._model.model))
        if head % 32 == 0:
            p.type_k = llama_cpp.GGML_TYPE_Q8_0
            p.type_v = llama_cpp.GGML_TYPE_F16
        self._ctx = _internals.LlamaContext(model=self._model, params=p, verbose=verbose)
        self.n_ctx_per_slot = llama_cpp.llama_n_ctx_seq(self._ctx.ctx)
        self._mem = llama_cpp.llama_get_memory(self._ctx.ctx)
        self._batch = llama_cpp.llama_batch_init(self._capacity, 0, 1)
        self._kv: list[list[int]] = [[] for _ in range(slots)]  # committed tokens per slot, in order
        self._prompt_cache = prompt_cache if prompt_cache is not None else PromptCache(0)
        self._active: dict[int, _Request] = {}
        self._waiting: deque[_Request] = deque()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._steps: Counter[int] = Counter()
        self._tokens = 0
        self._generated = 0
        self._copies = 0
        self._moves = 0
        self._decode_s = 0.0
        self._host_s = 0.0

    # ------------------------------------------------------------------ callers

    def run(self, prompt: list[int], state: SequenceState, cancel: CancelToken | None) -> Completion:
        """Decode ``state`` from ``prompt`` inside the shared batch; block until it finishes."""
        on_text = state.on_text
        req = _Request(prompt=prompt, state=state, cancel=cancel)
        # Text goes back through the request's queue: the caller's thread runs on_text.
        state.on_text = (lambda text: req.events.put(("text", text))) if on_text else None
        with self._cv:
            if self._closed:
                raise EngineError("the engine is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="lift-batch-decode", daemon=True)
                self._thread.start()
            self._waiting.append(req)
            self._cv.notify()
        return relay_until_done(req.events, on_text)

    def stats(self) -> BatchStats:
        """A snapshot for /metrics; never waits for the decode thread."""
        while True:
            try:
                steps = dict(self._steps)  # the decode thread may add a key meanwhile: copy again
                break
            except RuntimeError:
                continue
        return BatchStats(
            slots=self.slots,
            running=len(self._active),
            waiting=len(self._waiting),
            steps_by_size=steps,
            tokens_decoded=self._tokens,
            tokens_generated=self._generated,
            prefix_copies=self._copies,
            slot_moves=self._moves,
            decode_s=self._decode_s,
            host_s=self._host_s,
        )

    def reset(self) -> None:
        """Forget every slot's cached KV (only between requests)."""
        import llama_cpp

        with self._cv:
            if self._active or self._waiting:
                raise EngineError("cannot reset the KV cache while requests run")
            llama_cpp.llama_memory_clear(self._mem, True)
            self._kv = [[] for _ in range(self.slots)]

    def close(self) -> None:
        """Stop the decode thread (requests still inside get an EngineError)."""
        with self._cv:
            self._closed = True
            self._cv.notify()

    # ------------------------------------------------------------------ decode thread

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._active and not self._waiting and not self._closed:
                    self._cv.wait()
                if self._closed:
                    for req in [*self._active.values(), *self._waiting]:
                        req.events.put(("error", EngineError("the engine was closed")))
                    return
                try:
                    self._admit()
                except BaseException as exc:  # noqa: BLE001 - a bug here must fail requests, not strand them
                    failed = [*self._active.values(), *self._waiting]
                    self._active.clear()
                    self._waiting.clear()
                    for req in failed:
                        req.events.put(("error", EngineError(f"batch admission failed: {exc}")))
                    continue
            t0 = time.perf_counter()
            try:
                self._step()
            except BaseException as exc:  # noqa: BLE001 - never leave a caller waiting forever
                for req in list(self._active.values()):
                    self._release(req, EngineError(f"batch decode failed: {exc}"))
            self._host_s += time.perf_counter() - t0

    def _admit(self) -> None:
        """Move waiting requests into free slots, then keep the running slots contiguous (lock held).

        Slots are llama.cpp sequence ids, one KV stream each, and with split
        streams llama.cpp puts only *consecutive, increasing* sequence ids in
        one ubatch (``split_equal(..., sequential=true)``): every gap or
        out-of-order row starts another ubatch, i.e. another full read of the
        weights. Measured (0.5B, 8 slots, one token per sequence, replayed
        from a recorded engine run): rows in admission order 0,3,1,2,4,5,7,6
        -> 152 ms a step; the same rows by slot -> 104 ms. So a new request
        takes the *lowest* free slot, and a gap left by a finished sequence
        is closed by moving the highest running one down (:meth:`_compact`).
        """
        import llama_cpp

        while self._waiting and len(self._active) < self.slots:
            req = self._waiting.popleft()
            if req.cancel is not None and req.cancel.cancelled:
                req.state.cancel()
                self._finish(req)
                continue
            slot = min(s for s in range(self.slots) if s not in self._active)
            reuse = common_prefix(self._kv[slot], req.prompt)
            source = slot
            for s in range(self.slots):
                if s != slot:
                    c = common_prefix(self._kv[s], req.prompt)
                    if c >= reuse + MIN_COPY_GAIN:
                        source, reuse = s, c
            snap, shared = self._prompt_cache.best(req.prompt)
            if snap is not None and shared >= reuse + MIN_COPY_GAIN:
                # a prompt no slot holds any more (sequential requests all land in slot 0)
                restored = restore_sequence(self._ctx.ctx, slot, snap)
                self._kv[slot] = list(snap.tokens) if restored else []
                if restored:
                    self._prompt_cache.used(snap, min(shared, len(req.prompt) - 1))
                reuse = shared if restored else 0
            elif source != slot:
                self._copy_stream(source, slot)
                self._copies += 1
            # Re-evaluate at least one prompt token so fresh logits exist.
            reuse = min(reuse, len(req.prompt) - 1)
            llama_cpp.llama_memory_seq_rm(self._mem, slot, reuse, -1)
            del self._kv[slot][reuse:]
            req.slot, req.cached, req.feed = slot, reuse, req.prompt[reuse:]
            req.t_admit = time.perf_counter()
            self._active[slot] = req
        self._compact()

    def _compact(self) -> None:
        """Move running sequences down until they occupy slots ``0 .. k-1`` (lock held).

        A move copies the whole KV stream (``llama_memory_seq_cp`` across
        split streams, done by llama.cpp at the start of the next decode: a
        memcpy of n_ctx cells) once per gap, against one extra ubatch in
        every later step. The slot moved from keeps its KV as a prefix cache.
        """
        while self._active:
            top = max(self._active)
            if top < len(self._active):  # slots 0 .. k-1 are all running: no gap
                return
            hole = min(s for s in range(top) if s not in self._active)
            req = self._active.pop(top)
            self._copy_stream(top, hole)
            req.slot = hole
            self._active[hole] = req
            self._moves += 1

    def _copy_stream(self, source: int, dest: int) -> None:
        import llama_cpp

        llama_cpp.llama_memory_seq_rm(self._mem, dest, -1, -1)
        llama_cpp.llama_memory_seq_cp(self._mem, source, dest, -1, -1)
        self._kv[dest] = list(self._kv[source])

    def _step(self) -> None:
        """One llama_decode over every active sequence, then one sampling step each."""
        import llama_cpp

        for req in list(self._active.values()):
            if req.cancel is not None and req.cancel.cancelled:
                req.state.cancel()
                self._release(req)
        if not self._active:
            return
        b = self._batch
        n = 0
        rows: list[tuple[_Request, int]] = []
        # Room goes to running sequences first (their next token), then prompt chunks.
        order = sorted(self._active.values(), key=lambda r: (r.prefilling, r.slot))
        decoding = sum(not r.prefilling for r in order)
        # A running sequence's grammar-forced tokens go in one per step when
        # more than CHUNK_FORCED_UP_TO sequences decode, as one chunk
        # otherwise. Numerically it is all the same: with unrepacked weights,
        # untiled matmuls and a quantized K, a token's logits are
        # bit-identical fed in a chunk or one per step, alone or beside
        # others (max |difference| 0.0 at 100 and 700 cells), so greedy
        # output does not depend on the company. It is a matter of cost,
        # measured on the 2-core Zen 4 at 700 cells (median step, ms per
        # token produced): with split KV streams llama.cpp cuts a step whose
        # sequences feed unequal counts into one ubatch per count, and a row
        # costs nearly as much as a step here (1 token 20.6 ms, 5 tokens
        # 59.8, 8x1 87). A chunk of 5 beside one-token sequences, vs one
        # token each: alone 12.0 vs 20.6; beside 1 other 13.8 vs 20.9;
        # beside 2, 14.0 vs 16.4; beside 3, 12.8 vs 14.0 (and the others
        # wait 102 instead of 56 ms); beside 7, 11.8 vs 10.9 -- a loss.
        chunk_forced = decoding <= CHUNK_FORCED_UP_TO
        prefill_left = self.prefill_chunk if decoding else self._capacity
        budget = self._capacity
        takes: dict[int, int] = {}
        for req in order:
            room = min(budget, prefill_left) if req.prefilling else (budget if chunk_forced else min(budget, 1))
            take = min(len(req.feed), room)
            if take <= 0:
                continue
            takes[req.slot] = take
            budget -= take
            if req.prefilling:
                prefill_left -= take
        # Rows go in slot order: only consecutive sequence ids share a ubatch (see _admit).
        fed: list[tuple[_Request, int]] = []
        for slot in sorted(takes):
            req, take = self._active[slot], takes[slot]
            kv = self._kv[req.slot]
            pos = len(kv)
            last = take == len(req.feed)
            for i in range(take):
                b.token[n] = req.feed[i]
                b.pos[n] = pos + i
                b.n_seq_id[n] = 1
                b.seq_id[n][0] = req.slot
                b.logits[n] = last and i == take - 1
                n += 1
            if last:
                rows.append((req, n - 1))
            fed.append((req, take))
        if n == 0:
            return
        b.n_tokens = n
        t0 = time.perf_counter()
        rc = llama_cpp.llama_decode(self._ctx.ctx, b)
        dt = time.perf_counter() - t0
        self._decode_s += dt
        self._host_s -= dt
        if rc != 0:
            reason = "no KV room left for this batch" if rc == 1 else f"llama_decode returned {rc}"
            for req, _take in fed:
                llama_cpp.llama_memory_seq_rm(self._mem, req.slot, -1, -1)
                self._kv[req.slot] = []
                self._release(req, EngineError(f"llama.cpp decode failed: {reason}"))
            return
        self._steps[len(fed)] += 1
        self._tokens += n
        for req, take in fed:
            self._kv[req.slot].extend(req.feed[:take])
            del req.feed[:take]
        for req, row in rows:
            if req.prefilling:
                req.prefilling = False
                req.state.timings.prompt_ms = (time.perf_counter() - req.t_admit) * 1000
                save_sequence(self._prompt_cache, self._ctx.ctx, req.slot, self._kv[req.slot])
            logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self._ctx.ctx, row), shape=(self._n_vocab,))
            try:
                req.feed = req.state.step(logits)
            except BaseException as exc:  # noqa: BLE001 - the request's own failure (grammar error ...)
                self._release(req, exc)
                continue
            self._generated += len(req.state.out) - req.counted
            req.counted = len(req.state.out)
            if not req.feed:
                self._release(req)

    def _release(self, req: _Request, error: BaseException | None = None) -> None:
        with self._cv:
            self._active.pop(req.slot, None)
        if error is not None:
            req.events.put(("error", error))
        else:
            self._finish(req)

    def _finish(self, req: _Request) -> None:
        try:
            completion = req.state.completion(prompt_tokens=len(req.prompt), cached_prompt_tokens=req.cached, model="")
        except BaseException as exc:  # noqa: BLE001
            req.events.put(("error", exc))
            return
        req.events.put(("done", completion))
