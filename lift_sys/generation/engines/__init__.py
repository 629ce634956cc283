"""Engines: the Engine protocol and its implementations (llama.cpp local, OpenAI-compatible HTTP)."""

from lift_sys.generation.engines.base import (
    CancelToken,
    ChatMessage,
    Completion,
    Constraint,
    Engine,
    GenerateOptions,
    Timings,
)

__all__ = ["CancelToken", "ChatMessage", "Completion", "Constraint", "Engine", "GenerateOptions", "Timings"]
