"""Per-request generation options: one type for every front, engine and check.

The bounds live here once. :meth:`GenerateOptions.check` is the one check
every path goes through (the service calls it before any work); the HTTP
schemas reuse the same constants so /docs shows them.
"""

from __future__ import annotations

from dataclasses import dataclass

from lift_sys.errors import InvalidRequest

MAX_TEMPERATURE = 5.0
SEED_MAX = 2**63 - 1  # seeds are int64 on remote servers; numpy refuses negative ones


@dataclass(frozen=True)
class GenerateOptions:
    """How to sample, and under which grammar backend. ``temperature == 0`` is greedy (deterministic)."""

    max_tokens: int = 1024
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    grammar_backend: str | None = None  # None: the service default; engines ignore it

    def check(self, context_length: int | None = None) -> "GenerateOptions":
        """Raise InvalidRequest naming the first option out of bounds; return self."""
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise InvalidRequest(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}")
        if not 0 <= self.temperature <= MAX_TEMPERATURE:
            raise InvalidRequest(f"temperature must be between 0 and {MAX_TEMPERATURE:g}")
        if not 0 < self.top_p <= 1:
            raise InvalidRequest("top_p must be in (0, 1]")
        if self.seed is not None and not (isinstance(self.seed, int) and 0 <= self.seed <= SEED_MAX):
            raise InvalidRequest(f"seed must be an integer in [0, 2^63), got {self.seed!r}")
        if context_length is not None and self.max_tokens >= context_length:
            raise InvalidRequest(f"max_tokens={self.max_tokens} must be below the model's context length ({context_length})")
        return self
