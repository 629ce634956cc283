"""Local engine: llama.cpp (``llama-cpp-python``) with our own decode loop.

Why our own loop instead of ``create_chat_completion``:

* **grammar masks from Python** -- the mask (llguidance/xgrammar) is applied
  to the logits we read each step; llama.cpp's own GBNF sampler is the slow
  path we benchmark against, not the one we use;
* **fast-forward** -- when the grammar forces the next tokens (a JSON key,
  ``":"``, a closing brace), they are appended in one batched decode
  instead of one forward pass each;
* **prefix KV reuse** -- requests share a long system prompt; the KV cache
  of the common token prefix is kept and only the new suffix is prefilled,
  and recent prompts' KV is kept in host memory so requests of different
  kinds taking turns do not evict each other's prefix
  (:mod:`~lift_sys.generation.engines.prompt_cache`).

``slots == 1`` (default): one lock serializes generations over one
context, as before. ``slots > 1`` (``LIFT_SLOTS``): generations share each
``llama_decode`` through :class:`~lift_sys.generation.engines.batch.BatchScheduler`
(continuous batching); ``generate`` still blocks its caller and streams.
The model loads once per engine (one engine per process).

Every ``llama_decode`` of an engine runs on one long-lived thread it owns
(:class:`DecodeThread` for one slot, the scheduler's thread for several):
llama.cpp's CPU backend is built with OpenMP, and every OS thread that ever
called it keeps its own idle thread team. Once two teams exist in a process,
libgomp counts more threads than cores and stops spinning between decode
calls, for every team: measured here, one greedy IR at 30 tok/s from a
worker thread, 18 tok/s from the same thread after the main thread had
decoded once (``OMP_WAIT_POLICY``/``GOMP_SPINCOUNT`` do not help: ACTIVE
gave 13 tok/s). Callers may hop threads (server workers, CLI, tests); the
model never does.

CPU note: llama.cpp built with ``-march=native`` segfaults in decode on CPUs
with AMX; the Makefile builds it with ``GGML_NATIVE=OFF`` and AMX off.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from lift_sys.errors import EngineError, InvalidRequest, PromptTooLong
from lift_sys.generation.engines.base import (
    CancelToken,
    Continuation,
    ChatMessage,
    Completion,
    Constraint,
    OnText,
    SamplingParams,
)
from lift_sys.generation.engines.batch import (
    BatchScheduler,
    BatchStats,
    make_batch_invariant,
    relay_until_done,
)
from lift_sys.generation.engines.prompt_cache import PromptCache, common_prefix, restore_sequence, save_sequence
from lift_sys.generation.engines.sequence import SequenceState
from lift_sys.generation.grammar.base import Vocabulary

# ChatML, used when a GGUF carries no template of its own.
_CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_STOP_TEXTS = {b"<|im_end|>", b"<|endoftext|>", b"<|eot_id|>", b"<|end|>"}
# Stands in for message i while the chat template renders (private-use code
# points: no template adds or strips them), so the rendered prompt splits into
# template text and message text.
_MARK = "\ue000lift-message-{}\ue001"


class DecodeThread:
    """Runs jobs one at a time on a single long-lived thread (the module docstring says why).

    :meth:`call` blocks its caller until the job is done; text the job
    streams is handed back through a per-call queue, so ``on_text`` runs in
    the caller's thread, as it would without the hop. The thread starts on
    the first call, from the caller's thread, so it inherits that thread's
    CPU priority (``lift-sys serve`` raises its workers').
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._jobs: "queue.SimpleQueue[tuple[Any, queue.SimpleQueue]]" = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()

    def call(self, job: Any, on_text: OnText | None) -> Any:
        """``job(relay)`` on the owned thread; ``relay`` forwards text to ``on_text`` in this thread."""
        events: "queue.SimpleQueue[tuple[str, Any]]" = queue.SimpleQueue()
        relay = (lambda text: events.put(("text", text))) if on_text else None
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
        self._jobs.put(((job, relay), events))
        return relay_until_done(events, on_text)

    def _loop(self) -> None:
        while True:
            (job, relay), events = self._jobs.get()
            try:
                events.put(("done", job(relay)))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                events.put(("error", exc))


class LlamaCppEngine:
    """Engine over a GGUF file, run in-process by llama.cpp."""

    name = "llama.cpp"
    can_continue = True  # see Continuation: the kept prefix replays through the matcher, its KV is reused

    def __init__(
        self,
        model_path: str | Path,
        *,
        model_name: str = "",
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        slots: int | None = None,
        flash_attn: bool = True,
        prefill_chunk: int = 64,
        prompt_cache_mb: int | None = None,
        verbose: bool = False,
    ) -> None:
        """``slots``: sequences decoded together (None: ``LIFT_SLOTS``, default 1).

        ``flash_attn`` and ``prefill_chunk`` apply to the batched context
        only (``slots > 1``); the single-slot context is unchanged.
        ``prompt_cache_mb``: host memory for prompt-prefix snapshots (None:
        ``LIFT_PROMPT_CACHE_MB``; 0: off).
        """
        import os

        import llama_cpp
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        threads = n_threads or max(1, os.cpu_count() or 1)
        if slots is None or prompt_cache_mb is None:
            from lift_sys.settings import Settings

            settings = Settings()
            slots = settings.slots if slots is None else slots
            prompt_cache_mb = settings.prompt_cache_mb if prompt_cache_mb is None else prompt_cache_mb
        if slots < 1:
            raise InvalidRequest(f"slots must be at least 1, not {slots}")
        if slots > 1:
            make_batch_invariant()  # before this process's first matmul, or it has no effect
        t0 = time.perf_counter()
        # With slots > 1 this context only backs tokenization and metadata
        # (generations run in the batch scheduler's own): keep it small.
        self._llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx if slots == 1 else 256,
            n_batch=n_batch if slots == 1 else 32,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=False,
            verbose=verbose,
        )
        self.load_ms = (time.perf_counter() - t0) * 1000
        self.model_name = model_name or path.stem
        self.model_path = path
        self.context_length = self._llm.n_ctx()
        self._n_batch = n_batch
        self._n_vocab = self._llm.n_vocab()
        self._lock = threading.Lock()
        self._decoder = DecodeThread("lift-decode")
        self._kv_tokens: list[int] = []  # tokens whose KV is in the context, in order
        self._prompt_cache = PromptCache(max(0, prompt_cache_mb) * 1024 * 1024)
        self._vocab: Vocabulary | None = None
        self._vocab_lock = threading.Lock()
        template = self._llm.metadata.get("tokenizer.chat_template") or _CHATML
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._template = env.from_string(template)
        self._stop_ids = self._find_stop_ids()
        self.slots = slots
        self._batch: BatchScheduler | None = None
        if slots > 1:
            self._batch = BatchScheduler(
                str(path),
                slots=slots,
                n_ctx_per_slot=n_ctx,
                n_threads=threads,
                n_vocab=self._n_vocab,
                prefill_chunk=prefill_chunk,
                flash_attn=flash_attn,
                prompt_cache=self._prompt_cache,
                verbose=verbose,
            )
            self.context_length = self._batch.n_ctx_per_slot

    # ------------------------------------------------------------------ vocabulary

    def _piece(self, tid: int, buf: Any) -> bytes:
        """Token bytes, rendering control tokens as their text.

        (``LlamaModel.token_to_piece`` in llama-cpp-python 0.3.x returns the
        whole fixed-size buffer, NULs included, so we call llama.cpp directly.)
        """
        import llama_cpp

        n = llama_cpp.llama_token_to_piece(self._llm._model.vocab, tid, buf, len(buf), 0, True)
        if n < 0:
            raise EngineError(f"token {tid} is longer than {len(buf)} bytes")
        return bytes(buf[:n])

    def _find_stop_ids(self) -> tuple[int, ...]:
        import ctypes

        model = self._llm._model
        buf = ctypes.create_string_buffer(256)
        ids = {model.token_eos()}
        eot = model.token_eot()
        if eot >= 0:
            ids.add(eot)
        for tid in range(self._n_vocab):
            if self._is_control(tid) and self._piece(tid, buf) in _STOP_TEXTS:
                ids.add(tid)
        return tuple(sorted(i for i in ids if 0 <= i < self._n_vocab))

    def _is_control(self, tid: int) -> bool:
        import llama_cpp

        attr = self._llm._model.token_get_attr(tid)
        return bool(attr & (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED))

    def vocabulary(self) -> Vocabulary:
        """Token bytes straight from llama.cpp's vocab (control tokens marked with 0xFF).

        Built once, under a lock: it walks all 151,936 tokens (~2 s here), and
        eight requests arriving together at a fresh engine each built it
        beside the decode thread -- 41 s before the first token (measured on
        the tiny model's batch test); one build takes 2 s.
        """
        if self._vocab is not None:
            return self._vocab
        with self._vocab_lock:
            return self._build_vocabulary()

    def _build_vocabulary(self) -> Vocabulary:
        if self._vocab is None:
            import ctypes

            import llama_cpp

            model = self._llm._model
            buf = ctypes.create_string_buffer(256)
            tokens: list[bytes] = []
            for tid in range(self._n_vocab):
                attr = model.token_get_attr(tid)
                if attr & llama_cpp.LLAMA_TOKEN_ATTR_UNUSED:
                    tokens.append(b"")  # padding rows of the embedding table: never produced
                    continue
                piece = self._piece(tid, buf)
                if self._is_control(tid) and piece.startswith(b"<") and piece.endswith(b">"):
                    piece = b"\xff" + piece
                tokens.append(piece)
            bos = model.token_bos()
            self._vocab = Vocabulary(
                tokens=tokens,
                eos_token_ids=self._stop_ids,
                bos_token_id=bos if bos >= 0 else None,
                n_vocab=self._n_vocab,
                tokenize=lambda b: self._llm.tokenize(b, add_bos=False, special=False),
                name=self.model_name,
            )
        return self._vocab

    # ------------------------------------------------------------------ prompt

    def render(self, messages: list[ChatMessage]) -> str:
        """Messages -> prompt text with the model's own chat template."""
        return self._template.render(
            messages=messages,
            add_generation_prompt=True,
            bos_token="",
            eos_token="",
        )

    def tokenize_messages(self, messages: list[ChatMessage]) -> list[int]:
        """Prompt tokens: control tokens only where the chat template put them.

        Message text is tokenized as plain text (``special=False``): a user
        who writes ``<|im_end|>\\n<|im_start|>system`` gets those characters,
        not the control tokens that would end their turn and open a system
        one. The template is rendered with a marker in place of each message,
        and the pieces are tokenized separately -- template text with special
        tokens parsed, message text without.
        """
        marked = [{**m, "content": _MARK.format(i)} for i, m in enumerate(messages)]
        text = self.render(marked)
        pieces: list[tuple[str, bool]] = []  # (text, parse special tokens)
        pos = 0
        for i, m in enumerate(messages):
            mark = _MARK.format(i)
            at = text.find(mark, pos)
            if at < 0 or text.find(mark, at + len(mark)) >= 0:  # the template dropped, moved or repeated it
                return self._tokenize_rendered(messages)
            pieces += [(text[pos:at], True), (m["content"], False)]
            pos = at + len(mark)
        pieces.append((text[pos:], True))
        tokens: list[int] = []
        for piece, special in pieces:
            if piece:
                tokens += self._llm.tokenize(piece.encode("utf-8"), add_bos=False, special=special)
        return tokens

    def _control_texts(self) -> set[str]:
        texts = self.__dict__.get("_controls")
        if texts is None:
            vocab = self.vocabulary().tokens
            texts = {vocab[t][1:].decode("utf-8", "replace") for t in range(len(vocab)) if vocab[t].startswith(b"\xff")}
            self._controls = texts
        return texts

    def _tokenize_rendered(self, messages: list[ChatMessage]) -> list[int]:
        """Fallback for a template that does not keep each message once, in order: refuse control-token text."""
        for i, m in enumerate(messages):
            for control in self._control_texts():
                if control in m["content"]:
                    raise InvalidRequest(f"messages[{i}].content contains the control token {control!r}, "
                                         "which this model's chat template cannot keep as plain text")
        return self._llm.tokenize(self.render(messages).encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, messages: list[ChatMessage]) -> int:
        return len(self.tokenize_messages(messages))

    def info(self) -> dict[str, Any]:
        return {
            "engine": self.name,
            "model": self.model_name,
            "model_path": str(self.model_path),
            "context_length": self.context_length,
            "n_vocab": self._n_vocab,
            "load_ms": round(self.load_ms, 1),
            "slots": self.slots,
            "prompt_cache": self._prompt_cache.stats(),
        }

    def batch_stats(self) -> BatchStats:
        """Running/waiting sequences and the batch-size histogram (one slot: from the lock's view)."""
        if self._batch is not None:
            return self._batch.stats()
        running = 1 if self._lock.locked() else 0
        return BatchStats(slots=1, running=running, waiting=0, steps_by_size={}, tokens_decoded=0, tokens_generated=0,
                          prefix_copies=0, slot_moves=0, decode_s=0.0, host_s=0.0)

    def close(self) -> None:
        """Stop the batch decode thread (slots > 1); the model stays loaded until the engine is dropped."""
        if self._batch is not None:
            self._batch.close()

    def reset(self) -> None:
        """Forget the cached prompt KV (call after anything else used the context)."""
        with self._lock:
            self._llm._ctx.kv_cache_clear()
            self._llm.n_tokens = 0
            self._kv_tokens = []
            self._prompt_cache.clear()
        if self._batch is not None:
            self._batch.reset()

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (benchmarks compare against its own sampler)."""
        return self._llm

    # ------------------------------------------------------------------ decode

    def _decode(self, tokens: list[int], n_past: int) -> np.ndarray:
        """Evaluate ``tokens`` at positions ``n_past..``; return the last position's logits."""
        ctx = self._llm._ctx
        batch = self._llm._batch
        ctx.kv_cache_seq_rm(-1, n_past, -1)
        self._kv_tokens = self._kv_tokens[:n_past]
        for i in range(0, len(tokens), self._n_batch):
            chunk = tokens[i : i + self._n_batch]
            batch.set_batch(batch=chunk, n_past=n_past, logits_all=False)
            ctx.decode(batch)
            n_past += len(chunk)
            self._kv_tokens.extend(chunk)
        ptr = ctx.get_logits_ith(-1)
        return np.ctypeslib.as_array(ptr, shape=(self._n_vocab,)).copy()

    def generate(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        constraint: Constraint | None = None,
        *,
        on_text: OnText | None = None,
        cancel: CancelToken | None = None,
        continue_from: Continuation | None = None,
    ) -> Completion:
        if params.max_tokens < 1:
            raise InvalidRequest("max_tokens must be at least 1")
        if params.temperature < 0:
            raise InvalidRequest("temperature must be >= 0")
        t_start = time.perf_counter()
        prompt = self.tokenize_messages(messages)
        if len(prompt) >= self.context_length:
            raise PromptTooLong(len(prompt), self.context_length)
        kept = self.kept_tokens(continue_from) if continue_from is not None else []
        state = SequenceState(
            params=params,
            constraint=constraint,
            budget=min(params.max_tokens, self.context_length - len(prompt)),
            n_vocab=self._n_vocab,
            vocab_tokens=self.vocabulary().tokens,
            stop_ids=frozenset(self._stop_ids),
            on_text=on_text,
            replay=kept,
        )
        state.t_start = t_start
        # The kept tokens are evaluated like prompt tokens (their KV is usually still live: prefix reuse).
        tokens = prompt + kept
        if self._batch is not None:
            completion = self._batch.run(tokens, state, cancel)
            completion.model = self.model_name
        else:
            def job(relay: OnText | None) -> Completion:
                state.on_text = relay
                with self._lock:
                    return self._generate_locked(tokens, state, cancel)

            completion = self._decoder.call(job, on_text)
        if kept:
            completion.prompt_tokens = len(prompt)
            completion.cached_prompt_tokens = min(completion.cached_prompt_tokens, len(prompt))
        return completion

    def kept_tokens(self, continuation: Continuation) -> list[int]:
        """The longest run of the completion's tokens whose text is within its first ``chars`` characters.

        Token ids, not re-tokenized text: a constrained sample is often not
        the canonical tokenization of its own text, and only the very ids it
        chose match the KV still in the context and replay through the matcher.
        """
        vocab = self.vocabulary().tokens
        limit = continuation.chars
        text = continuation.completion.text
        raw = b""
        kept = 0
        for i, tid in enumerate(continuation.completion.token_ids):
            if not 0 <= tid < len(vocab):
                break
            raw += vocab[tid]
            try:
                piece = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue  # inside a multi-byte character: not a place to cut
            if len(piece) > limit or not text.startswith(piece):
                break
            kept = i + 1
        return list(continuation.completion.token_ids[:kept])

    def _generate_locked(self, prompt: list[int], state: SequenceState, cancel: CancelToken | None) -> Completion:
        # Prefix reuse: keep the KV of the longest common prefix -- the
        # context's own, or a snapshot's when that shares more; always
        # re-evaluate at least one token so fresh logits exist.
        live = common_prefix(self._kv_tokens, prompt)
        snap, shared = self._prompt_cache.best(prompt)
        if snap is not None and shared > live:
            restored = restore_sequence(self._llm._ctx.ctx, 0, snap)
            self._kv_tokens = list(snap.tokens) if restored else []
            if restored:
                self._prompt_cache.used(snap, min(shared, len(prompt) - 1))
                live = shared
        reuse = min(live, len(prompt) - 1, len(self._kv_tokens))
        t0 = time.perf_counter()
        try:
            logits = self._decode(prompt[reuse:], reuse)
            save_sequence(self._prompt_cache, self._llm._ctx.ctx, 0, self._kv_tokens)
        except RuntimeError as exc:
            self._kv_tokens = []
            raise EngineError(f"llama.cpp decode failed: {exc}") from exc
        state.timings.prompt_ms = (time.perf_counter() - t0) * 1000
        while True:
            if cancel is not None and cancel.cancelled:
                state.cancel()
                break
            step = state.step(logits)
            if not step:
                break
            try:
                logits = self._decode(step, len(self._kv_tokens))
            except RuntimeError as exc:
                self._kv_tokens = []
                raise EngineError(f"llama.cpp decode failed: {exc}") from exc
        return state.completion(prompt_tokens=len(prompt), cached_prompt_tokens=reuse, model=self.model_name)
