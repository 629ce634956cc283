"""Generate -> verify -> repair, and the pipeline fronts (CLI, HTTP)."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import httpx
import pytest

from lift_sys.codegen.repair import generate_verified_code
from lift_sys.server.app import asgi
from lift_sys.service.core import GenerateOptions
from lift_sys.settings import Settings
from lift_sys.ir.validate import spec_from_document
from lift_sys.ir.prompt import EXAMPLE_IR

from .serving import running
from .test_verify import GOOD

IR = spec_from_document(EXAMPLE_IR)  # a client's IR: its examples are given (facts the feedback may cite)
WRONG = GOOD.replace("'aeiou'", "'ae'")


def _candidate(code: str):
    return SimpleNamespace(code=code, generation=SimpleNamespace(completion=SimpleNamespace(completion_tokens=10)))


def test_repair_loop_feeds_failures_back_and_keeps_the_passing_candidate():
    seen = []

    def scripted(ir, opts, feedback=None):
        seen.append((opts.temperature, opts.seed, feedback))
        return _candidate(WRONG if len(seen) == 1 else GOOD)

    result = generate_verified_code(scripted, IR, GenerateOptions(seed=5), attempts=3)
    assert result.verified and result.repaired and result.code == GOOD
    # every candidate is generated; the passing one is confirmed by the third, which agrees with it
    assert len(result.attempts) == 3 and result.best.index == 1 and result.best.agreement == 2
    assert seen[0][2] is None
    assert "example[0]: returned 1, expected 2" in seen[1][2]  # the evidence reaches the next attempt
    assert seen[1][0] > seen[0][0] and seen[1][1] != seen[0][1]  # varied temperature and seed
    assert not result.attempts[0].report.verified


def test_best_candidate_when_none_passes():
    codes = iter([GOOD.replace("def count_vowels", "def nope"), WRONG, WRONG.replace("'ae'", "'a'")])
    result = generate_verified_code(lambda ir, o, feedback=None: _candidate(next(codes)), IR, GenerateOptions(), attempts=3)
    assert not result.verified and len(result.attempts) == 3
    assert result.code == WRONG  # most checks passed, earliest on ties


@pytest.mark.model
def test_real_model_repairs_a_failing_first_candidate(service):
    calls = []

    def first_wrong_then_model(ir, opts, feedback=None):
        calls.append(feedback)
        if len(calls) == 1:
            return _candidate(WRONG)
        return service.generate_code(ir, opts, feedback=feedback)

    result = generate_verified_code(first_wrong_then_model, IR, GenerateOptions(max_tokens=500), attempts=3)
    assert result.attempts[0].report is not None and not result.attempts[0].report.verified
    assert calls[1] and "expected 2" in calls[1]
    assert result.verified, result.to_dict()
    assert "def count_vowels(text" in result.code


@pytest.mark.model
def test_http_code_and_pipeline_return_the_report(service):
    with running(asgi(service, Settings())) as url:
        r = httpx.post(url + "/v1/code", json={"ir": EXAMPLE_IR, "max_tokens": 500, "attempts": 2}, timeout=600)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["verified"] is True and body["verification"]["verified"] is True
        assert any(c["name"] == "example[2]" and c["passed"] for c in body["verification"]["checks"])
        assert len(body["attempts"]) >= 1
        r = httpx.post(url + "/v1/pipeline", json={"prompt": "a function that returns the square of an integer n", "attempts": 2}, timeout=900)
        assert r.status_code == 200, r.text
        body = r.json()
        assert "square" in body["ir"]["signature"]["name"]
        assert f"def {body['ir']['signature']['name']}(" in body["code"]
        assert isinstance(body["verified"], bool) and body["verification"]["checks"]


def test_cli_verify_passes_good_code_and_fails_wrong_code(tmp_path):
    ir_path = tmp_path / "ir.json"
    ir_path.write_text(json.dumps(EXAMPLE_IR))
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_text(GOOD)
    bad.write_text(WRONG)
    ok = subprocess.run([sys.executable, "-m", "lift_sys.cli", "verify", str(ir_path), str(good), "--json"],
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and json.loads(ok.stdout)["verified"] is True
    ko = subprocess.run([sys.executable, "-m", "lift_sys.cli", "verify", str(ir_path), str(bad)],
                        capture_output=True, text=True, timeout=120)
    assert ko.returncode != 0 and "FAIL" in ko.stdout
    # `lift-sys code` itself: test_cli_fast (fake engine); the real model writes this IR's code over HTTP above.
