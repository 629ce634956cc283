"""The prompt that asks a model for an IR.

Kept short on purpose: small models follow a compact field list and one
worked example better than a long JSON Schema dump, and the grammar already
enforces the structure -- the prompt only has to steer the *content*.
The system message and the example are identical across requests, so the
local engine reuses their KV cache and only prefills the new request.
"""

from __future__ import annotations

import json



SYSTEM = """You turn a request for a Python function into an IR: one JSON object that specifies the function.
Fields:
- intent: {summary: one sentence, rationale: edge cases and why}
- signature: {name: snake_case function name, parameters: [{name: snake_case, type_hint: Python annotation, description}], returns: Python annotation}
- effects: [{kind: reads|writes|raises|mutates|io, description}] for what the function does besides returning (exceptions it raises count)
- assertions: [{kind: precondition|postcondition|invariant, predicate: Python boolean expression over the parameter names and `result`, description}]
- examples: [{inputs: {parameter name: JSON value}, output: JSON value or null, raises: exception class name or null}] 2 or 3 concrete calls with correct outputs
- holes: [{identifier, type_hint, description, kind: behavior|type|constant|implementation}] only for what the request leaves undecided, else []
Answer with the JSON object only."""

EXAMPLE_REQUEST = "a function that counts the vowels in a string, raising TypeError if it is not a string"

EXAMPLE_IR = {
    "intent": {
        "summary": "Count the vowels (a, e, i, o, u, either case) in a string.",
        "rationale": "Non-string input is a caller error, so it raises TypeError instead of guessing.",
    },
    "signature": {
        "name": "count_vowels",
        "parameters": [{"name": "text", "type_hint": "str", "description": "The string to scan."}],
        "returns": "int",
    },
    "effects": [{"kind": "raises", "description": "TypeError when text is not a str."}],
    "assertions": [
        {"kind": "precondition", "predicate": "isinstance(text, str)", "description": "Input is a string."},
        {"kind": "postcondition", "predicate": "0 <= result <= len(text)", "description": "Count is bounded by the length."},
    ],
    "examples": [
        {"inputs": {"text": "Hello"}, "output": 2, "raises": None},
        {"inputs": {"text": ""}, "output": 0, "raises": None},
        {"inputs": {"text": 5}, "output": None, "raises": "TypeError"},
    ],
    "holes": [],
}


_EXAMPLE_IR_TEXT = json.dumps(EXAMPLE_IR, separators=(",", ":"))


def ir_messages(request: str) -> list[dict[str, str]]:
    """Chat messages asking for the IR of ``request`` (system + one worked example + the request)."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Request: {EXAMPLE_REQUEST}"},
        {"role": "assistant", "content": _EXAMPLE_IR_TEXT},
        {"role": "user", "content": f"Request: {request.strip()}"},
    ]
