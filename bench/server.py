"""Server benchmark: is the HTTP layer out of the model's way?

Starts ``lift-sys serve`` as a separate process on loopback (the real
deployment shape), then measures from a client process:

* ``/health`` latency at 20 concurrent clients while IR generations run
  (the event loop must never wait on the model);
* per-request server overhead: the server's own ``total_ms`` minus the
  time spent queued, compiling and in the engine;
* throughput and latency for 1, 4 and 20 concurrent IR requests (one
  CPU model serializes generations: concurrency buys queueing, not speed,
  which is exactly what the numbers should show).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from lift_sys.inference.loopback import free_port, wait_healthy

REQUESTS = [
    "a function that returns the n-th Fibonacci number, raising ValueError for negative n",
    "a function that checks whether a string is a palindrome, ignoring case",
    "a function that merges two sorted lists of integers into one sorted list",
    "a function that counts the words in a sentence",
]


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))] if s else 0.0


def _server_health_quantiles(url: str) -> dict[str, float]:
    """Server-side /health latency (ASGI in -> response out) from the Prometheus histogram.

    Quantiles are bucket upper bounds: "p99 <= X ms".
    """
    text = httpx.get(url + "/metrics", timeout=10).text
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith('lift_request_seconds_bucket{endpoint="/health"'):
            le = line.split('le="')[1].split('"')[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0

    def q(p: float) -> float:
        for bound, count in buckets:
            if count >= p * total:
                return bound * 1000
        return float("inf")

    return {"n": total, "p50_ms_le": q(0.5), "p99_ms_le": q(0.99)}


async def _health_under_load(url: str, clients: int, generations: int, interval_s: float = 0.1) -> dict[str, Any]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=900) as client:
        gens = [asyncio.create_task(client.post("/v1/ir", json={"prompt": REQUESTS[i % len(REQUESTS)]}))
                for i in range(generations)]

        async def poll() -> None:
            while not all(g.done() for g in gens):
                t0 = time.perf_counter()
                r = await client.get("/health")
                latencies.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200
                await asyncio.sleep(interval_s)

        await asyncio.gather(*(poll() for _ in range(clients)))
        results = [await g for g in gens]
    return {
        "clients": clients,
        "poll_interval_s": interval_s,
        "concurrent_generations": generations,
        "generation_tok_s": [r.json()["usage"]["completion_tokens"] / (r.json()["timings"]["decode_ms"] / 1000)
                             for r in results if r.status_code == 200],
        "samples": len(latencies),
        "p50_ms": _pct(latencies, 0.5),
        "p99_ms": _pct(latencies, 0.99),
        "max_ms": max(latencies) if latencies else 0.0,
        "generation_statuses": [r.status_code for r in results],
    }


async def _level(url: str, concurrency: int) -> tuple[dict[str, Any], list[dict]]:
    async with httpx.AsyncClient(base_url=url, timeout=1800) as client:
        t0 = time.perf_counter()

        async def one(i: int) -> tuple[float, httpx.Response]:
            s = time.perf_counter()
            r = await client.post("/v1/ir", json={"prompt": REQUESTS[i % len(REQUESTS)]})
            return time.perf_counter() - s, r

        done = await asyncio.gather(*(one(i) for i in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = [d for d, _ in done]
    ok = [r for _, r in done if r.status_code == 200]
    tokens = sum(r.json()["usage"]["completion_tokens"] for r in ok)
    return (
        {
            "concurrency": concurrency,
            "requests": concurrency,
            "ok": len(ok),
            "wall_s": wall,
            "requests_per_min": 60 * len(ok) / wall,
            "tokens_per_s": tokens / wall,
            "latency_p50_s": _pct(lat, 0.5),
            "latency_max_s": max(lat),
        },
        [r.json() for r in ok],
    )


def run_server_bench(*, levels: list[int] | None = None, health_clients: int = 20, console: Console | None = None) -> dict[str, Any]:
    console = console or Console(stderr=True)
    levels = levels or [1, 4, 20]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, LIFT_MAX_QUEUE=str(max(levels) + 5))
    proc = subprocess.Popen(
        [sys.executable, "-m", "lift_sys.cli", "serve", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_healthy(url, 120, proc)
        console.print("[dim]warm-up[/]")
        httpx.post(url + "/v1/ir", json={"prompt": REQUESTS[0]}, timeout=900)
        console.print(f"[dim]health at {health_clients} clients (each every 100 ms) under load[/]")
        health = asyncio.run(_health_under_load(url, health_clients, 2))
        health["server_side"] = _server_health_quantiles(url)
        rows, bodies = [], []
        for level in levels:
            console.print(f"[dim]{level} concurrent IR requests[/]")
            row, bs = asyncio.run(_level(url, level))
            rows.append(row)
            bodies.extend(bs)
        overhead = []
        for b in bodies:
            t = b["timings"]
            overhead.append(t["total_ms"] - t["queue_ms"] - t["compile_ms"] - t["ttft_ms"] - t["decode_ms"])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    result = {
        "benchmark": "server",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "health_under_load": health,
        "overhead_ms": {"p50": _pct(overhead, 0.5), "p99": _pct(overhead, 0.99), "n": len(overhead),
                        "note": "server total_ms minus queue, compile and engine (ttft+decode) time"},
        "levels": rows,
        "targets": {"health_p99_ms_max": 5.0, "overhead_p50_ms_max": 2.0},
    }
    _print(result, console)
    return result


def _print(result: dict[str, Any], console: Console) -> None:
    h = result["health_under_load"]
    o = result["overhead_ms"]
    console.print(
        f"/health at {h['clients']} clients during {h['concurrent_generations']} generations: "
        f"p50 {h['p50_ms']:.2f} ms, p99 {h['p99_ms']:.2f} ms, max {h['max_ms']:.2f} ms ({h['samples']} samples); "
        f"decode meanwhile: {', '.join(f'{x:.1f}' for x in h['generation_tok_s'])} tok/s"
    )
    ss = h["server_side"]
    console.print(f"/health server-side (ASGI, from /metrics histogram): p50 <= {ss['p50_ms_le']:g} ms, "
                  f"p99 <= {ss['p99_ms_le']:g} ms (n={ss['n']:.0f})")
    console.print(f"server overhead per IR request: p50 {o['p50']:.2f} ms, p99 {o['p99']:.2f} ms (n={o['n']})")
    t = Table(title="IR requests by concurrency")
    for col in ("concurrency", "ok", "wall s", "req/min", "tok/s", "latency p50 s", "latency max s"):
        t.add_column(col, justify="right")
    for r in result["levels"]:
        t.add_row(str(r["concurrency"]), f"{r['ok']}/{r['requests']}", f"{r['wall_s']:.1f}", f"{r['requests_per_min']:.1f}",
                  f"{r['tokens_per_s']:.1f}", f"{r['latency_p50_s']:.1f}", f"{r['latency_max_s']:.1f}")
    console.print(t)
