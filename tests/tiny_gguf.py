"""Write a tiny random-weights qwen2 GGUF that shares the real model's tokenizer.

With nonsense weights the model "wants" nothing in particular, so whatever
valid JSON comes out is the grammar mask's doing: a fast, model-free test
of the mask plumbing (engine <-> backend <-> vocabulary) on real llama.cpp.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_TOKENIZER_KEYS_STR = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template")
_TOKENIZER_KEYS_U32 = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.padding_token_id")


# GGUF metadata value types -> struct format (8 = string, 9 = array, handled apart).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf_metadata(path: Path, wanted: set[str]) -> dict:
    """The `wanted` metadata keys of a GGUF file, parsed straight from its header.

    Why not ``gguf.GGUFReader``: it builds a numpy view per array item, and
    the real model's vocabulary (151,646 tokens and 151,387 merges) took it
    ~30 s here, most of the tiny-model tests' set-up; this walk takes ~1 s.
    """
    with open(path, "rb") as f:
        head = f.read(24)
        if head[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        n_kv = struct.unpack_from("<Q", head, 16)[0]
        # The metadata is at most a few MB; read generously, then grow if a key runs past the end.
        buf = head + f.read(64 << 20)
    pos = 24

    def take(fmt: str):
        nonlocal pos
        value = struct.unpack_from("<" + fmt, buf, pos)[0]
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = take("Q")
        pos += n
        return buf[pos - n:pos].decode("utf-8", "surrogateescape")

    def value(kind: int):
        nonlocal pos
        if kind == 8:
            return string()
        if kind == 9:
            item, count = take("I"), take("Q")
            if item in _SCALARS:
                fmt = _SCALARS[item]
                size = struct.calcsize(fmt)
                items = list(struct.unpack_from(f"<{count}{fmt}", buf, pos))
                pos += size * count
                return items
            return [value(item) for _ in range(count)]
        return take(_SCALARS[kind])

    out = {}
    for _ in range(n_kv):
        key = string()
        out_value = value(take("I"))
        if key in wanted:
            out[key] = out_value
    return out


def make_tiny_qwen2(dest: Path, tokenizer_gguf: Path, *, seed: int = 0) -> Path:
    import gguf

    meta = read_gguf_metadata(tokenizer_gguf, {"tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                                               "tokenizer.ggml.merges", *_TOKENIZER_KEYS_STR, *_TOKENIZER_KEYS_U32})
    field = meta.get
    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = field("tokenizer.ggml.merges")
    n_vocab = len(tokens)
    n_embd, n_head, n_kv, n_ff, n_layer = 64, 4, 2, 128, 2
    head = n_embd // n_head

    w = gguf.GGUFWriter(str(dest), "qwen2")
    w.add_string("general.name", "tiny-random-qwen2")
    w.add_uint32("qwen2.context_length", 1024)
    w.add_uint32("qwen2.embedding_length", n_embd)
    w.add_uint32("qwen2.block_count", n_layer)
    w.add_uint32("qwen2.feed_forward_length", n_ff)
    w.add_uint32("qwen2.attention.head_count", n_head)
    w.add_uint32("qwen2.attention.head_count_kv", n_kv)
    w.add_float32("qwen2.attention.layer_norm_rms_epsilon", 1e-6)
    w.add_float32("qwen2.rope.freq_base", 1_000_000.0)
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for key in _TOKENIZER_KEYS_STR:
        value = field(key)
        if value is not None:
            w.add_string(key, value)
    for key in _TOKENIZER_KEYS_U32:
        value = field(key)
        if value is not None:
            w.add_uint32(key, int(value))

    rng = np.random.default_rng(seed)

    def rand(*shape):
        return (rng.standard_normal(shape) * 0.5).astype(np.float32)

    w.add_tensor("token_embd.weight", rand(n_vocab, n_embd))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    for i in range(n_layer):
        p = f"blk.{i}."
        w.add_tensor(p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "attn_q.weight", rand(n_embd, n_embd))
        w.add_tensor(p + "attn_q.bias", rand(n_embd))
        w.add_tensor(p + "attn_k.weight", rand(n_kv * head, n_embd))
        w.add_tensor(p + "attn_k.bias", rand(n_kv * head))
        w.add_tensor(p + "attn_v.weight", rand(n_kv * head, n_embd))
        w.add_tensor(p + "attn_v.bias", rand(n_kv * head))
        w.add_tensor(p + "attn_output.weight", rand(n_embd, n_embd))
        w.add_tensor(p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", rand(n_ff, n_embd))
        w.add_tensor(p + "ffn_up.weight", rand(n_ff, n_embd))
        w.add_tensor(p + "ffn_down.weight", rand(n_embd, n_ff))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dest
