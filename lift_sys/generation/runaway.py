"""Runaway output, caught while decoding: the tail repeating itself.

A grammar keeps output *valid*, not *sensible*: a small model can count
``…,51,52,53,…`` inside an IR example, or repeat a phrase, until
``max_tokens`` (issue 11: "flatten an arbitrarily nested list" ran to
1,024 tokens). Waiting for the budget costs tens of seconds and ends in a
truncation; stopping at the first clear loop and resampling costs a few.

The test is periodicity of the tail: the last ``min_span`` or more
characters repeat with a period of at most ``max_period`` characters, at
least ``min_repeats`` times. For short periods (up to ``collapse_up_to``
characters) digit runs are first collapsed to one ``0``, so a counting
array (``0,0,0,…``) is a loop; longer periods must repeat exactly -- a
list of IR examples is periodic once digits are collapsed
(``{"inputs":{"n":0},"output":0,…}`` for n = 0, 1, 2, …: a false
positive measured on the Fibonacci request) but not verbatim. Legitimate
IR text is far from either (a 20-number example array spans ~40 collapsed
characters; the default span is 120).
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d+")


def is_runaway(text: str, *, min_span: int = 120, max_period: int = 60, min_repeats: int = 4,
               collapse_up_to: int = 8) -> bool:
    """Does ``text`` end in a loop? (pure function of the text; tens of µs on a 400-char tail)."""
    raw = text[-(max_period * min_repeats + min_span) * 3:]
    collapsed = _DIGITS.sub("0", raw)
    for period in range(1, max_period + 1):
        span = max(min_span, period * min_repeats)
        tail = collapsed if period <= collapse_up_to else raw
        if span > len(tail):
            break
        window = tail[len(tail) - span:]
        if window[period:] == window[:-period]:
            return True
    return False


class RunawayWatch:
    """An ``on_text`` hook: feeds the pieces, checks every ``every`` pieces, remembers whether it fired."""

    def __init__(self, every: int = 8, **limits: int) -> None:
        self.every = every
        self.limits = limits
        self.text: list[str] = []
        self.fired = False
        self._n = 0

    def feed(self, piece: str) -> bool:
        self.text.append(piece)
        self._n += 1
        if not self.fired and self._n % self.every == 0:
            self.fired = is_runaway("".join(self.text[-400:]), **self.limits)
        return self.fired
