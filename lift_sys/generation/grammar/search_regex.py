"""Exact rewrites of JSON Schema patterns that keep their *search* meaning and spare a lexer.

A JSON Schema ``pattern`` (and a ``patternProperties`` key) is a search:
``[a-z]{1,255}`` matches every string that holds one letter somewhere. Under
search semantics a repeat at an end that is not anchored reduces to its
minimum: a match of ``A{m,n}B`` ends with a match of ``A{m}B`` (its last
``m`` copies of ``A`` and then ``B``), and a match of ``A{m}B`` is one of
``A{m,n}B``. So ``[a-z]{1,255}`` and ``[a-z]`` accept the same strings, and so
do ``x+y`` and ``xy``.

Why: llguidance 1.9.1 compiles a ``patternProperties`` key together with
its complement (a key that does *not* match gets the other value schema),
and the unanchored key ``[A-Za-z0-9-_.:]{1,255}`` (MaskBench
Github_trivial---o78117) filled its lexer under masks at the first key: a
valid instance rejected while decoding. With ``{3,255}`` the same; with the
reduced key, or ``{1,64}``, it passes. The rewrite is exact, so it needs no
validation behind it.

Conservative by construction: a pattern holding anything this reader does
not parse (a back-reference, a look-around, a named group or inline flag,
``\\p{..}``, an anchor inside) is returned unchanged.
"""

from __future__ import annotations

import re
from typing import Any

from lift_sys.generation.grammar.schema_guard import _DATA, _MAPS
from lift_sys.generation.grammar.xgrammar_regex import anchored_branches

_QUANT = re.compile(r"(?:(?P<plus>\+)|(?P<star>\*)|(?P<opt>\?)|\{(?P<min>\d+)(?P<comma>,)?(?P<max>\d*)\})(?P<lazy>\?)?")
_PLAIN_ESCAPES = set("dDwWsStnrfv.\\/-^$|?*+()[]{}\"'")
_MAX_MIN = 1000  # a minimum this large is kept as written (nothing to gain, and no huge {m} to build)


def _class_end(pattern: str, i: int) -> int | None:
    """Index after the class opened at ``i`` (``[``), or None if it never closes."""
    j = i + 1
    if pattern[j: j + 1] == "^":
        j += 1
    if pattern[j: j + 1] == "]":
        j += 1
    while j < len(pattern):
        if pattern[j] == "\\":
            j += 2
            continue
        if pattern[j] == "[":
            return None  # a nested class (the v flag's set notation): not read here
        if pattern[j] == "]":
            return j + 1
        j += 1
    return None


def _group_end(pattern: str, i: int) -> int | None:
    """Index after the plain or ``(?:`` group opened at ``i``, or None for any other kind."""
    if pattern.startswith("(?", i) and not pattern.startswith("(?:", i):
        return None  # look-around, named group, inline flags
    depth, j = 0, i
    while j < len(pattern):
        c = pattern[j]
        if c == "\\":
            if not _escape_ok(pattern, j):
                return None
            j += 2
            continue
        if c == "[":
            end = _class_end(pattern, j)
            if end is None:
                return None
            j = end
            continue
        if c == "(":
            if pattern.startswith("(?", j) and not pattern.startswith("(?:", j):
                return None
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        elif c in "^$":
            return None
        j += 1
    return None


def _escape_ok(pattern: str, i: int) -> bool:
    return pattern[i + 1: i + 2] in _PLAIN_ESCAPES and pattern[i + 1: i + 2] != ""


def _atoms(core: str) -> list[tuple[str, str]] | None:
    """``core`` as (atom, quantifier) pairs, or None if it holds anything not read here."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(core):
        c = core[i]
        if c == "\\":
            if not _escape_ok(core, i):
                return None
            j: int | None = i + 2
        elif c == "[":
            j = _class_end(core, i)
        elif c == "(":
            j = _group_end(core, i)
        elif c in ")|*+?{}^$]":
            return None
        else:
            j = i + 1
        if j is None:
            return None
        m = _QUANT.match(core, j)
        quant = m.group(0) if m else ""
        out.append((core[i:j], quant))
        i = j + len(quant)
    return out


def _minimum(quant: str) -> str | None:
    """The quantifier of the fewest repeats, if that is fewer than ``quant`` allows and at least one."""
    m = _QUANT.fullmatch(quant)
    if m is None or m["star"] or m["opt"]:
        return None
    if m["plus"]:
        return ""
    low = int(m["min"])
    if not m["comma"] or low < 1 or low > _MAX_MIN or (m["max"] and int(m["max"]) <= low):
        return None
    return "" if low == 1 else "{%d}" % low


def trim_search_repeats(pattern: str) -> str:
    """``pattern`` with each repeat at an unanchored end of a top-level branch cut to its minimum.

    ``[A-Z]{1,255}`` -> ``[A-Z]``; ``^ab+`` -> ``^ab``; ``x{2,}y$`` -> ``x{2}y$``;
    ``^a{1,5}$`` unchanged (anchored at both ends, the count matters).
    """
    branches = anchored_branches(pattern)
    if branches is None:
        return pattern
    out = []
    for start, core, end in branches:
        atoms = _atoms(core)
        if atoms is None:
            return pattern
        for index, flag in ((0, start), (len(atoms) - 1, end)):
            if atoms and not flag:
                trimmed = _minimum(atoms[index][1])
                if trimmed is not None:
                    atoms[index] = (atoms[index][0], trimmed)
        out.append(("^" if start else "") + "".join(a + q for a, q in atoms) + ("$" if end else ""))
    return "|".join(out)


def trim_schema_patterns(schema: Any) -> Any:
    """``schema`` with :func:`trim_search_repeats` applied to every ``pattern`` and ``patternProperties`` key.

    Only subschemas are rewritten (a ``const`` holding a ``pattern`` key is
    data). Two keys that would trim to the same regex keep their own text.
    """
    if isinstance(schema, list):
        return [trim_schema_patterns(x) for x in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DATA:
            out[key] = value
        elif key == "pattern" and isinstance(value, str):
            out[key] = trim_search_repeats(value)
        elif key == "patternProperties" and isinstance(value, dict):
            trimmed = [trim_search_repeats(name) for name in value]
            clash = len(set(trimmed)) < len(trimmed) or any(t != o and t in value for t, o in zip(trimmed, value))
            names = list(value) if clash else trimmed
            out[key] = {name: trim_schema_patterns(sub) for name, sub in zip(names, value.values())}
        elif key in _MAPS and isinstance(value, dict):
            out[key] = {name: trim_schema_patterns(sub) for name, sub in value.items()}
        else:
            out[key] = trim_schema_patterns(value)
    return out
