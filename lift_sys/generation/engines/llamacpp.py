"""Local engine: llama.cpp (``llama-cpp-python``) with our own decode loop.

Why our own loop instead of ``create_chat_completion``:

* **grammar masks from Python** -- the mask (llguidance/xgrammar) is applied
  to the logits we read each step; llama.cpp's own GBNF sampler is the slow
  path we benchmark against, not the one we use;
* **fast-forward** -- when the grammar forces the next tokens (a JSON key,
  ``":"``, a closing brace), they are appended in one batched decode
  instead of one forward pass each;
* **prefix KV reuse** -- requests share a long system prompt; the KV cache
  of the common token prefix is kept and only the new suffix is prefilled.

llama.cpp contexts are not thread-safe: one lock serializes generations.
The model loads once per engine (one engine per process).

CPU note: llama.cpp built with ``-march=native`` segfaults in decode on CPUs
with AMX; the Makefile builds it with ``GGML_NATIVE=OFF`` and AMX off.
"""

from __future__ import annotations

import codecs
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from lift_sys.errors import EngineError, GrammarRuntimeError, InvalidRequest, PromptTooLong
from lift_sys.generation.engines.base import (
    CancelToken,
    ChatMessage,
    Completion,
    Constraint,
    OnText,
    SamplingParams,
    Timings,
)
from lift_sys.generation.grammar.base import (
    Vocabulary,
    bitmask_allows,
    bitmask_to_bool,
    clean_backend_message,
    new_bitmask,
)

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


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class LlamaCppEngine:
    """Engine over a GGUF file, run in-process by llama.cpp."""

    name = "llama.cpp"

    def __init__(
        self,
        model_path: str | Path,
        *,
        model_name: str = "",
        n_ctx: int = 4096,
        n_threads: int | None = None,
        n_batch: int = 512,
        verbose: bool = False,
    ) -> None:
        import os

        import llama_cpp
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        path = Path(model_path)
        if not path.is_file():
            raise EngineError(f"model file not found: {path}")
        threads = n_threads or max(1, os.cpu_count() or 1)
        t0 = time.perf_counter()
        self._llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_batch,
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
        self._kv_tokens: list[int] = []  # tokens whose KV is in the context, in order
        self._vocab: Vocabulary | None = None
        template = self._llm.metadata.get("tokenizer.chat_template") or _CHATML
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        self._template = env.from_string(template)
        self._stop_ids = self._find_stop_ids()

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
        """Token bytes straight from llama.cpp's vocab (control tokens marked with 0xFF)."""
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
        }

    def reset(self) -> None:
        """Forget the cached prompt KV (call after anything else used the context)."""
        with self._lock:
            self._llm._ctx.kv_cache_clear()
            self._llm.n_tokens = 0
            self._kv_tokens = []

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
    ) -> Completion:
        if params.max_tokens < 1:
            raise InvalidRequest("max_tokens must be at least 1")
        if params.temperature < 0:
            raise InvalidRequest("temperature must be >= 0")
        with self._lock:
            return self._generate_locked(messages, params, constraint, on_text, cancel)

    def _generate_locked(
        self,
        messages: list[ChatMessage],
        params: SamplingParams,
        constraint: Constraint | None,
        on_text: OnText | None,
        cancel: CancelToken | None,
    ) -> Completion:
        t_start = time.perf_counter()
        timings = Timings()
        prompt = self.tokenize_messages(messages)
        if len(prompt) >= self.context_length:
            raise PromptTooLong(len(prompt), self.context_length)
        budget = min(params.max_tokens, self.context_length - len(prompt))

        matcher = None
        if constraint is not None:
            if constraint.compiled is None:
                raise EngineError("local engine needs a compiled grammar")
            matcher = constraint.compiled.matcher()
        bitmask = new_bitmask(self._n_vocab)
        rng = np.random.default_rng(params.seed)
        stop_ids = set(self._stop_ids)

        # Prefix reuse: keep the KV of the longest common prefix; always
        # re-evaluate at least one token so fresh logits exist.
        reuse = min(_common_prefix(self._kv_tokens, prompt), len(prompt) - 1)
        t0 = time.perf_counter()
        try:
            logits = self._decode(prompt[reuse:], reuse)
        except RuntimeError as exc:
            self._kv_tokens = []
            raise EngineError(f"llama.cpp decode failed: {exc}") from exc
        timings.prompt_ms = (time.perf_counter() - t0) * 1000

        out: list[int] = []
        forced_total = 0
        finish = "length"
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pieces: list[str] = []
        vocab_tokens = self.vocabulary().tokens
        t_first: float | None = None

        def emit(tids: list[int]) -> None:
            text = utf8.decode(b"".join(vocab_tokens[t] for t in tids))
            if text:
                pieces.append(text)
                if on_text:
                    on_text(text)

        while len(out) < budget:
            if cancel is not None and cancel.cancelled:
                finish = "cancelled"
                break
            # ---- choose the next token
            if matcher is not None:
                tm = time.perf_counter()
                try:
                    matcher.fill_bitmask(bitmask)
                except Exception as exc:  # noqa: BLE001 - a backend failure, in one clean line
                    raise self._grammar_failed(constraint, len(out), clean_backend_message(exc)) from None
                if (reason := matcher.error()) is not None:  # e.g. llguidance over its per-step limits
                    raise self._grammar_failed(constraint, len(out), reason)
                timings.mask_ms += (time.perf_counter() - tm) * 1000
            token = self._sample(logits, params, rng, bitmask if matcher is not None else None)
            if t_first is None:
                t_first = time.perf_counter()
            if token in stop_ids:
                finish = "stop"
                break
            forced: list[int] = []
            if matcher is not None:
                if not matcher.accept(token):
                    raise self._grammar_failed(constraint, len(out), matcher.error() or "a token the mask allowed was rejected")
                if matcher.is_finished():
                    out.append(token)
                    emit([token])
                    finish = "stop"
                    break
                forced = matcher.forced_tokens()[: max(0, budget - len(out) - 1)]
                for f in forced:
                    if not matcher.accept(f):
                        raise self._grammar_failed(constraint, len(out), matcher.error() or "a forced token was rejected")
            step = [token, *forced]
            out.extend(step)
            forced_total += len(forced)
            emit(step)
            if matcher is not None and forced and matcher.is_finished():
                finish = "stop"
                break
            if len(out) >= budget:
                break
            try:
                logits = self._decode(step, len(self._kv_tokens))
            except RuntimeError as exc:
                self._kv_tokens = []
                raise EngineError(f"llama.cpp decode failed: {exc}") from exc

        tail = utf8.decode(b"", final=True)
        if tail:
            pieces.append(tail)
            if on_text:
                on_text(tail)
        t_end = time.perf_counter()
        timings.ttft_ms = ((t_first or t_end) - t_start) * 1000
        timings.decode_ms = (t_end - (t_first or t_end)) * 1000
        timings.total_ms = (t_end - t_start) * 1000
        if finish == "length" and params.max_tokens > budget:
            finish = "length"  # capped by the context window; still a length stop
        return Completion(
            text="".join(pieces),
            prompt_tokens=len(prompt),
            completion_tokens=len(out),
            finish_reason=finish,  # type: ignore[arg-type]
            timings=timings,
            cached_prompt_tokens=reuse,
            forced_tokens=forced_total,
            model=self.model_name,
            token_ids=out,
        )

    @staticmethod
    def _grammar_failed(constraint: Constraint | None, at: int, reason: str) -> GrammarRuntimeError:
        backend = constraint.backend if constraint is not None else "?"
        return GrammarRuntimeError(
            f"the {backend} grammar failed at output token {at}: {reason}",
            detail={"backend": backend, "completion_tokens": at},
        )

    def _sample(
        self, logits: np.ndarray, params: SamplingParams, rng: np.random.Generator, bitmask: np.ndarray | None
    ) -> int:
        if params.temperature == 0:
            token = int(np.argmax(logits))
            if bitmask is None or bitmask_allows(bitmask, token):
                return token  # the common case: the model's choice is already legal
        if bitmask is not None:
            allowed = bitmask_to_bool(bitmask, self._n_vocab)
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
        return int(rng.choice(self._n_vocab, p=probs))
