"""POST /v1/code with a hostile IR: its predicates run in the sandbox, never in the server (fake engine, no model)."""

from __future__ import annotations

import json

from lift_sys.codegen.prompt import fenced
import time

import httpx

from lift_sys.generation.engines.fake import FakeEngine
from lift_sys.server.app import asgi
from lift_sys.service.core import InferenceService
from lift_sys.settings import Settings

from ..serving import running
from .test_sandbox import DOUBLE, RIGHT, SECRET


def test_hostile_predicates_sent_to_the_server_never_run_in_it(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFT_API_KEY", SECRET)
    tmp_path.chmod(0o777)
    marker = tmp_path / "server-pwned"
    rce = ("[c for c in ().__class__.__base__.__subclasses__() if c.__name__=='_wrap_close'][0]"
           f".__init__.__globals__['system']('touch {marker}') == 0")
    leak = "__import__('os').environ.get('LIFT_API_KEY', 'absent') == 'nothing'"
    doc = DOUBLE.model_dump(mode="json")
    doc["assertions"] = [{"kind": "precondition", "predicate": rce, "description": "rce"},
                         {"kind": "postcondition", "predicate": leak, "description": "leak"}]
    service = InferenceService(FakeEngine([fenced(RIGHT)]))
    with running(asgi(service, Settings(api_key=SECRET, warm_up=False))) as url:
        health = httpx.get(url + "/health").json()
        assert health["sandbox"]["isolation"] == "bwrap" and health["sandbox"]["seccomp"] is True
        r = httpx.post(url + "/v1/code", json={"ir": doc, "attempts": 1},
                       headers={"Authorization": f"Bearer {SECRET}"}, timeout=60)
    time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert not marker.exists()
    assert SECRET not in r.text
    body = r.json()
    checks = {c["name"]: c for c in body["verification"]["checks"]}
    assert checks["precondition[0] on example[0]"]["scope"] == "ir" and not checks["precondition[0] on example[0]"]["passed"]
    # the predicate saw the sandbox's environment, where the key does not exist
    assert "is False" in checks["postcondition[1] on the IR's own example[0]"]["detail"] or \
        "is True" not in checks["postcondition[1] on example[0]"]["detail"]
    assert body["verification"]["isolation"] == "bwrap"
