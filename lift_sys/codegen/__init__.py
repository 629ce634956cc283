"""IR -> code: the prompt, the code object schema, and static checks against the IR."""

from lift_sys.codegen.check import Check, check_code_against_ir
from lift_sys.codegen.prompt import CODE_SCHEMA, code_messages

__all__ = ["CODE_SCHEMA", "Check", "check_code_against_ir", "code_messages"]
