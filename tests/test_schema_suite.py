"""The official JSON-Schema-Test-Suite at grammar level: never fail open, refuse cleanly.

For every schema of the vendored suite (tests/data/json-schema-test-suite,
draft2020-12 and draft7) and both backends, through the server's path
(guard, validator preparation, lint, compile cache):

* refused -- must be a 400 naming the keyword and JSON pointer
  (SchemaRefused / UnsupportedSchemaError), never another exception;
* compiled -- every instance the reference validator rejects must be
  rejected by the grammar (fail-open: none), and every valid one accepted,
  except xgrammar's known *fail-closed* gaps below (it rejects some valid
  values: additional properties by default, untyped subschemas read as
  objects); those are listed by name, so a new gap fails the test.

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

# Unnamed refusals allowed: a bare boolean schema has no keyword to name.
UNNAMED_OK = {"boolean schema 'true'", "boolean schema 'false'"}

# xgrammar 0.2.8 rejects these *valid* values (fail-closed, not fail-open). Most of the old list went when
# strict_mode was turned off and "any value" spelled out compactly (xgrammar_backend.spell_out_any): 24 -> 7.
XGRAMMAR_FAIL_CLOSED = {
    "a schema given for items", "a schema given for prefixItems", "additionalItems as false without items",
    "object properties validation", "properties whose names are Javascript object property names",
    "required validation", "root pointer ref",
}


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
            elif not accepted:
                assert backend == "xgrammar" and desc in XGRAMMAR_FAIL_CLOSED, \
                    f"{backend} rejects a valid instance: {name} / {desc} / {test['description']}: {text}"
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
