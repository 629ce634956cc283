"""Grammar-level conformance: does a compiled grammar accept exactly the valid instances?

No model is involved: an instance is written in the grammar's canonical
serialization (:mod:`.canonical`), tokenized, and fed token by token
through a matcher; it is *accepted* when every token is and the grammar
may then end (EOS allowed, or finished). MaskBench's runner stops at the
last token and so counts a valid *prefix* of an invalid instance as
accepted; here that is a rejection, as it is in decoding.

The truth for "valid" is the reference validator (python-``jsonschema``'s
2020-12 semantics, via jsonschema-rs, formats asserted) on the schema as
the server reads it -- ``$schema`` removed, read as 2020-12 -- not the
suite's label, which was computed under the schema's own draft; the bench
reports where the two disagree.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lift_sys.generation.grammar.base import CompiledGrammar, Vocabulary, new_bitmask
from lift_sys.generation.grammar.canonical import canonical_json


def byte_vocabulary() -> Vocabulary:
    """A 257-token vocabulary: one token per byte (0xFF excepted, never in UTF-8) and an EOS.

    Builds in microseconds for either backend, so the CI suite tests the
    grammar's *language* without loading a model's 151k-token vocabulary.
    """
    tokens = [bytes([i]) for i in range(255)] + [b"\xff<unused>", b"\xff<eos>"]
    return Vocabulary(tokens=tokens, eos_token_ids=(256,), bos_token_id=None, n_vocab=257,
                      tokenize=lambda text: list(text), name="bytes")


def reference_validator(schema: Any) -> Any:
    """jsonschema-rs, 2020-12, formats asserted, nothing ever fetched (python-jsonschema if it cannot read it)."""
    import jsonschema
    import jsonschema_rs
    from referencing import Registry

    from lift_sys.ir.validate import _refuse_retrieval

    try:
        return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, retriever=_refuse_retrieval)
    except Exception:  # noqa: BLE001 - a regex dialect jsonschema-rs refuses
        return jsonschema.Draft202012Validator(schema, registry=Registry(retrieve=_refuse_retrieval),
                                               format_checker=jsonschema.FormatChecker())


def subschema_validity(schema: Any) -> Callable[[Any, Any], bool]:
    """(value, subschema) -> valid?, with ``$ref`` resolved in ``schema`` (for choosing anyOf branches)."""
    import jsonschema
    from referencing import Registry

    from lift_sys.ir.validate import _refuse_retrieval

    root = jsonschema.Draft202012Validator(schema, registry=Registry(retrieve=_refuse_retrieval))
    return lambda value, sub: root.evolve(schema=sub).is_valid(value)


@dataclass
class InstanceResult:
    accepted: bool
    tokens: int
    rejected_at: int | None = None  # byte offset of the first rejected token
    mask_us: list[float] = field(default_factory=list)


def run_instance(compiled: CompiledGrammar, text: str, vocab: Vocabulary, *, time_masks: bool = False,
                 max_masks: int = 256, masked: bool = False) -> InstanceResult:
    """Feed ``text``'s tokens through a fresh matcher; optionally time each mask (the first ``max_masks``).

    ``masked``: as decoding does, compute the mask before every token and
    require the token in it. Slower, and the verdict to trust when the two
    differ: llguidance 1.9.1 grows one lexer shared by every matcher of a
    compiled grammar, and on a large schema (SchemaStore's detekt-1.22.0,
    ~300 property names) feeding tokens *without* masks filled it ("too
    many expressions constructed"), after which every copy failed at its
    first token (the backend now rebuilds a lexer a decoder found full:
    ``_SharedLexer``). So a masked run starts from a fresh lexer.
    """
    matcher = compiled.fresh_matcher() if masked else compiled.matcher()
    data = text.encode("utf-8")
    tokens = vocab.tokenize(data)
    bitmask = new_bitmask(vocab.n_vocab) if time_masks or masked else None
    words = bitmask.view(np.uint32) if bitmask is not None else None
    result = InstanceResult(accepted=False, tokens=len(tokens))
    offset = 0
    for i, token in enumerate(tokens):
        if bitmask is not None and (masked or i < max_masks):
            t0 = time.perf_counter()
            matcher.fill_bitmask(bitmask)
            if time_masks and i < max_masks:
                result.mask_us.append((time.perf_counter() - t0) * 1e6)
            if masked and not (int(words[token >> 5]) >> (token & 31)) & 1:
                result.rejected_at = offset
                return result
        if not matcher.accept(token):
            result.rejected_at = offset
            return result
        offset += len(vocab.tokens[token]) if token < len(vocab.tokens) else 0
    result.accepted = _can_end(matcher, vocab)
    if not result.accepted:
        result.rejected_at = len(data)
    return result


def _can_end(matcher: Any, vocab: Vocabulary) -> bool:
    if matcher.is_finished():
        return True
    bitmask = new_bitmask(vocab.n_vocab)
    matcher.fill_bitmask(bitmask)
    words = bitmask.view(np.uint32)
    return any((int(words[e >> 5]) >> (e & 31)) & 1 for e in vocab.eos_token_ids)


def serialize(value: Any, schema: Any, valid: Callable[[Any, Any], bool], *, required_first: bool = False) -> str | None:
    """The canonical text, or None for a value no grammar can write (NaN, lone surrogates)."""
    try:
        text = canonical_json(value, schema, valid, required_first=required_first)
        text.encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError):
        return None
    return text
