"""Decode-speed benchmark: what does constraining cost?

One process, one model, one prompt (the IR prompt for a sample request),
medians over ``reps`` repetitions of each configuration:

* ``unconstrained``       -- our decode loop, no mask
* ``llguidance``/``xgrammar`` -- our decode loop with that backend's mask
* ``llama.cpp-json-schema`` -- llama.cpp's own GBNF sampler (the
  ``json_schema`` -> grammar path most llama.cpp users take)
* ``llama.cpp-unconstrained`` -- llama.cpp's own sampler, no grammar
  (reference for the sampler's own overhead)

Decode tok/s counts tokens after the first one over the time after the
first one, so prefill is excluded. "sampled tok/s" leaves out the tokens
fast-forward appended without sampling, so it isolates the per-step cost
of masking from the gain of fast-forward. Mask time per token is measured by
replaying the generated tokens through a fresh matcher (grammar cost
alone, without the model's noise). Compile time is measured cold (fresh
compile) and cached (a cache hit).

Results are ratios *within one run*: this machine is shared and noisy, so
absolute tok/s drift between runs while the ratios hold.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from datetime import datetime, timezone
from typing import Any

from rich.console import Console
from rich.table import Table

from lift_sys.generation.engines.base import Constraint, GenerateOptions
from lift_sys.generation.grammar import GrammarCache, GrammarSpec, get_backend, new_bitmask
from lift_sys.service.runtime import local_engine
from lift_sys.ir.models import ir_generation_schema
from lift_sys.ir.prompt import ir_messages

REQUEST = "a function that returns the n-th Fibonacci number, raising ValueError for negative n"


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return 0.0
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def _ours(engine: Any, messages: list, params: GenerateOptions, constraint: Constraint | None) -> dict[str, float]:
    c = engine.generate(messages, params, constraint)
    decode_s = c.timings.decode_ms / 1000
    sampled = c.completion_tokens - c.forced_tokens - 1
    return {
        "tok_s": c.decode_tok_s,
        "sampled_tok_s": sampled / decode_s if decode_s > 0 else 0.0,
        "tokens": c.completion_tokens,
        "forced": c.forced_tokens,
        "ttft_ms": c.timings.ttft_ms,
        "mask_ms": c.timings.mask_ms,
        "token_ids": c.token_ids,
    }


def _llama_native(engine: Any, messages: list, max_tokens: int, schema: dict | None) -> dict[str, float]:
    from llama_cpp import LlamaGrammar

    llm = engine.llama
    engine.reset()
    prompt = engine.tokenize_messages(messages)
    grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False) if schema is not None else None
    t_start = time.perf_counter()
    t_first = None
    n = 0
    for _chunk in llm.create_completion(
        prompt, max_tokens=max_tokens, temperature=0.0, grammar=grammar, stream=True
    ):
        if t_first is None:
            t_first = time.perf_counter()
        n += 1
    t_end = time.perf_counter()
    engine.reset()
    decode_s = t_end - (t_first or t_end)
    tok_s = (n - 1) / decode_s if n > 1 and decode_s > 0 else 0.0
    return {
        "tok_s": tok_s,
        "sampled_tok_s": tok_s,
        "tokens": n,
        "forced": 0,
        "ttft_ms": ((t_first or t_end) - t_start) * 1000,
        "mask_ms": 0.0,
    }


def _mask_times(compiled: Any, token_ids: list[int], n_vocab: int) -> list[float]:
    """Replay ``token_ids`` through a fresh matcher; µs per mask computation."""
    m = compiled.matcher()
    bitmask = new_bitmask(n_vocab)
    times: list[float] = []
    for t in token_ids:
        t0 = time.perf_counter()
        m.fill_bitmask(bitmask)
        times.append((time.perf_counter() - t0) * 1e6)
        if not m.accept(t):
            break
    return times


def run_decode_bench(
    *,
    model: str | None = None,
    reps: int = 3,
    max_tokens: int = 160,
    backends: list[str] | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    console = console or Console(stderr=True)
    backends = backends or ["llguidance", "xgrammar"]
    engine = local_engine(model)
    vocab = engine.vocabulary()
    schema = ir_generation_schema()
    spec = GrammarSpec.json_schema(schema)
    messages = ir_messages(REQUEST)
    params = GenerateOptions(max_tokens=max_tokens, temperature=0.0)

    # -------- compile times
    compile_stats: dict[str, dict[str, float]] = {}
    compiled: dict[str, Any] = {}
    for name in backends:
        backend = get_backend(name)
        cold = []
        for _ in range(max(3, reps)):
            t0 = time.perf_counter()
            compiled[name] = backend.compile(spec, vocab)
            cold.append((time.perf_counter() - t0) * 1000)
        cache = GrammarCache()
        cache.get(spec, name, vocab)
        warm = []
        for _ in range(20):
            t0 = time.perf_counter()
            cache.get(spec, name, vocab)
            warm.append((time.perf_counter() - t0) * 1000)
        compile_stats[name] = {"cold_ms": statistics.median(cold), "cached_ms": statistics.median(warm)}

    # -------- decode runs (interleaved, so drift hits every config alike)
    # llama.cpp's own runs go first in each rep: they reset the shared KV
    # cache, and our configs then all start from the same (cached) prompt.
    configs: list[tuple[str, Any]] = [("llama.cpp-unconstrained", "native"), ("llama.cpp-json-schema", "native-grammar")]
    configs += [("unconstrained", None)]
    configs += [(name, Constraint(spec, name, compiled[name])) for name in backends]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in configs}
    engine.generate(messages, GenerateOptions(max_tokens=4))  # warm-up: load pages, fill the prefix cache
    for rep in range(reps):
        for name, how in configs:
            console.print(f"[dim]rep {rep + 1}/{reps}: {name}[/]")
            if how == "native-grammar":
                runs[name].append(_llama_native(engine, messages, max_tokens, schema))
            elif how == "native":
                runs[name].append(_llama_native(engine, messages, max_tokens, None))
            else:
                runs[name].append(_ours(engine, messages, params, how))

    mask_stats: dict[str, dict[str, float]] = {}
    for name in backends:
        times = _mask_times(compiled[name], runs[name][0]["token_ids"], vocab.n_vocab)
        mask_stats[name] = {"median_us": statistics.median(times), "p99_us": _pct(times, 0.99), "steps": len(times)}

    rows = {}
    for name, _ in configs:
        rs = runs[name]
        rows[name] = {
            "decode_tok_s": statistics.median(r["tok_s"] for r in rs),
            "sampled_tok_s": statistics.median(r["sampled_tok_s"] for r in rs),
            "tokens": statistics.median(r["tokens"] for r in rs),
            "forced_tokens": statistics.median(r["forced"] for r in rs),
            "ttft_ms": statistics.median(r["ttft_ms"] for r in rs),
            "samples_tok_s": [round(r["tok_s"], 2) for r in rs],
        }
    base = rows["unconstrained"]["decode_tok_s"] or 1.0
    native = rows["llama.cpp-json-schema"]["decode_tok_s"] or 1.0
    for name, row in rows.items():
        row["vs_unconstrained"] = row["decode_tok_s"] / base
        row["vs_llama_cpp_grammar"] = row["decode_tok_s"] / native

    result = {
        "benchmark": "decode",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": __import__("os").cpu_count(), "platform": platform.platform()},
        "model": engine.model_name,
        "prompt_tokens": engine.count_tokens(messages),
        "max_tokens": max_tokens,
        "reps": reps,
        "configs": rows,
        "mask": mask_stats,
        "compile": compile_stats,
        "targets": {
            "constrained_vs_unconstrained_min": 0.95,
            "constrained_vs_llama_cpp_grammar_min": 1.4,
        },
    }
    _print(result, console)
    return result


def _print(result: dict[str, Any], console: Console) -> None:
    t = Table(title=f"decode: {result['model']}, {result['reps']} reps, median")
    for col in ("config", "tok/s", "sampled tok/s", "x unconstr.", "x llama.cpp grammar", "tokens", "forced", "TTFT ms"):
        t.add_column(col, justify="right" if col != "config" else "left")
    for name, r in result["configs"].items():
        t.add_row(
            name,
            f"{r['decode_tok_s']:.1f}",
            f"{r['sampled_tok_s']:.1f}",
            f"{r['vs_unconstrained']:.2f}",
            f"{r['vs_llama_cpp_grammar']:.2f}",
            f"{r['tokens']:.0f}",
            f"{r['forced_tokens']:.0f}",
            f"{r['ttft_ms']:.0f}",
        )
    console.print(t)
    t2 = Table(title="grammar backends")
    for col in ("backend", "mask median µs", "mask p99 µs", "compile cold ms", "compile cached ms"):
        t2.add_column(col, justify="right" if col != "backend" else "left")
    for name, m in result["mask"].items():
        c = result["compile"][name]
        t2.add_row(name, f"{m['median_us']:.1f}", f"{m['p99_us']:.1f}", f"{c['cold_ms']:.2f}", f"{c['cached_ms']:.4f}")
    console.print(t2)
