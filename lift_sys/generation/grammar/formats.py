"""Which string ``format``\\ s each backend's grammar enforces, measured, and what happens to the rest.

Measured on the official suite's ``optional/format`` tests (vendored;
``tests/test_schema_suite.py`` runs them), each format as ``{"type":
"string", "format": F}``, against jsonschema-rs with formats asserted,
llguidance 1.9.1 and xgrammar 0.2.8:

==================  ==========================  ==========================
format              llguidance                  xgrammar
==================  ==========================  ==========================
duration, ipv4,     exact                       exact
uuid
json-pointer,       (no grammar)                exact
relative-json-ptr
date                admits 2021-02-29           admits 2020-02-30
date-time, time     admit 22:59:60Z (leap       also rejects a lowercase
                    second off 23:59 UTC)       ``t``/``z`` (valid)
hostname            admits a 64-char label      the same
email               rejects quoted local parts  rejects ``[127.0.0.1]``
ipv6                rejects some IPv4 tails     both ways
uri, uri-reference, (no grammar)                rejects some valid ones
uri-template
==================  ==========================  ==========================

Three tiers follow:

* **exact** -- the grammar is the format: compiled as written.
* **superset** -- the grammar admits every valid value and a few invalid
  ones. Exact mode refuses it by name; enforced mode keeps it in the
  grammar (the model is still steered to a date) under
  :data:`APPROXIMATE_FORMAT`, which the lint reads as an annotation and
  the backend compiles as ``format`` again (:func:`restore_formats`), and
  the output validator, which asserts formats, checks the rest.
* anything else -- refused in exact mode; in enforced mode the format
  leaves the grammar (any string) and validation checks it when the
  validator knows it (:data:`VALIDATED`); an unknown format is an
  annotation to every validator, so nothing can check it and the
  relaxation says so.
"""

from __future__ import annotations

from typing import Any

from lift_sys.generation.grammar.schema_guard import _DATA, _MAPS, APPROXIMATE_FORMAT

__all__ = ["APPROXIMATE_FORMAT", "EXACT", "KNOWN", "SUPERSET", "VALIDATED", "refusal", "restore_formats"]

EXACT: dict[str, frozenset[str]] = {
    "llguidance": frozenset({"duration", "ipv4", "uuid"}),
    "xgrammar": frozenset({"duration", "ipv4", "uuid", "json-pointer", "relative-json-pointer"}),
}
SUPERSET: dict[str, frozenset[str]] = {
    "llguidance": frozenset({"date", "date-time", "time", "hostname"}),
    "xgrammar": frozenset({"date", "hostname"}),
}
KNOWN: dict[str, frozenset[str]] = {  # formats the backend has a grammar for at all
    "llguidance": frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}),
    "xgrammar": frozenset({"date-time", "time", "date", "duration", "email", "ipv4", "ipv6", "hostname", "uuid", "uri",
                           "uri-reference", "uri-template", "json-pointer", "relative-json-pointer"}),
}
VALIDATED = frozenset({
    "date", "date-time", "time", "duration", "email", "idn-email", "hostname", "idn-hostname", "ipv4", "ipv6", "uri",
    "uri-reference", "iri", "iri-reference", "uri-template", "json-pointer", "relative-json-pointer", "regex", "uuid",
})
"""Formats the output validator (jsonschema-rs, formats asserted) checks; any other is an annotation."""



def refusal(fmt: Any, backend: str) -> str | None:
    """Why exact mode refuses ``format: fmt`` on ``backend`` (None: the grammar is the format)."""
    if not isinstance(fmt, str):
        return f"format {fmt!r} is not enforced"
    if fmt in EXACT.get(backend, ()):
        return None
    if fmt in SUPERSET.get(backend, ()):
        return f"the {backend} grammar for format {fmt!r} also admits some invalid values; enforced mode validates it"
    if fmt in KNOWN.get(backend, ()):
        return f"the {backend} grammar for format {fmt!r} rejects some valid values; enforced mode validates it"
    return f"format {fmt!r} is not enforced"


def restore_formats(schema: Any) -> Any:
    """``schema`` with every :data:`APPROXIMATE_FORMAT` written as ``format`` again (what the backend compiles).

    Only subschemas are rewritten: a property *named* like the marker, or
    the marker inside a ``const``, is left alone. (A caller cannot send the
    marker: the schema guard drops it as the annotation it is.)
    """
    if isinstance(schema, list):
        return [restore_formats(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == APPROXIMATE_FORMAT:
            out.setdefault("format", value)
        elif key in _DATA:
            out[key] = value
        elif key in _MAPS and isinstance(value, dict):
            out[key] = {name: restore_formats(sub) for name, sub in value.items()}
        else:
            out[key] = restore_formats(value)
    return out
