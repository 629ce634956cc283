"""The official JSON-Schema-Test-Suite at grammar level: never fail open, refuse cleanly.

For every schema of the vendored suite (tests/data/json-schema-test-suite,
draft2020-12 and draft7) and both backends, through the server's path
(guard, validator preparation, lint, compile cache):

* refused -- must be a 400 naming the keyword and JSON pointer
  (SchemaRefused / UnsupportedSchemaError), never another exception;
* compiled -- every instance the reference validator rejects must be
  rejected by the grammar (fail-open: none), and every valid one accepted
  (fail-closed: none). xgrammar's last gaps (untyped subschemas read as
  one type, ``additionalItems`` without a tuple) went with
  :mod:`lift_sys.generation.grammar.type_split`.

A byte-level vocabulary keeps this fast (the whole suite: ~3 s per draft).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lift_sys.errors import InvalidRequest, SchemaRefused, UnsupportedSchemaError
from lift_sys.generation.grammar import GrammarCache, GrammarSpec
from lift_sys.generation.grammar.conformance import (
    byte_vocabulary,
    reference_validator,
    run_instance,
    serialize,
    subschema_validity,
)
from lift_sys.ir.validate import prepare_validator
from lift_sys.service.core import guard_spec

from .conftest import requires_xgrammar

SUITE = Path(__file__).parent / "data" / "json-schema-test-suite"
DRAFTS = ("draft2020-12", "draft7")
FILES = [(d, f.name) for d in DRAFTS for f in sorted((SUITE / d).glob("*.json"))]
VOCAB = byte_vocabulary()
CACHE = GrammarCache(max_entries=8, compile_timeout_s=10.0)

# Unnamed refusals allowed: none (a bare ``true`` is compiled as {}, ``false`` is refused naming "false" at /).
UNNAMED_OK: set[str] = set()

def _groups(draft: str, name: str) -> list[dict]:
    return json.loads((SUITE / draft / name).read_text())


def _check_file(draft: str, name: str, backend: str) -> dict[str, int]:
    counts = {"compiled": 0, "refused": 0, "instances": 0}
    for group in _groups(draft, name):
        desc = group["description"]
        schema = group["schema"]
        spec = GrammarSpec.json_schema(schema) if isinstance(schema, dict) else GrammarSpec("json_schema", schema)
        try:
            spec = guard_spec(spec)
            if isinstance(spec.source, dict):
                prepare_validator(spec.source, schema_key=spec.key)
            compiled = CACHE.get(spec, backend, VOCAB)
        except (SchemaRefused, UnsupportedSchemaError) as exc:
            assert exc.keyword and exc.pointer.startswith("/"), (desc, exc.message)
            assert exc.keyword in exc.message and "<state>" not in exc.message and ".cc:" not in exc.message
            counts["refused"] += 1
            continue
        except InvalidRequest as exc:  # a clean 4xx, but it must say which keyword and where
            assert desc in UNNAMED_OK, f"{name} / {desc}: refusal names no keyword: {exc.message}"
            counts["refused"] += 1
            continue
        counts["compiled"] += 1
        truth = reference_validator(spec.source)
        valid = subschema_validity(spec.source)
        for test in group["tests"]:
            expected = bool(truth.is_valid(test["data"]))
            if draft == "draft2020-12" and name != "format.json":  # formats: we assert them, the suite annotates
                assert expected == test["valid"], (desc, test["description"])
            text = serialize(test["data"], spec.source, valid)
            if text is None:
                continue
            counts["instances"] += 1
            accepted = run_instance(compiled, text, VOCAB).accepted
            if not expected:
                assert not accepted, f"FAIL-OPEN {backend}: {name} / {desc} / {test['description']}: {text}"
            else:
                assert accepted, f"{backend} rejects a valid instance: {name} / {desc} / {test['description']}: {text}"
    return counts


@pytest.mark.parametrize("draft, name", FILES, ids=[f"{d}/{n}" for d, n in FILES])
def test_llguidance_never_fails_open_and_refuses_by_name(draft, name):
    _check_file(draft, name, "llguidance")


@requires_xgrammar
@pytest.mark.parametrize("draft, name", FILES, ids=[f"{d}/{n}" for d, n in FILES])
def test_xgrammar_never_fails_open_and_refuses_by_name(draft, name):
    _check_file(draft, name, "xgrammar")


@pytest.mark.parametrize("backend", ["llguidance", pytest.param("xgrammar", marks=requires_xgrammar)])
def test_the_suite_is_mostly_compiled_not_refused(backend):
    """A lint that refused everything would pass the tests above: the core keywords must compile."""
    totals = {"compiled": 0, "refused": 0, "instances": 0}
    for name in ("type.json", "properties.json", "required.json", "enum.json", "minLength.json", "maxItems.json",
                 "pattern.json", "anyOf.json", "allOf.json", "ref.json", "items.json", "minimum.json"):
        for key, value in _check_file("draft2020-12", name, backend).items():
            totals[key] += value
    minimum = {"llguidance": 70, "xgrammar": 40}[backend]
    assert totals["compiled"] >= minimum, totals
    assert totals["instances"] >= 2 * minimum, totals


FORMATS = sorted((SUITE / "draft2020-12" / "optional" / "format").glob("*.json"))


@pytest.mark.parametrize("backend", ["llguidance", pytest.param("xgrammar", marks=requires_xgrammar)])
def test_formats_are_exact_or_validated_never_open(backend):
    """The suite's optional/format tests, each format as a typed string, in both modes.

    Exact mode: a compiled format must be the format (no invalid value
    accepted, no valid one rejected); any other is refused by name.
    Enforced mode (the server's default): every valid value is accepted by
    the grammar, and an invalid one the grammar admits must be rejected by
    the server's output validator -- so it is never returned. Before,
    both grammars admitted ``2021-02-29`` as a date, and the validator did
    not assert formats at all (``"not a uri"`` passed a format left to it).
    """
    from lift_sys.errors import OutputValidationError
    from lift_sys.generation.validation import prepare_validator as prepare_output, validate_json

    exact = validated = 0
    for path in FORMATS:
        for group in _groups("draft2020-12/optional/format", path.name):
            schema = {**group["schema"], "type": "string"}
            spec = guard_spec(GrammarSpec.json_schema(schema))
            truth = reference_validator(spec.source)
            cases = [(json.dumps(t["data"], ensure_ascii=False), t["data"], bool(truth.is_valid(t["data"])))
                     for t in group["tests"] if isinstance(t["data"], str)]
            try:
                compiled = CACHE.get(spec, backend, VOCAB)
            except (SchemaRefused, UnsupportedSchemaError) as exc:
                assert exc.keyword == "format" and exc.pointer == "/", exc.message
            else:
                exact += 1
                for text, data, ok in cases:
                    assert run_instance(compiled, text, VOCAB).accepted == ok, (path.name, data, ok)
            compiled = CACHE.get(spec, backend, VOCAB, relax=True)
            prepare_output(spec.source, schema_key=spec.key)
            for text, data, ok in cases:
                accepted = run_instance(compiled, text, VOCAB).accepted
                if ok:
                    assert accepted, f"{backend} rejects a valid {path.stem}: {data!r}"
                elif accepted:
                    assert compiled.validation_needed, f"FAIL-OPEN {backend}: {path.stem} {data!r}"
                    with pytest.raises(OutputValidationError):
                        validate_json(data, spec.source, schema_key=spec.key, trusted=False)
                    validated += 1
    assert exact >= 3 and validated >= 10, (exact, validated)  # the test saw both kinds
