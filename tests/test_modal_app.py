"""The Modal app, offline: no account, no GPU.

The module is imported with modal installed; its registered objects and
settings are checked through what Modal exposes, and the class's methods run
with ``.local()`` against the embedded model (LIFT_MODAL_ENGINE=local), so
the deployment's code path runs end to end here.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings

import pytest

from lift_sys.deploy.gpu import GPUSizingError, estimate_cost, memory_need, plan_gpus
from lift_sys.generation.registry import get_model

modal = pytest.importorskip("modal")


@pytest.fixture(scope="module")
def modal_app():
    old = os.environ.get("LIFT_MODAL_ENGINE")
    os.environ["LIFT_MODAL_ENGINE"] = "local"
    try:
        import lift_sys.deploy.modal_app as m

        yield importlib.reload(m)
    finally:
        if old is None:
            os.environ.pop("LIFT_MODAL_ENGINE", None)
        else:
            os.environ["LIFT_MODAL_ENGINE"] = old


def _registered(app):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return app.registered_functions, app.registered_classes, app.registered_entrypoints


def test_app_objects_and_settings(modal_app):
    m = modal_app
    assert m.app.name == "lift-sys-inference"
    functions, classes, entrypoints = _registered(m.app)
    assert {"download_model", "health", "ConstrainedIRGenerator.*"} <= set(functions)
    assert "ConstrainedIRGenerator" in classes and "test" in entrypoints
    assert isinstance(m.ConstrainedIRGenerator, modal.Cls)

    # What Modal kept for the GPU class: the fallback list and the volume.
    spec = functions["ConstrainedIRGenerator.*"]._spec_
    assert spec.gpus == ["H100", "A100-80GB"]
    assert set(spec.volumes) == {"/models"}
    # The health function is CPU-only: it never wakes a GPU.
    assert not functions["health"]._spec_.gpus
    assert functions["download_model"]._spec_.gpus in (None, [], "")
    # The options the class was declared with (the seed's settings, kept).
    assert m.CLS_OPTIONS["timeout"] == 600 and m.CLS_OPTIONS["scaledown_window"] == 300
    assert m.CONCURRENCY == {"max_inputs": 20}
    assert m.CLS_OPTIONS["env"]["LIFT_MODAL_ENGINE"] == "local"
    assert m.CLS_OPTIONS["enable_memory_snapshot"] is False


def test_sglang_command_line(modal_app):
    m = modal_app
    cmd = m.sglang_command(m.SETTINGS, "/models/hf/snap")
    assert cmd[1:3] == ["-m", "sglang.launch_server"]
    args = dict(zip(cmd[3::1], cmd[4::1]))
    assert args["--model-path"] == "/models/hf/snap"
    assert args["--grammar-backend"] == "xgrammar"
    assert args["--context-length"] == "32768"
    assert args["--host"] == "127.0.0.1"
    assert "--constrained-json-disable-any-whitespace" in cmd
    assert not any("jump" in a for a in cmd)


def test_methods_run_locally_on_the_embedded_model(modal_app):
    gen = modal_app.ConstrainedIRGenerator()
    ir = gen.generate_ir.local("a function that returns the n-th Fibonacci number, raising ValueError for negative n")
    assert "fib" in ir["ir"]["signature"]["name"]
    assert ir["stats"]["model"] == "qwen2.5-coder-0.5b-instruct"
    code = gen.generate_code.local(ir["ir"], max_tokens=600)
    assert f"def {ir['ir']['signature']['name']}(" in code["code"]
    assert [c["name"] for c in code["checks"]][:1] == ["parses"]
    out = gen.generate.local("Pick a color.", {"type": "object", "properties": {"c": {"enum": ["red", "blue"]}},
                                               "required": ["c"], "additionalProperties": False}, max_tokens=20)
    assert out["json"]["c"] in {"red", "blue"}


def test_health_reports_the_real_configuration(modal_app):
    h = modal_app.health.local()
    assert h["model"] == "qwen3-coder-30b-a3b-instruct"
    assert h["gpus"] == ["H100", "A100-80GB"] and h["grammar_backend"] == "xgrammar"
    assert h["gpu_plan"]["accepted"] == ["H100", "A100-80GB"]


def test_gpu_sizing_refuses_an_impossible_gpu():
    spec = get_model("qwen3-coder-30b-a3b-instruct")
    need = memory_need(spec, context=32768, concurrency=20)
    assert 60 < need.weights_gb < 62
    with pytest.raises(GPUSizingError) as info:
        plan_gpus(spec, ["H100", "A10G"], context=32768, concurrency=20)
    assert "A10G" in str(info.value) and "61.1 GB" in str(info.value)
    fp8 = get_model("qwen3-coder-30b-a3b-instruct-fp8")
    assert plan_gpus(fp8, ["L40S"], context=32768, concurrency=20).accepted == ["L40S"]
    with pytest.raises(GPUSizingError, match="FP8"):
        plan_gpus(fp8, ["A100-80GB"], context=32768, concurrency=20)


def test_deploying_with_an_impossible_gpu_fails_at_import():
    env = dict(os.environ, LIFT_MODAL_GPUS="A10G")
    r = subprocess.run([sys.executable, "-c", "import lift_sys.deploy.modal_app"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "A10G" in r.stderr and "does not fit" in r.stderr


def test_cost_model():
    busy = estimate_cost("H100", latency_s=3, requests_per_day=5000, scaledown_s=300)
    assert busy.per_request_usd == pytest.approx(3 * 3.95 / 3600)
    assert busy.cold_starts_per_day < 1  # a request every ~17 s keeps one container warm
    assert busy.busy_hours_per_day + busy.warm_idle_hours_per_day == pytest.approx(24, abs=0.01)
    rare = estimate_cost("H100", latency_s=3, requests_per_day=24, scaledown_s=300)
    assert rare.cold_starts_per_day > 20 and rare.warm_idle_hours_per_day == pytest.approx(24 * 300 / 3600, rel=0.05)
