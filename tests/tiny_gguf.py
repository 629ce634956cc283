"""Write a tiny random-weights qwen2 GGUF that shares the real model's tokenizer.

With nonsense weights the model "wants" nothing in particular, so whatever
valid JSON comes out is the grammar mask's doing: a fast, model-free test
of the mask plumbing (engine <-> backend <-> vocabulary) on real llama.cpp.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_TOKENIZER_KEYS_STR = ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.chat_template")
_TOKENIZER_KEYS_U32 = ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.padding_token_id")


def make_tiny_qwen2(dest: Path, tokenizer_gguf: Path, *, seed: int = 0) -> Path:
    import gguf

    reader = gguf.GGUFReader(str(tokenizer_gguf))

    def field(name):
        f = reader.get_field(name)
        return None if f is None else f.contents()

    tokens = field("tokenizer.ggml.tokens")
    types = field("tokenizer.ggml.token_type")
    merges = field("tokenizer.ggml.merges")
    n_vocab = len(tokens)
    n_embd, n_head, n_kv, n_ff, n_layer = 64, 4, 2, 128, 2
    head = n_embd // n_head

    w = gguf.GGUFWriter(str(dest), "qwen2")
    w.add_architecture()
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
