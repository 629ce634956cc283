"""The prompt and schema for turning an IR into a Python function.

The output is constrained to ``{"code": "<source>"}``: one JSON string
holding the function, so the same constrained path (and the same
truncation/validation rules) serves code as serves IR.
"""

from __future__ import annotations

import json

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
