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


class SignatureWatch:
    """An ``on_text`` hook: fires once the model's signature is written, so the rest can be fitted to it.

    Why: a request with no ``def`` line gets the generic IR grammar, where
    an example's ``inputs`` may hold any keys and its ``output`` any value
    (:mod:`lift_sys.ir.typed`). Once ``"signature":{...}`` is complete (the
    grammar writes ``"effects"`` next), the watch parses it; the service
    stops the sample there and continues the *same* sample under the
    grammar fitted to that signature -- the kept tokens replay through the
    new matcher and keep their KV, so the stop costs a few tokens, not a
    resample. ``schema`` is the fitted generation schema; ``good_until``
    is the character just after the signature's ``}``.
    Never fires when the signature cannot be fitted (``fitted_ir_schema``
    is None), so such a sample simply runs on.
    """

    _MARK = ',"effects":'

    def __init__(self) -> None:
        self._text = ""
        self._done = False
        self.problem: str | None = None
        self.good_until: int | None = None
        self.schema: dict | None = None

    def feed(self, piece: str) -> bool:
        if self._done:
            return self.problem is not None
        searched = max(0, len(self._text) - len(self._MARK) + 1)  # only where the mark could newly end
        self._text += piece
        at = self._text.find(self._MARK, searched)
        if at < 0:
            return False
        self._done = True  # one look: the signature is complete, fitted or not
        self._fit(self._text, at)
        return self.problem is not None

    def _fit(self, text: str, end: int) -> None:
        from lift_sys.ir.models import Parameter
        from lift_sys.ir.typed import fitted_ir_schema

        start = text.find('"signature":')
        if start < 0:
            return
        start += len('"signature":')
        try:
            sig, stop = json.JSONDecoder().raw_decode(text, start)
        except json.JSONDecodeError:
            return
        if stop != end or not isinstance(sig, dict):
            return
        try:
            params = [Parameter.model_construct(name=str(p["name"]), type_hint=str(p.get("type_hint") or "Any"),
                                                description=str(p.get("description", "")))
                      for p in sig.get("parameters", [])]
            name, returns = str(sig["name"]), sig.get("returns")
        except (KeyError, TypeError, AttributeError):
            return
        schema = fitted_ir_schema(name, params, str(returns) if returns else None)
        if schema is None:
            return
        self.schema, self.good_until = schema, stop
        self.problem = f"signature {name}({', '.join(p.name for p in params)}) written: the rest is fitted to it"


class FirstOf:
    """Several watches as one ``stop_when``: fires with the first that fires (its problem, its good_until)."""

    def __init__(self, *watches) -> None:
        self.watches = [w for w in watches if w is not None]
        self.fired = None

    @property
    def problem(self) -> str | None:
        return self.fired.problem if self.fired is not None else None

    @property
    def good_until(self) -> int | None:
        return self.fired.good_until if self.fired is not None else None

    def feed(self, piece: str) -> bool:
        if self.fired is not None:
            return True
        for w in self.watches:
            if w.feed(piece) and self.fired is None:
                self.fired = w
        return self.fired is not None


def salvage_examples(partial_text: str) -> tuple[dict, int] | None:
    """An IR cut (or stopped looping) inside its ``examples``: the document with the complete ones, and their count.

    Why: the examples come after intent, signature and assertions, and are
    where a small model loops (HumanEval/6 on Zen 4: ``"()()()()…"`` in an
    example's input, all three samples). When every sample fails there,
    the rest of the last one is complete and valid; closing the array
    after the last complete example (and ``holes`` empty) gives an IR
    that fits the schema -- fewer invented examples, reported as such --
    instead of no IR at all. None when the cut is anywhere else.
    """
    head = partial_text.find(',"examples":[')
    if head < 0 or '"holes":' in partial_text[head:]:
        return None
    decoder = json.JSONDecoder()
    first = head + len(',"examples":[')
    pos, end, kept = first, first, 0
    while True:
        try:
            value, after = decoder.raw_decode(partial_text, pos)
        except json.JSONDecodeError:
            break
        if not isinstance(value, dict):
            break
        end, kept = after, kept + 1
        if partial_text[after:after + 1] != ",":
            break
        pos = after + 1
    text = partial_text[:end] + '],"holes":[]}'
    try:
        doc = json.loads(text)
    except json.JSONDecodeError:
        return None
    return (doc, kept) if isinstance(doc, dict) else None
