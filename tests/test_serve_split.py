"""`lift-sys serve` as a user runs it: the front process + the model in its own process."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from lift_sys.server.loopback import free_port, wait_healthy

pytestmark = pytest.mark.model

COLOR = {"type": "object", "properties": {"c": {"enum": ["red", "blue"]}}, "required": ["c"], "additionalProperties": False}


def test_split_serve_end_to_end():
    port = free_port()
    env = dict(os.environ, LIFT_API_KEY="k", LIFT_LOG_LEVEL="warning")
    proc = subprocess.Popen([sys.executable, "-m", "lift_sys.cli", "serve", "--split", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer k"}
    try:
        wait_healthy(url, 180, proc)
        health = httpx.get(url + "/health").json()
        assert health["engine"] == "openai-http"  # the front talks to the model process
        r = httpx.post(url + "/v1/generate", headers=auth, json={"prompt": "Pick a color.", "json_schema": COLOR}, timeout=300)
        assert r.status_code == 200, r.text
        assert r.json()["json"]["c"] in {"red", "blue"}
        assert r.json()["model"] == "qwen2.5-coder-0.5b-instruct"
        r = httpx.post(url + "/v1/ir", headers=auth, json={"prompt": "a function that reverses a string", "max_tokens": 10}, timeout=300)
        assert r.status_code == 422 and r.json()["error"]["detail"]["partial_text"].startswith('{"intent":')
        r = httpx.post(url + "/v1/generate", headers=auth, json={"prompt": "word " * 6000, "json_schema": COLOR}, timeout=300)
        assert r.status_code == 413 and "4096" in r.json()["error"]["message"]
        assert httpx.post(url + "/v1/generate", json={"prompt": "x", "json_schema": COLOR}).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    # the model process went with it: nothing is left listening
    time.sleep(1)
    out = subprocess.run(["pgrep", "-f", "lift_sys.cli serve --no-split"], capture_output=True, text=True)
    assert out.stdout.strip() == "", out.stdout
