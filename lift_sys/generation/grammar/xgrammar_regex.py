"""A JSON Schema ``pattern`` as xgrammar reads it right, or a reason it cannot be.

Measured on xgrammar 0.2.8 (``{"type": "string", "pattern": P}``, byte vocabulary):

* **A pattern is a whole-string match**, where JSON Schema searches: ``a+``
  rejected ``"xxaayy"`` (JSTS pattern#2), ``^a`` rejected ``"ax"``. Leading
  ``^`` / trailing ``$`` are dropped, and an anchor anywhere else matches
  nothing (``(?:^a)`` rejected ``"a"``). :func:`search_as_match` writes the
  search as a match: every top-level branch not anchored at an end gets
  ``[\\s\\S]*`` there -- exact for the strings xgrammar can write at all.
* **No escape is ever written inside a pattern-constrained string**: with
  ``^[\\s\\S]*$``, ``"a\\nb"``, ``"a\\"b"``, ``"a\\\\b"`` and ``"a\\u00e9"`` were
  all rejected (``"aé"`` accepted). A pattern that admits a quote, a
  backslash or a control character therefore loses valid values;
  :func:`may_need_escape` says so (conservatively: any ``.``, negated class,
  ``\\s``/``\\S``-style class or range over those characters), and the lint
  leaves such a pattern to validation. llguidance has neither gap.
"""

from __future__ import annotations

from typing import Iterator

ANY = r"[\s\S]*"
_WIDE_ESCAPES = set("sSwWdDpPxuc0")  # classes or code points that can reach '"', '\', or a control character
_CONTROL_ESCAPES = set("nrtfvb")


def _class_start(pattern: str, i: int) -> int:
    """Index after the opening of the class at ``i``: ``[``, an optional ``^``, a leading literal ``]``."""
    i += 1
    if pattern[i: i + 1] == "^":
        i += 1
    if pattern[i: i + 1] == "]":
        i += 1
    return i


def _syntax(pattern: str) -> Iterator[tuple[int, str]]:
    """(index, character) of every character outside escapes and classes, then a NUL if a class is left open."""
    i, in_class = 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            i, in_class = _class_start(pattern, i), True
            continue
        else:
            yield i, c
        i += 1
    if in_class:
        yield len(pattern), "\0"


def _branches(pattern: str) -> list[str] | None:
    """The top-level alternatives of ``pattern`` (None if its brackets do not balance)."""
    out, start, depth = [], 0, 0
    for i, c in _syntax(pattern):
        if c == "(":
            depth += 1
        elif c == ")" or c == "\0":
            depth -= 1
            if depth < 0:
                return None
        elif c == "|" and depth == 0:
            out.append(pattern[start:i])
            start = i + 1
    return None if depth else [*out, pattern[start:]]


def _anchors_inside(core: str) -> bool:
    """An unescaped ``^`` or ``$`` outside a character class."""
    return any(c in "^$" for _, c in _syntax(core))


def _ends_with_anchor(branch: str) -> bool:
    if not branch.endswith("$"):
        return False
    slashes = len(branch[:-1]) - len(branch[:-1].rstrip("\\"))
    return slashes % 2 == 0


def anchored_branches(pattern: str) -> list[tuple[bool, str, bool]] | None:
    """Each top-level branch as (anchored at the start, the rest, anchored at the end); None if unbalanced."""
    branches = _branches(pattern)
    if branches is None:
        return None
    out = []
    for branch in branches:
        start = branch.startswith("^")
        core = branch[1:] if start else branch
        end = _ends_with_anchor(core)
        out.append((start, core[:-1] if end else core, end))
    return out


def search_as_match(pattern: str) -> str | None:
    """``pattern`` (a search) as a regex whose *whole-string* match accepts the same strings; None if unsure."""
    branches = anchored_branches(pattern)
    if branches is None:
        return None
    out = []
    for start, core, end in branches:
        if _anchors_inside(core):
            return None
        out.append(("" if start else ANY) + "(?:" + core + ")" + ("" if end else ANY))
    return out[0] if len(out) == 1 else "(?:" + "|".join(out) + ")"


def _class_may_escape(body: str) -> bool:
    """Whether a (non-negated) class body ``[...]`` can hold '"', '\\', or a control character."""
    i, prev = 0, None
    while i < len(body):
        c = body[i]
        if c == "\\":
            e = body[i + 1: i + 2]
            if e in _WIDE_ESCAPES or e in _CONTROL_ESCAPES or e in ('"', "\\"):
                return True
            prev, i = e, i + 2
            continue
        if c == "-" and prev is not None and i + 1 < len(body):
            hi = body[i + 1]
            if hi == "\\":
                return True  # a range to an escape: do not try to read it
            lo_code, hi_code = ord(prev), ord(hi)
            if any(lo_code <= x <= hi_code for x in (0x22, 0x5C)) or lo_code < 0x20:
                return True
            prev, i = None, i + 2
            continue
        if c == '"' or ord(c) < 0x20:
            return True
        prev, i = c, i + 1
    return False


def may_need_escape(pattern: str) -> bool:
    """Whether ``pattern`` may match a string with '"', '\\' or a control character (conservative: True if unsure)."""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            e = pattern[i + 1: i + 2]
            if e in _WIDE_ESCAPES or e in _CONTROL_ESCAPES or e in ('"', "\\", ""):
                return True
            i += 2
            continue
        if c == "[":
            j = i + 1
            if pattern[j: j + 1] == "^":
                return True
            if pattern[j: j + 1] == "]":
                j += 1
            while j < len(pattern) and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            if _class_may_escape(pattern[i + 1: j]):
                return True
            i = j + 1
            continue
        if c == "." or c == '"' or ord(c) < 0x20:
            return True
        i += 1
    return False


def xgrammar_pattern_gap(pattern: str, *, escapes: bool = True) -> str | None:
    """Why xgrammar would not enforce ``pattern`` exactly (None: it does, once :func:`search_as_match` wrote it).

    ``escapes=False`` for our own schemas: a grammar that cannot write an
    escape there is narrower than the schema, never looser, and the IR's
    predicate pattern (``^[^\\n]*[^,\\n ]$``) is fine without double quotes.
    """
    match = search_as_match(pattern)
    if match is None:
        return "xgrammar reads '^' and '$' only at the ends of a pattern"
    if escapes and may_need_escape(match):
        return ("xgrammar writes no escape inside a pattern-constrained string, and this pattern admits a quote, "
                "backslash or control character" + ("" if match.startswith("(?:") and not match.endswith(ANY)
                                                     else " (it is not anchored with ^...$)"))
    return None
