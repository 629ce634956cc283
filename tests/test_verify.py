"""Verification in the sandbox catches what it must, and passes correct code (no model)."""

from __future__ import annotations

import pytest

from lift_sys.codegen.sandbox import Limits
from lift_sys.codegen.verify import verify_code
from lift_sys.ir import IRSpec
from lift_sys.ir.prompt import EXAMPLE_IR

IR = IRSpec.model_validate(EXAMPLE_IR)
GOOD = """
def count_vowels(text: str) -> int:
    if not isinstance(text, str):
        raise TypeError('text must be a str')
    return sum(1 for ch in text.lower() if ch in 'aeiou')
"""
FAST = Limits(wall_s=8.0, cpu_s=4, memory_bytes=256 * 1024 * 1024)


def failed(report):
    return {c.name: c.detail for c in report.failures()}


def test_correct_code_passes_every_check():
    r = verify_code(GOOD, IR, limits=FAST)
    assert r.verified, r.to_dict()
    names = [c.name for c in r.checks if c.scope == "code"]
    for n in ("parses", "defines_function", "signature_matches", "imports_allowed", "runs",
              "example[0]", "example[1]", "example[2]", "postcondition[1] on example[0]"):
        assert n in names


def test_wrong_return_value():
    r = verify_code(GOOD.replace("'aeiou'", "'aei'"), IR, limits=FAST)
    assert not r.verified
    assert "returned 1, expected 2" in failed(r)["example[0]"]


def test_missing_exception():
    r = verify_code(GOOD.replace("raise TypeError('text must be a str')", "return 0"), IR, limits=FAST)
    assert "expected TypeError to be raised" in failed(r)["example[2]"]


def test_wrong_name_extra_parameter_syntax_error():
    assert "no top-level def count_vowels()" in failed(verify_code(GOOD.replace("def count_vowels", "def vowels"), IR))["defines_function"]
    assert "IR says (text)" in failed(verify_code(GOOD.replace("(text: str)", "(text: str, extra=1)"), IR))["signature_matches"]
    assert "line" in failed(verify_code("def count_vowels(text):\n  return (", IR))["parses"]


def test_infinite_loop_times_out():
    r = verify_code("def count_vowels(text):\n    while True:\n        pass\n", IR, limits=FAST, call_timeout_s=0.5)
    assert "timeout" in failed(r)["example[0]"]


def test_huge_allocation_hits_the_memory_limit():
    r = verify_code("def count_vowels(text):\n    x = bytearray(10 * 1024**3)\n    return len(x)\n", IR, limits=FAST)
    assert "memory" in failed(r)["example[0]"].lower()


@pytest.mark.parametrize("code, needle", [
    ("import os\ndef count_vowels(text):\n    os.system('echo hi')\n    return 0\n", "import of 'os' is not allowed"),
    ("import socket\ndef count_vowels(text):\n    return 0\n", "import of 'socket' is not allowed"),
    ("def count_vowels(text):\n    __import__('os').system('echo hi')\n    return 0\n", "__import__() is not allowed"),
])
def test_os_system_and_sockets_are_refused(code, needle):
    assert needle in failed(verify_code(code, IR, limits=FAST))["imports_allowed"]


def test_sockets_fail_at_runtime_even_when_smuggled():
    code = "import json\ndef count_vowels(text):\n    s = json.__loader__.__class__\n    import_ = getattr(__builtins__, '__import__', None) or __builtins__['__import__']\n    sock = import_('socket').socket()\n    return 2\n"
    r = verify_code(code, IR, limits=FAST)
    assert not r.verified
    assert "PermissionError" in failed(r)["example[0]"] or "blocked" in failed(r)["example[0]"]


def test_printing_100_mb_is_stopped():
    code = "def count_vowels(text):\n    for _ in range(100):\n        print('x' * (1024 * 1024))\n    return 2\n"
    r = verify_code(code, IR, limits=FAST)
    assert "output limit" in failed(r)["example[0]"]


def test_fork_bomb_is_contained():
    code = ("def count_vowels(text):\n    import os\n    while True:\n        os.fork()\n")
    r = verify_code(code, IR, limits=FAST)  # refused statically (os)
    assert not r.verified
    smuggled = ("def count_vowels(text):\n    f = getattr(__builtins__, '__import__', None) or __builtins__['__import__']\n"
                "    while True:\n        f('os').fork()\n")
    r = verify_code(smuggled, IR, limits=FAST)
    assert not r.verified and "blocked" in failed(r)["example[0]"]
