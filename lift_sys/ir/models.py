"""Pydantic v2 models of the IR and the JSON Schema generated from them.

Two schemas come out of here:

* :func:`ir_generation_schema` -- what the model is constrained to produce
  (:class:`IRSpec`, no ``metadata``: the system fills that, not the model).
* :func:`ir_schema` -- the full stored document (:class:`IR`).

Both stay inside the JSON Schema keywords that *every* grammar backend
enforces (type, properties, required, additionalProperties, items, enum,
anyOf, $ref/$defs, pattern, maxItems). That is checked by the
schema lint in the tests, so a field added here with an unenforceable
keyword fails CI instead of producing unconstrained output.
"""

from __future__ import annotations

from datetime import datetime, timezone
from enum import Enum
import copy
from functools import lru_cache
from typing import Annotated, Any, Optional

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic.json_schema import GenerateJsonSchema

# Identifiers: snake_case Python names. A pattern alone (no min/maxLength on
# the same string) is what xgrammar can enforce.
SNAKE_CASE = r"^[a-z_][a-z0-9_]*$"

# No maxLength on free text: xgrammar expands a length bound into a counted
# repetition, and the IR schema with maxLength on its strings took 11 s to
# compile (44 ms without). max_tokens bounds a rambling string instead, and
# is reported as truncation.
Text = str
ShortText = str
Identifier = Annotated[str, Field(pattern=SNAKE_CASE)]

# Any JSON value, spelled out as a recursive $def rather than the empty schema
# `{}`: every backend then applies the *same* compact separators inside it
# (xgrammar's built-in "any JSON" writes ", "), and converters that do not
# know `{}` (llama.cpp's json_schema -> GBNF) still compile it.
JSON_VALUE_DEF = {
    "anyOf": [
        {"type": "string"},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": "#/$defs/JsonValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/$defs/JsonValue"}},
    ]
}
_JSON_VALUE_MARK = "x-lift-json-value"  # placeholder pydantic leaves alone; swapped for the $ref
JsonValue = Annotated[Any, WithJsonSchema({_JSON_VALUE_MARK: True})]
ExceptionName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$")]


_SYSTEM_FIELD = "x-lift-system-field"  # filled by the system: left out of the generation schema


class _Strict(BaseModel):
    # extra="forbid" -> additionalProperties: false, so the grammar admits
    # exactly the declared keys.
    model_config = ConfigDict(extra="forbid")


class Intent(_Strict):
    """What the function is for, in words."""

    summary: Text = Field(description="One sentence: what the function does.")
    rationale: Text = Field("", description="Why it exists / how it should behave in edge cases.")


class Parameter(_Strict):
    """One positional-or-keyword parameter."""

    name: Identifier = Field(description="snake_case parameter name.")
    type_hint: ShortText = Field("Any", description="A Python annotation, e.g. 'int' or 'list[str]'.")
    description: Text = Field("", description="What the parameter means.")


class Signature(_Strict):
    """The function's name, parameters and return annotation."""

    name: Identifier = Field(description="snake_case function name.")
    parameters: list[Parameter] = Field(max_length=8, description="Parameters in order.")
    returns: ShortText = Field(description="Return annotation, e.g. 'int' or 'None'.")


class EffectKind(str, Enum):
    reads = "reads"
    writes = "writes"
    raises = "raises"
    mutates = "mutates"
    io = "io"


class Effect(_Strict):
    """Something the function does beyond returning a value."""

    kind: EffectKind
    description: Text


class AssertionKind(str, Enum):
    precondition = "precondition"
    postcondition = "postcondition"
    invariant = "invariant"


class Assertion(_Strict):
    """An executable claim: a Python boolean expression.

    Preconditions are over the parameters; postconditions may also use
    ``result`` (the return value).
    """

    kind: AssertionKind
    predicate: ShortText = Field(description="Python boolean expression over parameters and `result`.")
    description: Text = ""


class Example(_Strict):
    """A concrete call: inputs by parameter name, and the output or the exception."""

    inputs: dict[str, JsonValue] = Field(description="Argument values by parameter name (JSON).")
    output: JsonValue = Field(None, description="Expected return value (JSON), null when it raises.")
    raises: Optional[ExceptionName] = Field(
        None, description="Exception class name when the call raises, else null."
    )
    given: bool = Field(
        False, description="Stated in the request (carried verbatim), not invented by the model.",
        json_schema_extra={_SYSTEM_FIELD: True},
    )


class HoleKind(str, Enum):
    behavior = "behavior"
    type = "type"
    constant = "constant"
    implementation = "implementation"


class Hole(_Strict):
    """Something the request leaves open, to be decided later."""

    identifier: Identifier
    type_hint: ShortText
    description: Text
    kind: HoleKind


class IRSpec(_Strict):
    """The part of the IR the model writes."""

    intent: Intent
    signature: Signature
    effects: list[Effect] = Field(default_factory=list, max_length=6)
    assertions: list[Assertion] = Field(default_factory=list, max_length=8)
    # The model writes at most GENERATED_EXAMPLES; examples given in the request come on top.
    examples: list[Example] = Field(default_factory=list, max_length=16)
    holes: list[Hole] = Field(default_factory=list, max_length=6)


class IRMetadata(_Strict):
    """Filled by the system after generation, never by the model."""

    language: str = "python"
    model: str = ""
    grammar_backend: str = ""
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))


class IR(IRSpec):
    """The stored IR document: the model's spec plus system metadata."""

    metadata: IRMetadata = Field(default_factory=IRMetadata)

    @classmethod
    def from_spec(cls, spec: IRSpec, **metadata: Any) -> "IR":
        # The spec is validated already: reuse its parts instead of dumping and
        # re-validating the whole document (this runs on every IR request).
        return cls.model_construct(**dict(spec), metadata=IRMetadata(**metadata))


class _NoTitles(GenerateJsonSchema):
    """Schema generator that drops ``title`` (noise for the grammar and the prompt)."""

    def field_title_should_be_set(self, schema: Any) -> bool:  # noqa: D401
        return False

    def generate(self, schema: Any, mode: Any = "validation") -> dict[str, Any]:
        out = super().generate(schema, mode=mode)
        _strip_titles(out)
        return out


def _strip_titles(node: Any) -> None:
    """Drop titles; turn JsonValue placeholders into ``$ref: #/$defs/JsonValue``."""
    if isinstance(node, dict):
        node.pop("title", None)
        if node.pop(_JSON_VALUE_MARK, False):
            node["$ref"] = "#/$defs/JsonValue"
        for key, value in node.items():
            if key in ("properties", "$defs"):
                for sub in value.values():
                    _strip_titles(sub)
            else:
                _strip_titles(value)
    elif isinstance(node, list):
        for item in node:
            _strip_titles(item)


GENERATED_EXAMPLES = 6
# Arrays inside example values, as generated: a small model otherwise counts "…,51,52,53,…" or repeats
# "2.0,3.0,4.0,5.0" until max_tokens (HumanEval/0: all three IR samples ran away in one list). A bound
# in the grammar ends such a list; compile stays fast (llguidance 4 ms, xgrammar 32 ms with it). Given
# examples, carried in from the request after generation, are not bound by it.
GENERATED_ARRAY_ITEMS = 16
# A predicate, as generated: one line that does not end in a comma. The 0.5B model ends predicates with
# "," (a one-element tuple: always true) so often that resampling could not fix it -- "merge two sorted
# lists" wrote a trailing comma in all three greedy/sampled IRs (119 s, then truncated). Decoding now
# cannot write one; other malformations (a constant, an unknown name) are still resampled after decoding.
GENERATED_PREDICATE = r"^[^\n]*[^,\n ]$"


def _system_fields(node: Any, drop: bool) -> None:
    """Fields the system fills (``given``): removed from the generation schema (the model never writes
    them), kept without the marker in the stored document's schema."""
    if isinstance(node, dict):
        props = node.get("properties")
        if isinstance(props, dict):
            for key in [k for k, v in props.items() if isinstance(v, dict) and v.get(_SYSTEM_FIELD)]:
                if drop:
                    del props[key]
                else:
                    props[key].pop(_SYSTEM_FIELD)
        for value in node.values():
            _system_fields(value, drop)
    elif isinstance(node, list):
        for item in node:
            _system_fields(item, drop)


def _require_everything(node: Any) -> None:
    """Every property required, no ``default``: the model writes every field.

    The pydantic models give optional fields defaults so a hand-written IR
    may leave out ``"raises": null`` or a rationale; the *generation*
    schema still asks the model for all of them (same grammar as before).
    """
    if isinstance(node, dict):
        node.pop("default", None)
        if isinstance(node.get("properties"), dict):
            node["required"] = list(node["properties"])
        for value in node.values():
            _require_everything(value)
    elif isinstance(node, list):
        for item in node:
            _require_everything(item)


@lru_cache(maxsize=None)
def _schema_json(model_name: str) -> dict[str, Any]:
    model = {"IRSpec": IRSpec, "IR": IR}[model_name]
    schema = model.model_json_schema(schema_generator=_NoTitles)
    schema.setdefault("$defs", {})["JsonValue"] = JSON_VALUE_DEF
    _system_fields(schema, drop=model_name == "IRSpec")
    if model_name == "IRSpec":
        _require_everything(schema)
        schema["properties"]["examples"]["maxItems"] = GENERATED_EXAMPLES
        schema["$defs"]["JsonValue"] = copy.deepcopy(JSON_VALUE_DEF)
        for alt in schema["$defs"]["JsonValue"]["anyOf"]:
            if alt.get("type") == "array":
                alt["maxItems"] = GENERATED_ARRAY_ITEMS
        schema["$defs"]["Assertion"]["properties"]["predicate"]["pattern"] = GENERATED_PREDICATE
    return schema


def ir_generation_schema() -> dict[str, Any]:
    """JSON Schema the model is constrained to (IRSpec). A fresh copy each call."""
    import copy

    return copy.deepcopy(_schema_json("IRSpec"))


def ir_schema() -> dict[str, Any]:
    """JSON Schema of the full stored IR document."""
    import copy

    return copy.deepcopy(_schema_json("IR"))
