"""End-to-end endpoint tester: ``lift-sys e2e --url URL``.

Exercises every endpoint of a running deployment (local ``lift-sys serve``,
``modal serve``/``modal deploy``) the way a client would: health, IR for
three requests, code for one IR, generic generation, OpenAI chat
completions with json_schema, metrics, and three bad inputs that must be
refused with the right status. Every output is validated against its
schema; latency is measured per endpoint (min / median / p95, the first
call to each endpoint marked cold). Redirects are followed (Modal answers
long requests with 303) and timeouts exceed a GPU cold start.
"""

from __future__ import annotations

import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import httpx
import jsonschema

from lift_sys.ir.models import IR, ir_schema

IR_REQUESTS = [
    "a function that returns the n-th Fibonacci number, raising ValueError for negative n",
    "a function that checks whether a string is a palindrome, ignoring case",
    "a function that merges two sorted lists of integers into one sorted list",
]
COLOR = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "green", "blue"]}},
    "required": ["color"],
    "additionalProperties": False,
}


@dataclass
class Check:
    name: str
    endpoint: str
    ok: bool
    status: int | None
    seconds: float
    cold: bool
    detail: str = ""


@dataclass
class Report:
    url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def latency(self) -> dict[str, dict[str, float]]:
        by: dict[str, list[Check]] = {}
        for c in self.checks:
            by.setdefault(c.endpoint, []).append(c)
        out = {}
        for ep, cs in by.items():
            secs = sorted(c.seconds for c in cs)
            warm = [c.seconds for c in cs if not c.cold]
            out[ep] = {
                "n": len(secs),
                "min_s": secs[0],
                "median_s": statistics.median(secs),
                "p95_s": secs[min(len(secs) - 1, round(0.95 * (len(secs) - 1)))],
                "cold_s": next((c.seconds for c in cs if c.cold), None),
                "warm_median_s": statistics.median(warm) if warm else None,
            }
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "ok": self.ok,
            "passed": sum(c.ok for c in self.checks),
            "failed": sum(not c.ok for c in self.checks),
            "checks": [c.__dict__ for c in self.checks],
            "latency": self.latency(),
        }


class _Runner:
    def __init__(self, url: str, api_key: str | None, timeout_s: float) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, follow_redirects=True,
            timeout=httpx.Timeout(timeout_s, connect=30.0),
        )
        self.report = Report(url)
        self._seen: set[str] = set()

    def call(self, name: str, method: str, path: str, validate: Callable[[httpx.Response], str | None], **kw: Any) -> httpx.Response | None:
        cold = path not in self._seen
        self._seen.add(path)
        t0 = time.perf_counter()
        try:
            resp = self.client.request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.report.checks.append(Check(name, path, False, None, time.perf_counter() - t0, cold, f"{type(exc).__name__}: {exc}"))
            return None
        seconds = time.perf_counter() - t0
        try:
            problem = validate(resp)
        except Exception as exc:  # a validator that throws is a failed check, with the reason
            problem = f"{type(exc).__name__}: {exc}"
        self.report.checks.append(Check(name, path, problem is None, resp.status_code, seconds, cold, problem or ""))
        return resp


def _status(expected: int, then: Callable[[Any], str | None] | None = None) -> Callable[[httpx.Response], str | None]:
    def check(resp: httpx.Response) -> str | None:
        if resp.status_code != expected:
            return f"expected {expected}, got {resp.status_code}: {resp.text[:300]}"
        return then(resp.json()) if then else None

    return check


def _error(kind: str) -> Callable[[Any], str | None]:
    def check(body: Any) -> str | None:
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict) or err.get("type") != kind or not err.get("message"):
            return f"expected an error of type {kind}, got {body}"
        return None

    return check


def _valid_ir(body: Any) -> str | None:
    jsonschema.validate(body["ir"], ir_schema())
    ir = IR.model_validate(body["ir"])
    if not ir.signature.parameters:
        return "IR has no parameters"
    for key in ("usage", "timings", "finish_reason", "model"):
        if key not in body:
            return f"response lacks {key}"
    return None


def run_e2e(url: str, *, api_key: str | None = None, concurrency: int = 1, timeout_s: float = 900.0) -> Report:
    r = _Runner(url, api_key, timeout_s)

    def health(body: Any) -> str | None:
        missing = {"status", "ready", "model", "engine", "grammar_backend", "version"} - set(body)
        return f"missing {sorted(missing)}" if missing else None

    r.call("health", "GET", "/health", _status(200, health))

    irs: list[dict] = []

    def ir_check(body: Any) -> str | None:
        problem = _valid_ir(body)
        if problem is None:
            irs.append(body["ir"])
        return problem

    def one_ir(text: str) -> None:
        r.call(f"ir: {text[:40]}", "POST", "/v1/ir", _status(200, ir_check), json={"prompt": text})

    if concurrency > 1:
        one_ir(IR_REQUESTS[0])  # cold first, alone
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one_ir, IR_REQUESTS[1:]))
    else:
        for text in IR_REQUESTS:
            one_ir(text)

    def code_check(body: Any) -> str | None:
        if not body.get("code") or body.get("language") != "python":
            return "no python code"
        failed = [c["name"] for c in body.get("checks", []) if not c["passed"]]
        return f"checks failed: {failed}" if failed else None

    if irs:
        r.call("code for the first IR", "POST", "/v1/code", _status(200, code_check), json={"ir": irs[0], "attempts": 1})

    def gen_check(body: Any) -> str | None:
        jsonschema.validate(body["json"], COLOR)
        return None if json.loads(body["text"]) == body["json"] else "text and json disagree"

    r.call("generate (json_schema)", "POST", "/v1/generate", _status(200, gen_check),
           json={"prompt": "Pick a color.", "json_schema": COLOR, "max_tokens": 40})

    def chat_check(body: Any) -> str | None:
        choice = body["choices"][0]
        jsonschema.validate(json.loads(choice["message"]["content"]), COLOR)
        return None if choice["finish_reason"] == "stop" else f"finish_reason {choice['finish_reason']}"

    r.call("chat completions (json_schema)", "POST", "/v1/chat/completions", _status(200, chat_check), json={
        "model": "lift", "messages": [{"role": "user", "content": "Pick a color."}], "max_tokens": 40, "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "color", "schema": COLOR, "strict": True}},
    })

    def metrics_check(resp: httpx.Response) -> str | None:
        if resp.status_code != 200:
            return f"expected 200, got {resp.status_code}"
        return None if "lift_requests_total" in resp.text else "no lift_requests_total in /metrics"

    r.call("metrics", "GET", "/metrics", metrics_check)

    # Bad inputs: each must be refused with the right status and error type.
    r.call("refuses a $ref into 'not' (400)", "POST", "/v1/generate", _status(400, _error("unsupported_schema")),
           json={"prompt": "x", "json_schema": {"$defs": {"x": {"not": {}}}, "properties": {"a": {"$ref": "#/$defs/x/not"}}}})
    r.call("refuses a missing prompt (400)", "POST", "/v1/ir", _status(400, _error("invalid_request")), json={"promt": "typo"})
    r.call("reports truncation (422)", "POST", "/v1/ir", _status(422, _error("truncated_output")),
           json={"prompt": IR_REQUESTS[0], "max_tokens": 8})
    return r.report


def print_report(report: Report, console: Any) -> None:
    from rich.table import Table

    t = Table(title=f"e2e: {report.url}")
    for col in ("check", "endpoint", "status", "seconds", "cold", "result"):
        t.add_column(col)
    for c in report.checks:
        t.add_row(c.name, c.endpoint, str(c.status), f"{c.seconds:.3f}", "cold" if c.cold else "",
                  "[green]ok[/]" if c.ok else f"[red]FAIL[/] {c.detail[:120]}")
    console.print(t)
    lt = Table(title="latency per endpoint (s)")
    for col in ("endpoint", "n", "min", "median", "p95", "cold", "warm median"):
        lt.add_column(col)
    for ep, s in report.latency().items():
        fmt = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
        lt.add_row(ep, str(s["n"]), fmt(s["min_s"]), fmt(s["median_s"]), fmt(s["p95_s"]), fmt(s["cold_s"]), fmt(s["warm_median_s"]))
    console.print(lt)
    d = report.to_dict()
    console.print(f"{d['passed']} passed, {d['failed']} failed")
