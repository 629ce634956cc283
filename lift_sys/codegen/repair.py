"""Generate -> verify -> repair.

Constrained decoding makes output *parse*; verification says whether it is
*right*. On failure the next attempt is told exactly which checks failed
(the evidence from the sandbox) and sampled with a different seed and a
rising temperature, up to ``attempts`` times. The best candidate (most
code checks passed; earliest on ties) is returned with its report and the
whole history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from lift_sys.codegen.sandbox import Limits
from lift_sys.codegen.verify import VerificationReport, verify_code
from lift_sys.errors import LiftError
from lift_sys.ir.models import IRSpec


@dataclass
class Attempt:
    index: int
    code: str | None
    report: VerificationReport | None
    temperature: float
    seed: int | None
    error: str | None = None
    seconds: float = 0.0
    completion_tokens: int = 0
    result: Any = field(default=None, repr=False)  # the CodeResult (usage, timings)
    exception: LiftError | None = field(default=None, repr=False)  # why no code came out

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index, "temperature": self.temperature, "seed": self.seed, "error": self.error,
            "verified": bool(self.report and self.report.verified), "code": self.code,
            "verification": self.report.to_dict() if self.report else None,
            "seconds": round(self.seconds, 3), "completion_tokens": self.completion_tokens,
        }


@dataclass
class PipelineResult:
    code: str | None
    report: VerificationReport | None
    attempts: list[Attempt] = field(default_factory=list)
    best: Attempt | None = None

    @property
    def verified(self) -> bool:
        return bool(self.report and self.report.verified)

    @property
    def repaired(self) -> bool:
        """Verification caught a wrong first candidate and a later attempt fixed it."""
        return self.verified and len(self.attempts) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "verified": self.verified,
                "verification": self.report.to_dict() if self.report else None,
                "attempts": [a.to_dict() for a in self.attempts]}


CodeGenerator = Callable[..., Any]
"""``generate(ir, options, feedback=...) -> CodeResult`` (InferenceService.generate_code)."""


def generate_verified_code(
    generate: CodeGenerator,
    ir: IRSpec,
    options: Any,
    *,
    attempts: int = 3,
    limits: Limits = Limits(),
    on_attempt: Callable[[Attempt], None] | None = None,
) -> PipelineResult:
    history: list[Attempt] = []
    best: Attempt | None = None
    feedback: str | None = None
    for i in range(attempts):
        temperature = options.temperature if i == 0 else min(1.0, 0.4 + 0.2 * i)
        seed = options.seed if i == 0 else (options.seed or 0) + 1000 * i
        opts = replace(options, temperature=temperature, seed=seed)
        t0 = time.perf_counter()
        attempt = Attempt(i, None, None, temperature, seed)
        try:
            result = generate(ir, opts, feedback=feedback)
            attempt.code = result.code
            attempt.result = result
            attempt.completion_tokens = result.generation.completion.completion_tokens
            # the generator already ran the static checks on this code: verification reuses them
            attempt.report = verify_code(result.code, ir, limits=limits, static_checks=getattr(result, "checks", None))
        except LiftError as exc:  # e.g. truncated output: a failed attempt, not the end
            attempt.error = exc.message
            attempt.exception = exc
        attempt.seconds = time.perf_counter() - t0
        history.append(attempt)
        if on_attempt:
            on_attempt(attempt)
        if attempt.report is not None and (best is None or best.report is None or attempt.report.passed > best.report.passed):
            best = attempt
        if attempt.report is not None and attempt.report.verified:
            break
        feedback = attempt.report.feedback() if attempt.report else f"- generation failed: {attempt.error}"
    if best is None:
        return PipelineResult(None, None, history)
    return PipelineResult(best.code, best.report, history, best)
