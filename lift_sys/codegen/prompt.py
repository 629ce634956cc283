"""The prompts and grammars for turning an IR into a Python function.

Two output formats, measured against each other (``lift-sys bench quality``):

* **raw** (the default): the function as plain Python in one fenced block,
  under a regular grammar ``CODE_BLOCK_REGEX`` (the fence, then anything
  without a triple backtick, then the closing fence: generation ends there).
  The model writes code the way it was trained to see it.
* **json**: ``{"code": "<source>"}``, the same constrained path as the IR.
  Code inside a JSON string must be escaped (``\n``, ``\"``), which
  breaks a small model's code (issue 11).

The API and CLI answer ``{code}`` either way.
"""

from __future__ import annotations

import json
import re
from typing import Literal

from lift_sys.ir.models import IRSpec
from lift_sys.ir.prompt import EXAMPLE_IR

CODE_SCHEMA: dict = {
    "type": "object",
    "properties": {"code": {"type": "string", "description": "Python source defining the function"}},
    "required": ["code"],
    "additionalProperties": False,
}

SYSTEM = """You implement one Python function from its IR (a JSON specification).
Rules:
- define exactly one top-level function with the IR's signature.name and its parameters in order, with the type hints given
- satisfy every assertion and every example (raise the named exception where an example says raises)
- standard library only; imports go inside the code string before the function
- nothing but the function: no main(), no prints, no input(), no tests
- inside the code use single quotes for string literals
Answer with a JSON object: {"code": "<the Python source>"}"""

EXAMPLE_CODE = (
    "def count_vowels(text: str) -> int:\n"
    "    if not isinstance(text, str):\n"
    "        raise TypeError('text must be a str')\n"
    "    return sum(1 for ch in text.lower() if ch in 'aeiou')\n"
)


def code_messages(ir: IRSpec, feedback: str | None = None, context: str | None = None) -> list[dict[str, str]]:
    """Chat messages asking for the code of ``ir``.

    ``feedback``: the checks a previous attempt failed; ``context``: the
    original request, when the caller has it (the IR is a summary of it).
    """
    spec = ir.model_dump(mode="json", include=set(IRSpec.model_fields))
    user = "IR:\n" + json.dumps(spec, separators=(",", ":"))
    if context:
        user = "Original request:\n" + context.strip() + "\n\n" + user
    if feedback:
        user += "\n\nA previous attempt failed these checks; fix them:\n" + feedback
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "IR:\n" + json.dumps(EXAMPLE_IR, separators=(",", ":"))},
        {"role": "assistant", "content": json.dumps({"code": EXAMPLE_CODE})},
        {"role": "user", "content": user},
    ]


CodeFormat = Literal["raw", "json"]

# A fenced block: the opening fence, any text without a triple backtick, the closing fence.
CODE_BLOCK_REGEX = r"```python\n(?:[^`]|`[^`]|``[^`])*\n```"

RAW_SYSTEM = """You implement one Python function from its IR (a JSON specification).
Rules:
- define exactly one top-level function with the IR's signature.name and its parameters in order, with the type hints given
- satisfy every assertion and every example (raise the named exception where an example says raises)
- standard library only; imports go before the function
- nothing but the function: no main(), no prints, no input(), no tests
Answer with the code in one ```python block."""


def fenced(code: str) -> str:
    return "```python\n" + code.rstrip("\n") + "\n```"


def unfence(text: str) -> str:
    """The source inside the fenced block (the grammar guarantees the fences)."""
    body = text.strip()
    if body.startswith("```python"):
        body = body[len("```python"):]
    if body.endswith("```"):
        body = body[:-3]
    return body.strip("\n") + "\n"


def raw_code_messages(ir: IRSpec, feedback: str | None = None, context: str | None = None) -> list[dict[str, str]]:
    """Like :func:`code_messages`, answered with a fenced Python block instead of a JSON object."""
    messages = code_messages(ir, feedback, context)
    messages[0] = {"role": "system", "content": RAW_SYSTEM}
    messages[2] = {"role": "assistant", "content": fenced(EXAMPLE_CODE)}
    return messages


# ---------------------------------------------------------------- candidates written from the request

REQUEST_SYSTEM = """You write one Python function that does what the request asks.
Write the whole function, its def line included, and the imports it needs (standard library only).
Nothing but the function: no main(), no prints, no input(), no tests.
Answer with the code in one ```python block."""

_REQUEST_SHOT = (
    "def count_vowels(text: str) -> int:\n"
    "    \"\"\" Count the vowels (a, e, i, o, u, either case) in text.\n"
    "    >>> count_vowels('Hello')\n    2\n    \"\"\"\n"
)
_REQUEST_SHOT_CODE = "def count_vowels(text: str) -> int:\n    return sum(1 for ch in text.lower() if ch in 'aeiou')\n"


def def_line(ir: IRSpec) -> str:
    """The IR's signature as a Python ``def`` line (what a candidate must define)."""
    s = ir.signature
    params = ", ".join(f"{p.name}: {p.type_hint}" if p.type_hint and p.type_hint != "Any" else p.name
                       for p in s.parameters)
    returns = f" -> {s.returns}" if s.returns and s.returns != "Any" else ""
    return f"def {s.name}({params}){returns}:"


def request_code_messages(request: str, ir: IRSpec, feedback: str | None = None) -> list[dict[str, str]]:
    """Chat messages asking for the function straight from the user's request, as a fenced block.

    The model sees the request the way it was trained to (a task, or a
    ``def`` with a docstring), not a JSON summary of it: on HumanEval 0-19
    with the 0.5B model, writing from the prompt passed 65% against 50%
    for code written from the IR (docs/benchmarks.md). The IR still
    decides what the function is called -- its ``def`` line is added
    when the request does not already spell it -- and stays the oracle
    the candidate is verified against.
    """
    user = request.strip("\n")
    if not re.search(rf"^\s*def\s+{re.escape(ir.signature.name)}\s*\(", request, re.M):
        user += "\n\nThe function to write: " + def_line(ir)
    if feedback:
        user += "\n\nA previous attempt failed these checks; fix them:\n" + feedback
    return [
        {"role": "system", "content": REQUEST_SYSTEM},
        {"role": "user", "content": _REQUEST_SHOT},
        {"role": "assistant", "content": fenced(_REQUEST_SHOT_CODE)},
        {"role": "user", "content": user},
    ]
