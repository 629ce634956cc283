"""The CLI in-process (Typer's CliRunner) over the fake engine: what each command prints, in milliseconds.

test_cli.py keeps the few real-model, real-subprocess runs; here every
command's output contract is checked without loading a model.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lift_sys import cli
from lift_sys.codegen.prompt import fenced
from lift_sys.generation.engines.fake import FakeEngine
from lift_sys.ir import IR
from lift_sys.ir.prompt import EXAMPLE_IR
from lift_sys.service.core import InferenceService

GOOD = ("def count_vowels(text: str) -> int:\n    if not isinstance(text, str):\n        raise TypeError('no')\n"
        "    return sum(1 for ch in text.lower() if ch in 'aeiou')\n")
REQUEST = "count the vowels in a string: count_vowels('Hello') == 2, raising TypeError for non-strings"


@pytest.fixture
def fake(monkeypatch):
    """Every command's service runs on a fake engine scripted by the test."""
    engines: list[FakeEngine] = []

    def use(script) -> FakeEngine:
        engine = FakeEngine(script)
        engines.append(engine)
        monkeypatch.setattr(cli, "_service", lambda *a, **k: InferenceService(engine))
        return engine

    return use


def invoke(*args: str):
    return CliRunner().invoke(cli.app, list(args), env={"COLUMNS": "200"})


def test_ir_prints_the_ir_on_stdout_and_stats_on_stderr(fake):
    fake([json.dumps(EXAMPLE_IR)])
    r = invoke("ir", REQUEST, "--json-stats")
    assert r.exit_code == 0, r.stderr
    ir = IR.model_validate_json(r.stdout)
    assert ir.signature.name == "count_vowels"
    assert [(e.inputs, e.output, e.given) for e in ir.examples if e.given] == [({"text": "Hello"}, 2, True)]
    stats = json.loads(r.stderr.strip().splitlines()[-1])
    assert stats["model"] == "fake-model" and stats["completion_tokens"] > 20


def test_truncation_exits_nonzero_with_the_partial_text(fake):
    fake([json.dumps(EXAMPLE_IR)])
    r = invoke("ir", REQUEST, "--max-tokens", "20")
    assert r.exit_code != 0 and r.stdout == ""
    assert "truncated" in r.stderr and "max_tokens=20" in r.stderr
    assert 'partial output: {"intent":' in r.stderr


def test_pipeline_reports_given_examples_candidates_and_provenance(fake):
    wrong = GOOD.replace("'aeiou'", "'ae'")
    fake([json.dumps(EXAMPLE_IR), fenced(wrong), fenced(GOOD)])
    r = invoke("pipeline", REQUEST, "--json")
    assert r.exit_code == 0, r.stderr
    body = json.loads(r.stdout)
    assert set(body) == {"ir", "code", "verification", "selection", "attempts"}
    assert body["code"] == GOOD and body["verification"]["verified"] is True
    # candidate 2 (from the IR) passes; candidate 3 (from the request again) agrees with it
    assert len(body["attempts"]) == 3 and body["selection"]["winner"] == 1
    assert [a["source"] for a in body["attempts"]] == ["request", "ir", "request"]
    provenance = {c["name"]: c["provenance"] for c in body["verification"]["checks"]}
    assert provenance["example[0]"] == "given" and provenance["parses"] == "static"
    assert "1 given" in r.stderr and "candidate 2 (from the ir" in r.stderr


def test_code_and_verify_on_a_hand_written_ir(fake, tmp_path):
    ir_file = tmp_path / "ir.json"
    ir_file.write_text(json.dumps({k: v for k, v in EXAMPLE_IR.items() if k != "holes"}))  # optional fields left out
    fake([fenced(GOOD)])
    r = invoke("code", str(ir_file), "--json")
    assert r.exit_code == 0, r.stderr
    body = json.loads(r.stdout)
    assert set(body) == {"ir", "code", "verification", "selection", "attempts"}
    assert body["code"] == GOOD
    assert {c["provenance"] for c in body["verification"]["checks"] if c["name"].startswith("example")} == {"given"}
    code_file = tmp_path / "f.py"
    code_file.write_text(GOOD.replace("'aeiou'", "'ae'"))
    r = invoke("verify", str(ir_file), str(code_file))
    assert r.exit_code != 0 and "FAIL" in r.stdout and "example[0]" in r.stdout


def test_a_file_that_is_not_an_ir_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    r = invoke("code", str(bad))
    assert r.exit_code != 0 and r.stderr.strip().startswith("error:") and "expected a JSON object" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--sustained", "0"], "--sustained levels must be between 1 and 64"),
    (["--sustained", "8,x"], "comma-separated integers"),
    (["--sustained-s", "1"], "--sustained-s must be between 5 and 3600 seconds"),
])
def test_bench_batch_refuses_bad_sustained_options_before_loading_a_model(args, message):
    r = invoke("bench", "batch", *args)
    assert r.exit_code != 0 and r.stdout == ""
    assert message in " ".join(r.stderr.split())


def test_pipeline_defaults_to_the_1_5b_model_when_installed_and_says_so_when_not(monkeypatch):
    import lift_sys.generation.registry as registry

    monkeypatch.delenv("LIFT_MODEL", raising=False)
    monkeypatch.setattr(registry, "is_present", lambda spec: True)
    assert cli._pipeline_model(None, None) == cli.PIPELINE_MODEL == "qwen2.5-coder-1.5b-instruct"
    assert cli._pipeline_model("qwen2.5-coder-0.5b-instruct", None) == "qwen2.5-coder-0.5b-instruct"
    assert cli._pipeline_model(None, "http://127.0.0.1:1") is None  # a remote engine names its own model
    monkeypatch.setenv("LIFT_MODEL", "qwen2.5-coder-0.5b-instruct")
    assert cli._pipeline_model(None, None) is None  # the setting decides
    monkeypatch.delenv("LIFT_MODEL")
    monkeypatch.setattr(registry, "is_present", lambda spec: False)
    assert cli._pipeline_model(None, None) is None  # not installed: the embedded 0.5B
