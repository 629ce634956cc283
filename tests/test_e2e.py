"""The end-to-end tester, against the local server on loopback; it must also catch a broken server.

The server, its queue, guard and sandbox and the clients are real; the model is the fake engine
answering the worked example (this tests the tester and the endpoints' plumbing -- the real model
is exercised by test_server, test_ir_real_model and test_pipeline).
"""

from __future__ import annotations

import json

from lift_sys.codegen.prompt import fenced
import subprocess
import sys

import pytest

from lift_sys.e2e import run_e2e
from lift_sys.generation.engines.fake import FakeEngine, minimal_instance
from lift_sys.ir.prompt import EXAMPLE_IR
from lift_sys.server.app import asgi
from lift_sys.service import InferenceService
from lift_sys.settings import Settings

from .serving import free_port, running

CODE = ("def count_vowels(text: str) -> int:\n    if not isinstance(text, str):\n        raise TypeError('text must be a str')\n"
        "    return sum(1 for ch in text.lower() if ch in 'aeiou')\n")


def _answer(messages, params, constraint) -> str:
    """The worked example for IR requests, its function for code requests, the smallest instance otherwise."""
    schema = constraint.spec.source if constraint is not None and constraint.spec.kind == "json_schema" else None
    props = (schema or {}).get("properties", {})
    if "signature" in props:
        return json.dumps(EXAMPLE_IR)
    if set(props) == {"code"}:
        return json.dumps({"code": CODE})
    if constraint is not None and constraint.spec.kind == "regex" and constraint.spec.source.startswith("```python"):
        return fenced(CODE)  # the code grammar: one fenced block
    return json.dumps(minimal_instance(schema)) if schema is not None else "ok"


@pytest.fixture
def service():
    return InferenceService(FakeEngine(_answer, delay_s=0.001))


def test_e2e_passes_against_the_local_server(service, tmp_path):
    with running(asgi(service, Settings(api_key="k"))) as url:
        out = tmp_path / "e2e.json"
        r = subprocess.run(
            [sys.executable, "scripts/test_modal_endpoint.py", url, "--api-key", "k", "--output", str(out), "--concurrency", "2"],
            capture_output=True, text=True, timeout=1200,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        report = json.loads(out.read_text())
    assert report["ok"] and report["failed"] == 0
    names = [c["name"] for c in report["checks"]]
    assert len([n for n in names if n.startswith("ir:")]) == 3
    for needle in ("health", "code for the first IR", "generate (json_schema)", "chat completions (json_schema)", "metrics",
                   "refuses a $ref into 'not' (400)", "refuses a missing prompt (400)", "reports truncation (422)"):
        assert needle in names
    lat = report["latency"]["/v1/ir"]
    assert lat["n"] == 5 and lat["cold_s"] is not None and lat["min_s"] <= lat["median_s"] <= lat["p95_s"]


def test_e2e_fails_on_a_wrong_key_and_on_no_server(service):
    with running(asgi(service, Settings(api_key="right"))) as url:
        report = run_e2e(url, api_key="wrong", timeout_s=30)
    assert not report.ok
    assert any(c.status == 401 for c in report.checks)
    report = run_e2e(f"http://127.0.0.1:{free_port()}", timeout_s=5)
    assert not report.ok and all(not c.ok for c in report.checks)
