"""Run in a fresh process by tests/test_batching.py: is greedy/seeded output the same alone and in a batch?

Why a separate process: the batched engine asks ggml for batch-invariant
matmul kernels (``make_batch_invariant``), and ggml reads that setting once,
at the process's first matmul. ``lift-sys serve`` builds the batched engine
first, so it gets them; the test session has decoded with the one-slot
engine long before, so an in-process check would test a configuration no
server runs. This script starts the way ``serve`` does and prints one JSON
object.

    python -m tests.batch_identity MODEL_PATH BACKEND[,BACKEND...]
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor

from lift_sys.generation.engines.base import GenerateOptions
from lift_sys.generation.engines.llamacpp import LlamaCppEngine
from lift_sys.generation.grammar import GrammarSpec
from lift_sys.ir.models import ir_generation_schema
from lift_sys.ir.prompt import ir_messages
from lift_sys.service.core import InferenceService

TARGET = "a function that reverses a string"
OTHERS = [
    "a function that counts the words in a sentence",
    "a function that returns the square of n",
]


def main(model_path: str, backends: list[str]) -> dict:
    engine = LlamaCppEngine(model_path, slots=4)
    service = InferenceService(engine)
    out: dict = {}
    for backend in backends:  # one process, one model load and one shared-prefix prefill for all backends
        constraint = service.constraint_for(GrammarSpec.json_schema(ir_generation_schema()), backend)

        def ir(request: str):  # the first 112 tokens of a greedy IR (engine level: a cut IR is not an error)
            return engine.generate(ir_messages(request), GenerateOptions(max_tokens=112), constraint)

        alone = ir(TARGET)
        before = engine.batch_stats()
        with ThreadPoolExecutor(3) as pool:  # the target joins while the others are already running
            futures = [pool.submit(ir, r) for r in OTHERS]
            target = pool.submit(ir, TARGET).result()
            others = [f.result() for f in futures]
        after = engine.batch_stats()
        shared = sum(n for size, n in after.steps_by_size.items() if size > 1) - sum(
            n for size, n in before.steps_by_size.items() if size > 1)
        out[backend] = {
            "alone": {"text": alone.text, "ids": alone.token_ids, "tokens": alone.completion_tokens},
            "target": {"text": target.text, "ids": target.token_ids},
            "others": [{"text": c.text, "tokens": c.completion_tokens, "cached": c.cached_prompt_tokens}
                       for c in others],
            "target_cached": target.cached_prompt_tokens,
            "shared_steps": shared,
        }
    # Sampled, same seed, two identical prompts decoded side by side (and prefilled together).
    messages = [{"role": "user", "content": "Write a haiku about batching."}]
    sampled = GenerateOptions(max_tokens=24, temperature=0.9, seed=7)
    with ThreadPoolExecutor(2) as pool:
        first, again = [f.result() for f in [pool.submit(engine.generate, messages, sampled) for _ in range(2)]]
    engine.close()
    out["seeded"] = [first.token_ids, again.token_ids]
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2].split(","))))
