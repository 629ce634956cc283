"""Mask plumbing on real llama.cpp with a random-weights model: the grammar alone makes it valid."""

from __future__ import annotations

import json

import jsonschema
import pytest

from lift_sys.errors import EngineError
from lift_sys.generation.engines.base import Continuation, GenerateOptions
from lift_sys.generation.grammar import GrammarSpec
from lift_sys.generation.engines.llamacpp import LlamaCppEngine
from lift_sys.generation.registry import ensure_model, get_model
from lift_sys.service.core import GenerateOptions, InferenceService

from .tiny_gguf import make_tiny_qwen2

SCHEMA = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "n": {"type": "integer", "minimum": 0, "maximum": 999},
        "color": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
    },
    "required": ["ok", "n", "color", "tags"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tiny_engine(tmp_path_factory):
    path = make_tiny_qwen2(tmp_path_factory.mktemp("tiny") / "tiny.gguf", ensure_model(get_model()))
    return LlamaCppEngine(path, model_name="tiny-random", n_ctx=1024)


def test_without_the_grammar_random_weights_are_not_json(tiny_engine):
    c = tiny_engine.generate([{"role": "user", "content": "json please"}], GenerateOptions(max_tokens=24))
    with pytest.raises(ValueError):
        json.loads(c.text)


@pytest.mark.parametrize("backend", ["llguidance", "xgrammar"])
@pytest.mark.parametrize("temperature, seed", [(0.0, None), (1.0, 7), (1.0, 8)])
def test_with_the_grammar_random_weights_give_schema_valid_json(tiny_engine, backend, temperature, seed):
    service = InferenceService(tiny_engine, default_backend=backend)
    result = service.generate(
        "json please", SCHEMA, GenerateOptions(max_tokens=200, temperature=temperature, seed=seed)
    )
    assert result.finish_reason == "stop"
    jsonschema.validate(result.json, SCHEMA)
    assert json.loads(result.text) == result.json
    assert result.grammar_backend == backend


def test_fast_forward_appends_forced_tokens(tiny_engine):
    service = InferenceService(tiny_engine, default_backend="llguidance")
    result = service.generate("json please", SCHEMA, GenerateOptions(max_tokens=200))
    # keys like "color" are forced by the grammar: appended without sampling
    assert result.completion.forced_tokens > 0
    assert result.completion.completion_tokens > result.completion.forced_tokens


def test_batched_rows_go_in_slot_order_with_no_gap(tiny_engine, monkeypatch):
    """Every llama_decode of the batched engine carries sequence ids 0..k-1, in order.

    With split KV streams llama.cpp puts only consecutive, increasing
    sequence ids in one ubatch, so a gap or an out-of-order row costs a
    whole extra pass over the weights (measured 152 vs 104 ms a step with 8
    sequences). Short requests finish first and leave gaps among long ones:
    the scheduler must move a running sequence down to close them.
    """
    import llama_cpp
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.delenv("GGML_CPU_TILED_MM", raising=False)  # restored after the test: later subprocesses keep the default
    engine = LlamaCppEngine(tiny_engine.model_path, model_name="tiny-random", n_ctx=512, slots=4)
    runs_per_decode: list[list[int]] = []
    real_decode = llama_cpp.llama_decode

    def recording(ctx, batch):
        ids = [batch.seq_id[i][0] for i in range(batch.n_tokens)]
        runs_per_decode.append([s for i, s in enumerate(ids) if i == 0 or ids[i - 1] != s])
        return real_decode(ctx, batch)

    monkeypatch.setattr(llama_cpp, "llama_decode", recording)
    budgets = [48, 3, 48, 6, 48, 2, 48, 48]  # short ones among long ones: gaps open mid-batch
    try:
        for round_ in range(3):
            with ThreadPoolExecutor(len(budgets)) as pool:
                done = list(pool.map(
                    lambda ib: engine.generate([{"role": "user", "content": f"round {round_} request {ib[0]}"}],
                                               GenerateOptions(max_tokens=ib[1])),
                    enumerate(budgets)))
            assert all(0 < c.completion_tokens <= b for c, b in zip(done, budgets))
        stats = engine.batch_stats()
    finally:
        engine.close()
    assert runs_per_decode and stats.tokens_decoded > 0
    bad = [runs for runs in runs_per_decode if runs != list(range(len(runs)))]
    assert not bad, f"{len(bad)} of {len(runs_per_decode)} decodes had gaps or rows out of slot order, e.g. {bad[:3]}"
    assert stats.slot_moves > 0  # the gaps were closed by moving sequences, not avoided by luck


def _prompt(topic: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"{topic}, and what to say about {topic}. " * 8},
            {"role": "user", "content": "go"}]


def test_prompts_taking_turns_keep_their_prefix_and_their_output(tiny_engine):
    """A, B, A on one slot: the second A comes from its snapshot, and says what A said after A.

    Without snapshots B's prefill evicts A's KV and the second A prefills
    its whole prompt again (the pipeline's IR / request-code / IR-code
    prompts taking turns cached 4 tokens each). The restored KV is the
    bytes A's prefill wrote, so the second A's logits are the ones it gets
    straight after A (the live-prefix path): same greedy text.
    """
    engine = LlamaCppEngine(tiny_engine.model_path, model_name="tiny-random", n_ctx=1024, prompt_cache_mb=64)
    off = LlamaCppEngine(tiny_engine.model_path, model_name="tiny-random", n_ctx=1024, prompt_cache_mb=0)
    opts = GenerateOptions(max_tokens=16)
    a, b = _prompt("rivers"), _prompt("mountains")
    n_a = engine.count_tokens(a)
    assert n_a > 64

    engine.generate(a, opts)
    after_a = engine.generate(a, opts)  # live prefix: A straight after A
    assert after_a.cached_prompt_tokens == n_a - 1
    engine.generate(b, opts)
    again = engine.generate(a, opts)  # B came between: A's snapshot
    assert again.cached_prompt_tokens == n_a - 1
    assert again.text == after_a.text and again.token_ids == after_a.token_ids
    stats = engine.info()["prompt_cache"]
    assert stats["hits"] >= 1 and stats["restored_tokens"] >= n_a - 1 and 0 < stats["bytes"] <= 64 * 1024 * 1024

    off.generate(a, opts)
    off.generate(b, opts)
    assert off.generate(a, opts).cached_prompt_tokens < 5  # only the chat template's first tokens
    assert off.info()["prompt_cache"]["entries"] == 0


@pytest.mark.parametrize("backend", ["llguidance", "xgrammar"])
@pytest.mark.parametrize("slots", [1, 2])
def test_a_continuation_replays_the_kept_tokens_and_decodes_on_from_their_kv(tiny_engine, slots, backend):
    """Greedy, continued from half of its own text, a completion goes on exactly as it went.

    The kept tokens are the completion's own ids (replayed through a fresh
    matcher) and their KV is reused, not evaluated again: the batched
    engine decodes fewer tokens than the continuation has to finish.
    """
    engine = tiny_engine if slots == 1 else LlamaCppEngine(tiny_engine.model_path, model_name="tiny-random",
                                                           n_ctx=512, slots=slots)
    try:
        constraint = InferenceService(engine).constraint_for(GrammarSpec.json_schema(SCHEMA), backend)
        messages = [{"role": "user", "content": "json please"}]
        opts = GenerateOptions(max_tokens=200)
        full = engine.generate(messages, opts, constraint)
        assert full.finish_reason == "stop" and len(full.token_ids) > 8
        continuation = Continuation(full, len(full.text) // 2)
        kept = engine.kept_tokens(continuation)
        assert 0 < len(kept) < len(full.token_ids) and kept == full.token_ids[:len(kept)]
        decoded = engine.batch_stats().tokens_decoded
        again = engine.generate(messages, opts, constraint, continue_from=continuation)
        assert again.text == full.text and again.token_ids == full.token_ids
        assert again.prompt_tokens == full.prompt_tokens and again.completion_tokens == full.completion_tokens
        jsonschema.validate(json.loads(again.text), SCHEMA)
        if slots > 1:
            assert engine.batch_stats().tokens_decoded - decoded <= len(full.token_ids) - len(kept) + 1
    finally:
        if slots > 1:
            engine.close()


def test_a_continuation_that_does_not_fit_the_constraint_is_refused(tiny_engine):
    free = tiny_engine.generate([{"role": "user", "content": "json please"}], GenerateOptions(max_tokens=24))
    constraint = InferenceService(tiny_engine).constraint_for(GrammarSpec.json_schema(SCHEMA), "llguidance")
    with pytest.raises(EngineError, match="does not fit the grammar"):
        tiny_engine.generate([{"role": "user", "content": "json please"}], GenerateOptions(max_tokens=24), constraint,
                             continue_from=Continuation(free, len(free.text)))


def test_requests_arriving_together_at_a_fresh_engine_build_the_vocabulary_once(tiny_engine):
    """Eight first requests at once share one vocabulary walk (each built its own: 41 s vs 2.6 s here)."""
    from concurrent.futures import ThreadPoolExecutor

    engine = LlamaCppEngine(tiny_engine.model_path, model_name="tiny-random", n_ctx=256)
    with ThreadPoolExecutor(8) as pool:
        vocabularies = list(pool.map(lambda _: engine.vocabulary(), range(8)))
    assert len({id(v) for v in vocabularies}) == 1
    assert len(vocabularies[0].tokens) == engine.info()["n_vocab"]


def test_the_batched_engine_restores_a_prompt_no_slot_holds(tiny_engine):
    """Sequential requests all land in slot 0: without snapshots, A after B prefilled A again.

    (The pipeline on ``LIFT_SLOTS`` >= 2 runs its IR alone, then candidates:
    the next request's IR prefix was gone.) Same output as A straight
    after A -- the restored KV is the bytes A's own prefill wrote.
    """
    engine = LlamaCppEngine(tiny_engine.model_path, model_name="tiny-random", n_ctx=512, slots=2, prompt_cache_mb=64)
    try:
        opts = GenerateOptions(max_tokens=12)
        a, b = _prompt("rivers"), _prompt("mountains")
        n_a = engine.count_tokens(a)
        engine.generate(a, opts)
        after_a = engine.generate(a, opts)
        engine.generate(b, opts)
        again = engine.generate(a, opts)
        assert after_a.cached_prompt_tokens == again.cached_prompt_tokens == n_a - 1
        assert again.token_ids == after_a.token_ids
        assert engine.info()["prompt_cache"]["hits"] >= 1
    finally:
        engine.close()
