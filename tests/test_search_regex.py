"""Search-preserving pattern rewrites: a repeat at an unanchored end cut to its minimum."""

from __future__ import annotations

import random
import re

import pytest

from lift_sys.generation.grammar.search_regex import trim_schema_patterns, trim_search_repeats


@pytest.mark.parametrize("pattern, trimmed", [
    ("[A-Za-z0-9-_.:]{1,255}", "[A-Za-z0-9-_.:]"),
    ("^ab+", "^ab"),
    ("x{2,}y$", "x{2}y$"),
    ("a+|b{3,9}", "a|b{3}"),
    (r"\d{2,4}-x", r"\d{2}-x"),
    ("(?:ab){2,5}", "(?:ab){2}"),
    ("[a-z]+?", "[a-z]"),
])
def test_a_repeat_at_an_unanchored_end_is_cut_to_its_minimum(pattern, trimmed):
    assert trim_search_repeats(pattern) == trimmed


@pytest.mark.parametrize("pattern", [
    "^a{1,5}$",  # anchored at both ends: the count matters
    "a{0,5}", "a*b", "ab?",  # a minimum of none: not read here
    r"(?=a)b+", r"(a)\1+", r"\bfoo+", r"\p{L}+", "(?i)a+", "(?<n>a)+",  # syntax not read here
    "a{5}", "[a-", "a(b", "",
])
def test_anything_else_is_left_as_written(pattern):
    assert trim_search_repeats(pattern) == pattern


def test_the_rewrite_keeps_the_search_language_on_random_patterns():
    """Checked against Python's ``re.search`` on patterns it reads the same way as ECMA-262."""
    atoms = ["a", "b", "[ab]", "[a-]", r"\-", "(?:ab)", "(a|b)", ".", r"\d"]
    quants = ["", "+", "{1,3}", "{2,}", "{2,4}", "*", "?", "{2}", "+?"]
    rng = random.Random(20261205)
    changed = 0
    for _ in range(2000):
        branches = [("^" if rng.random() < .3 else "")
                    + "".join(rng.choice(atoms) + rng.choice(quants) for _ in range(rng.randint(1, 3)))
                    + ("$" if rng.random() < .3 else "") for _ in range(rng.randint(1, 2))]
        pattern = "|".join(branches)
        trimmed = trim_search_repeats(pattern)
        changed += trimmed != pattern
        p, q = re.compile(pattern), re.compile(trimmed)
        for _ in range(40):
            s = "".join(rng.choice("ab-1") for _ in range(rng.randint(0, 8)))
            assert bool(p.search(s)) == bool(q.search(s)), (pattern, trimmed, s)
    assert changed > 500  # the check is not vacuous


def test_only_subschema_patterns_are_rewritten_and_keys_never_merge():
    schema = {"patternProperties": {"a+": {}, "a": {"pattern": "b+"}},
              "properties": {"pattern": {"pattern": "c{1,9}"}}, "const": {"pattern": "d+"}}
    out = trim_schema_patterns(schema)
    assert list(out["patternProperties"]) == ["a+", "a"]  # "a+" -> "a" would have merged two keys
    assert out["patternProperties"]["a"] == {"pattern": "b"}
    assert out["properties"] == {"pattern": {"pattern": "c"}}  # a property *named* pattern keeps its name
    assert out["const"] == {"pattern": "d+"}  # data
    assert trim_schema_patterns({"patternProperties": {"x{2,}": {}}}) == {"patternProperties": {"x{2}": {}}}
