"""Constraint backends (llguidance, xgrammar): compile cache, schema lint, masks, fast-forward."""

from lift_sys.generation.grammar.base import (
    CompiledGrammar,
    GrammarBackend,
    GrammarSpec,
    Matcher,
    Vocabulary,
    bitmask_allows,
    bitmask_to_bool,
    new_bitmask,
)
from lift_sys.generation.grammar.cache import BACKEND_NAMES, DEFAULT_BACKEND, GrammarCache, get_backend
from lift_sys.generation.grammar.lint import lint_schema

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_BACKEND",
    "CompiledGrammar",
    "GrammarBackend",
    "GrammarCache",
    "GrammarSpec",
    "Matcher",
    "Vocabulary",
    "bitmask_allows",
    "bitmask_to_bool",
    "get_backend",
    "lint_schema",
    "new_bitmask",
]
