"""The IR: a typed JSON specification of one function.

The pydantic models in :mod:`lift_sys.ir.models` are the single source of
truth; the JSON Schema the grammar backends enforce is generated from them.
"""

from lift_sys.ir.models import (
    IR,
    Assertion,
    Effect,
    Example,
    Hole,
    Intent,
    IRMetadata,
    IRSpec,
    Parameter,
    Signature,
    ir_generation_schema,
    ir_schema,
)
from lift_sys.ir.validate import IRCheck, check_ir, parse_ir_json

__all__ = [
    "IR",
    "IRSpec",
    "IRMetadata",
    "Intent",
    "Signature",
    "Parameter",
    "Effect",
    "Assertion",
    "Example",
    "Hole",
    "ir_schema",
    "ir_generation_schema",
    "IRCheck",
    "check_ir",
    "parse_ir_json",
]
