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
positive measured on the Fibonacci request) but not verbatim -- unless
the window holds no ``"``: a long period that repeats up to its digits
*inside one JSON string* is a counting loop in prose or a predicate, not
a list of values (JSON output only: in raw code a window without a quote
means nothing). Measured: the Fibonacci request's greedy IR wrote
``fibonacci(n-20) or fibonacci(n-21) == fibonacci(n-22) or …`` to the
800-token budget (17 s) in a predicate, a 36-character period that never
repeats verbatim. Legitimate IR text is far from all of these (a
20-number example array spans ~40 collapsed characters; the default span
is 120, so a string needs 120 characters of one template to trip it).
"""

from __future__ import annotations

import re
from typing import Any

_DIGITS = re.compile(r"\d+")


def is_runaway(text: str, *, min_span: int = 120, max_period: int = 60, min_repeats: int = 4,
               collapse_up_to: int = 8, json_output: bool = False) -> bool:
    """Does ``text`` end in a loop? (pure function of the text; tens of µs on a 400-char tail).

    ``json_output``: the text is JSON, so a window without ``"`` lies inside one string (the
    counting-template rule applies; in raw code a quote-free window means nothing).
    """
    raw = text[-(max_period * min_repeats + min_span) * 3:]
    collapsed = _DIGITS.sub("0", raw)
    for period in range(1, max_period + 1):
        span = max(min_span, period * min_repeats)
        if span > len(raw):
            break
        tail = raw[len(raw) - span:]
        if period > collapse_up_to and tail[period:] == tail[:-period]:
            return True  # a long period repeating verbatim
        if span > len(collapsed) or not (period <= collapse_up_to or json_output):
            continue  # (a long period in raw code only counts verbatim, above)
        window = collapsed[len(collapsed) - span:]
        if window[period:] == window[:-period] and (period <= collapse_up_to or '"' not in window):
            return True  # a short counting period, or a template counting inside one string
    return False


class RunawayWatch:
    """An ``on_text`` hook: feeds the pieces, checks every ``every`` pieces, remembers whether it fired."""

    def __init__(self, every: int = 8, **limits: Any) -> None:
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
