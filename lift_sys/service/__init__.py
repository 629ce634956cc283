"""The service: the one application layer every front calls (CLI, HTTP, Modal).

Request -> prompt + compiled grammar -> engine -> validated result. It
knows no HTTP and no Modal; its errors are :mod:`lift_sys.errors`.
"""

from lift_sys.service.core import (
    CodeResult,
    GenerateOptions,
    GenerationResult,
    InferenceService,
    IRResult,
)

__all__ = ["CodeResult", "GenerateOptions", "GenerationResult", "IRResult", "InferenceService"]
