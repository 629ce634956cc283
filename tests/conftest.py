"""Shared fixtures.

The real-model fixtures load the embedded model once per test session
(module-level memo in lift_sys.service.runtime), so the few real-model
tests share one llama.cpp context.
"""

from __future__ import annotations

import importlib.util
import os

import pytest


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.fixture(scope="session")
def engine():
    from lift_sys.service.runtime import local_engine

    return local_engine()


@pytest.fixture(scope="session")
def service(engine):
    from lift_sys.service.core import InferenceService

    return InferenceService(engine)


requires_xgrammar = pytest.mark.skipif(
    not _has("xgrammar") and not os.environ.get("CI"), reason="xgrammar extra not installed"
)
