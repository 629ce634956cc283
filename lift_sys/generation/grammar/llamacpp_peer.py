"""llama.cpp's own JSON Schema -> GBNF converter, as a peer in the schema bench (never used to serve).

The converter is llama-cpp-python's ``json_schema_to_gbnf`` (a port of
llama.cpp's ``json_schema_to_grammar.py``), the grammar runs in llama.cpp's
grammar sampler (``llama_sampler_init_grammar``): what a llama.cpp server
does with ``response_format``. Grammar-level, like our backends: each token
of an instance is offered to the sampler alone (rejected = logit set to
-inf), then accepted; a full-vocabulary ``apply`` is timed as the mask.

It runs in a child process with a deadline per schema: the converter is
pure Python and the sampler native code, neither interruptible, and one
real-world schema must not stall the bench (MaskBench counted one
llama.cpp timeout at 900 s). A child that overruns is killed and replaced.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Any

MASK_SAMPLES = 16
"""Full-vocabulary masks timed per schema: each costs ~10-20 ms over 151k tokens, so timing every
token of MaskBench (2M) would take hours; the first tokens of the first valid instance are sampled."""


@dataclass
class PeerResult:
    outcome: str  # exact | error | timeout
    message: str = ""
    compile_ms: float = 0.0
    accepted: list[bool] = field(default_factory=list)
    mask_us: list[float] = field(default_factory=list)


class _Sampler:
    def __init__(self, model: Any, gbnf: str) -> None:
        import llama_cpp

        self._ll = llama_cpp
        self._model = model
        self._vocab = model._model.vocab
        self._n_vocab = model.n_vocab()
        self._ptr = llama_cpp.llama_sampler_init_grammar(self._vocab, gbnf.encode(), b"root")
        if not self._ptr:
            raise ValueError("llama.cpp could not parse the generated grammar")
        self._one = (llama_cpp.llama_token_data * 1)()
        self._eog = [t for t in range(self._n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, t)][:1]

    def allows(self, token: int) -> bool:
        ll = self._ll
        self._one[0].id, self._one[0].logit, self._one[0].p = token, 0.0, 0.0
        arr = ll.llama_token_data_array(self._one, 1, -1, False)
        ll.llama_sampler_apply(self._ptr, ctypes.byref(arr))
        return self._one[0].logit != float("-inf")

    def full_mask_us(self) -> float:
        ll = self._ll
        data = (ll.llama_token_data * self._n_vocab)()
        for i in range(self._n_vocab):
            data[i].id = i
        arr = ll.llama_token_data_array(data, self._n_vocab, -1, False)
        t0 = time.perf_counter()
        ll.llama_sampler_apply(self._ptr, ctypes.byref(arr))
        return (time.perf_counter() - t0) * 1e6

    def run(self, text: str, time_masks: bool) -> tuple[bool, list[float]]:
        self._ll.llama_sampler_reset(self._ptr)
        masks: list[float] = []
        for i, token in enumerate(self._model.tokenize(text.encode(), add_bos=False, special=False)):
            if time_masks and i < MASK_SAMPLES:
                masks.append(self.full_mask_us())
            if not self.allows(token):
                return False, masks
            self._ll.llama_sampler_accept(self._ptr, token)
        return bool(self._eog) and self.allows(self._eog[0]), masks

    def close(self) -> None:
        self._ll.llama_sampler_free(self._ptr)


def _serve(conn: Any, model_path: str) -> None:
    """Child loop: (schema, texts) in, PeerResult fields out."""
    import llama_cpp
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    model = llama_cpp.Llama(model_path=model_path, vocab_only=True, verbose=False)
    while True:
        job = conn.recv()
        if job is None:
            return
        schema, texts = job
        t0 = time.perf_counter()
        try:
            sampler = _Sampler(model, json_schema_to_gbnf(json.dumps(schema)))
        except Exception as exc:  # noqa: BLE001 - whatever the converter raises is its verdict
            conn.send(PeerResult("error", f"{type(exc).__name__}: {str(exc)[:200]}").__dict__)
            continue
        result = PeerResult("exact", compile_ms=(time.perf_counter() - t0) * 1000)
        for i, text in enumerate(texts):
            ok, masks = sampler.run(text, time_masks=not result.mask_us)
            result.accepted.append(ok)
            result.mask_us.extend(masks)
            del i
        sampler.close()
        conn.send(result.__dict__)


class LlamaCppPeer:
    """A child process running llama.cpp's converter + grammar sampler, with a deadline per schema."""

    def __init__(self, model_path: str, timeout_s: float) -> None:
        self.model_path = model_path
        self.timeout_s = timeout_s
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None
        self._conn: Any = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child, self.model_path), daemon=True)
        self._proc.start()
        self._conn = parent

    def check(self, schema: Any, texts: list[str]) -> PeerResult:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send((schema, texts))
        # the first job also pays the child's start-up (vocab load, ~1 s)
        if self._conn.poll(self.timeout_s + (5.0 if not getattr(self, "_warm", False) else 0.0)):
            self._warm = True
            try:
                return PeerResult(**self._conn.recv())
            except EOFError:
                self._proc = None
                return PeerResult("error", "the llama.cpp child process died on this schema")
        self.close(kill=True)
        return PeerResult("timeout", f"no verdict within {self.timeout_s:g} s")

    def close(self, kill: bool = False) -> None:
        if self._proc is None:
            return
        if kill:
            self._proc.kill()
        else:
            try:
                self._conn.send(None)
            except OSError:
                pass
        self._proc.join(timeout=5)
        self._proc = None
        self._warm = False
