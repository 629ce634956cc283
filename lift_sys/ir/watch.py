"""A malformed predicate, caught the moment its string closes while the IR is decoded.

Why: on HumanEval 0-39 (``docs/bench/quality.json``) 12 of 40 lifts took
3 IR samples -- the 50-150 s problems -- and most resamples were for a
predicate that is not one Python boolean expression (``'l is sorted in
ascending order'``, ``isinstance(strings, List[str])``, a tuple). The
check ran after the whole IR was written; the examples, the longest part,
come *after* the assertions. Stopping the sample as soon as a bad
predicate's closing quote is decoded saves the rest of it.

The watch also says where the bad predicate's value begins
(``good_until``): the service continues the same sample from there
(:class:`~lift_sys.generation.engines.base.Continuation`) rather than
decoding the intent, signature and earlier assertions again.

Reads the compact JSON the IR grammar writes (field order fixed by the
generation schema: ``signature`` with ``name`` then ``parameters`` before
``assertions``, each assertion ``{"kind":…,"predicate":…}``). A quote
inside a JSON string is escaped, so ``"name":"`` never matches inside a
description. Pure text in, a reason out: no engine, no IR parsing.
"""

from __future__ import annotations

import json
import re

from lift_sys.ir.validate import predicate_problem

_STRING = r'"(?:[^"\\]|\\.)*"'
_NAME = re.compile(r'"name":(' + _STRING + ")")
_PREDICATE = re.compile(r'\{"kind":"(\w+)","predicate":(' + _STRING + ")")


class PredicateWatch:
    """An ``on_text`` hook: ``feed`` returns True once a complete predicate is malformed (``problem`` says why)."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._checked = 0  # predicates already judged
        self._names: list[str] | None = None  # function name, then parameters: fixed once assertions begin
        self.problem: str | None = None
        self.good_until: int | None = None  # with a problem: the text before the bad predicate's value is fine

    def feed(self, piece: str) -> bool:
        self._text.append(piece)
        if self.problem is None and '"' in piece:  # a predicate string can only close on a quote
            self.problem = self._check("".join(self._text))
        return self.problem is not None

    def _check(self, text: str) -> str | None:
        start = text.find('"assertions":[')
        if start < 0:
            return None
        if self._names is None:
            signature = text.find('"signature":{')
            self._names = [json.loads(m) for m in _NAME.findall(text, signature if signature >= 0 else 0, start)]
        if not self._names:
            return None
        fname, params = self._names[0], self._names[1:]
        found = list(_PREDICATE.finditer(text, start))
        for match in found[self._checked:]:
            self._checked += 1
            kind, literal = match.group(1), match.group(2)
            predicate = json.loads(literal)
            why = predicate_problem(predicate, params, fname, kind)
            if why is not None:
                self.good_until = match.start(2) + 1  # through the value's opening quote: only the value is bad
                return f"{predicate!r}: {why}"
        return None
